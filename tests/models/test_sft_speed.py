"""SFT cost: a clip's examples run their common first tokens once (`clip_prefix`), and
the batch's forwards are parts of whole clips.  Pure planning (shared_prefix.prefix_units, balanced_chunks,
sft.clip_parts) and, on a micro thinker, the same log-probs, encoder outputs and gradients as the plain
padded forward up to float order, and the same SFT run as the length-grouped path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avere_utils.emotions import EMOTIONS
from avere_utils.models.sft import clip_parts
from avere_utils.models.shared_prefix import balanced_chunks, prefix_units
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
from avere_utils.records import Example, Media


def test_prefix_units_share_the_common_first_tokens_and_keep_the_last_prompt_token():
    rows = [[1, 2, 3, 4, 9, 9], [1, 2, 3, 5, 6, 9], [7, 8, 9], [1, 2, 3, 4, 9, 8]]
    units = prefix_units(["a", "a", None, "a"], rows, [4, 5, 2, 4])
    # unit a: rows 0, 1, 3 share 3 tokens (row 1 differs at its 4th); row 2 alone keeps its last prompt token
    assert units == [([0, 1, 3], 3), ([2], 1)]
    # rows 0 and 3 have the same prompt: the shared part stops before its last token (index 3)
    assert prefix_units(["a", "a"], [rows[0], rows[3]], [4, 4]) == [([0, 1], 3)]
    # verify shrinks what the ids alone would share; never below one token
    assert prefix_units(["a", "a"], [rows[0], rows[3]], [4, 4], verify=lambda h, i, c: 2) == [([0, 1], 2)]
    assert prefix_units(["a", "a"], [[5, 1, 1], [6, 1, 1]], [2, 2]) == [([0, 1], 1)]
    with pytest.raises(ValueError, match="2 tokens"):
        prefix_units(["a"], [[1, 2]], [1])
    with pytest.raises(ValueError, match="length"):
        prefix_units(["a"], [[1, 2]], [2, 2])


def test_balanced_chunks_cut_the_key_order_into_parts_of_equal_cost():
    keys = ["x", "y", "x", "z", "y", "x"]
    costs = [1, 1, 1, 1, 1, 1]
    assert balanced_chunks(keys, costs, 1) == [[0, 2, 5, 1, 4, 3]]
    assert balanced_chunks(keys, costs, 2) == [[0, 2, 5], [1, 4, 3]]
    assert balanced_chunks(keys, costs, 3) == [[0, 2], [5, 1], [4, 3]]
    # a long item takes its part alone; empty parts are dropped
    assert balanced_chunks(["a", "b", "c"], [10, 1, 1], 2) == [[0], [1, 2]]
    assert balanced_chunks(["a"], [3], 4) == [[0]]
    assert balanced_chunks([], [], 2) == []
    # every index once, whatever the costs
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 20))
        ks = [int(k) for k in rng.integers(0, 5, n)]
        parts = balanced_chunks(ks, [float(c) for c in rng.integers(0, 50, n)], int(rng.integers(1, 4)))
        assert sorted(i for p in parts for i in p) == list(range(n))
        # a key is split between at most two neighbouring parts
        where = {k: sorted({j for j, p in enumerate(parts) for i in p if ks[i] == k}) for k in set(ks)}
        assert all(w[-1] - w[0] <= 1 for w in where.values())


def test_clip_parts_weigh_prompt_and_response_characters():
    exs = [Example("q" * 10, None, "r" * 90), Example("q" * 10, None, "r"), Example("q" * 10, None, "r"),
           Example("q" * 10, None, "r" * 10)]
    assert clip_parts(exs, ["a", "b", "b", "c"], 2) == [[0], [1, 2, 3]]
    assert clip_parts(exs, ["a", "b", "b", "c"], 1) == [[0, 1, 2, 3]]


# --- on a micro thinker -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from avere_utils.models import load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint

    corpus = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS, "Does the video show a broad smile? (A) Yes (B) No",
              "The face shows a broad smile and crinkled eyes, which points to happiness."] * 5
    d = build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), corpus, size="micro", seed=0)
    return str(d), load_backend(str(d), device="cpu")


def _media():
    rng = np.random.default_rng(0)
    av = Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
               audio=(0.1 * rng.standard_normal(32000)).astype(np.float32))
    av2 = Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
                audio=(0.1 * rng.standard_normal(32000)).astype(np.float32))
    audio = Media(audio=(0.1 * rng.standard_normal(24000)).astype(np.float32))
    return av, av2, audio


def _examples():
    av, av2, audio = _media()
    smile = "Does the video show a broad smile? (A) Yes (B) No"
    return [Example(EMER_PROMPT, av, "The face shows a broad smile and crinkled eyes, which points to happiness."),
            Example(CLASSIFICATION_PROMPT, av2, "anger"), Example(CLASSIFICATION_PROMPT, av, "happiness"),
            Example(smile, av, "Yes (A)"), Example(smile, av, "No (B)"),  # one prompt twice
            Example(smile, audio, "No (B)"), Example(CLASSIFICATION_PROMPT, None, "sadness"),
            Example(smile, None, "Yes (A)"), Example(EMER_PROMPT, av2, "The voice sounds sad.")]


@pytest.mark.model
def test_clip_prefix_gives_the_plain_logprobs_encoder_outputs_and_gradients(micro):
    _, b = micro
    exs = _examples()
    b.model.train()
    got = []
    for clip_prefix in (False, True):
        b.thinker.zero_grad(set_to_none=True)
        sink: list = []
        lp, n = b.sequence_logprobs(exs, grad=True, encoder_sink=sink, clip_prefix=clip_prefix)
        aux = sum(v.square().sum() + a.square().sum() for v, a in sink if v is not None)
        (lp.sum() + aux).backward()
        grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in b.model.parameters()]
        got.append((lp.detach(), n, [(None if v is None else v.detach(), None if a is None else a.detach())
                                     for v, a in sink], grads))
    b.thinker.zero_grad(set_to_none=True)
    b.model.eval()
    (lp0, n0, s0, g0), (lp1, n1, s1, g1) = got
    torch.testing.assert_close(lp1, lp0, atol=1e-4, rtol=1e-5)
    assert n1.tolist() == n0.tolist()
    assert [(v is None, a is None) for v, a in s1] == [(v is None, a is None) for v, a in s0]
    for (v1, a1), (v0, a0) in zip(s1, s0):
        for x1, x0 in ((v1, v0), (a1, a0)):
            if x0 is not None:
                torch.testing.assert_close(x1, x0)
    for x1, x0 in zip(g1, g0):
        torch.testing.assert_close(x1, x0, atol=1e-5, rtol=1e-4)
    assert all(torch.isfinite(x).all() for x in g1)
    # without grad: the same numbers
    with torch.no_grad():
        lp2, _ = b.sequence_logprobs(exs, clip_prefix=True)
    torch.testing.assert_close(lp2, lp0, atol=1e-4, rtol=1e-5)


def _train_item(i: int):
    from avere_utils.records import Item

    label = EMOTIONS[i % len(EMOTIONS)]
    qa = [{"task": "modality_agreement", "question": "Do the face and the voice express the same emotion?",
           "choices": ["(A) Yes", "(B) No"], "answer": "A"},
          {"task": "reasoning_basic_video", "question": "Which visual cue explains the emotion?",
           "choices": ["(A) a broad smile", "(B) a blue background"], "answer": "A"}]
    return Item(id=f"t{i}", dataset="train_source", split="train", label=label,
                text={"captions": {"description": f"The face shows a broad smile, which points to {label}."},
                      "qa": qa})


@pytest.mark.model
def test_sft_with_clip_prefix_trains_what_the_length_groups_train(micro):
    """The same SFT run (perception loss off) through the clip-prefix parts and through the length-grouped
    padded forwards: the same losses and weights up to float order, and twice the same bits."""
    from avere_utils.models import load_backend
    from avere_utils.models.sft import SFTConfig, run_sft

    ckpt, _ = micro
    av, av2, _ = _media()
    media = {"t0": av, "t1": av2}
    out = []
    for clip_prefix in (False, True, True):
        b = load_backend(ckpt, device="cpu")
        cfg = SFTConfig(epochs=2, batch_size=5, lr=5e-3, seed=0, perception_weight=0.0, length_groups=2,
                        clip_prefix=clip_prefix)
        hist = run_sft(b, [_train_item(i) for i in range(2)], media.__getitem__, cfg, None, qa_per_clip=1,
                       label_repeats=2, tasks=["label", "description", "qa"])
        out.append(([r["loss"] for r in hist], [p.detach().clone() for p in b.trainable_parameters()]))
    (l0, w0), (l1, w1), (l2, w2) = out
    np.testing.assert_allclose(l1, l0, rtol=1e-4)
    # AdamW divides each update by sqrt(v): a weight whose gradients are near zero turns a last-bit difference
    # of the summation order into a difference of ~1e-5 after a few steps (measured 1.2e-5 under the kit's CPU
    # pins); a wrong mask or position moves weights by orders of magnitude more
    for p1, p0 in zip(w1, w0):
        torch.testing.assert_close(p1, p0, atol=1e-4, rtol=1e-3)
    assert l2 == l1 and all(torch.equal(p2, p1) for p2, p1 in zip(w2, w1))
