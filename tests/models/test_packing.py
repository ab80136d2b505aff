"""Candidate packing (scoring mode): the layout of the packed row, and on the micro and the tiny thinker in
fp32 the packed log-likelihoods equal the unpacked ones (one cache copy per candidate) and the plain
`sequence_logprobs` within 1e-5, for 2-, 4- and 7-candidate items alone and in one batch mixing an
audio+video, an audio-only and a text-only prompt with two questions about one clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avere_utils.emotions import EMOTIONS
from avere_utils.models.packing import attention_mask_4d, pack_candidates
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT
from avere_utils.records import Example, Media

ATOL = 1e-5

YES_NO = ["(A) Yes", "(B) No"]
FOUR = ["(A) furrowed brows", "(B) a broad smile", "(C) tears", "(D) a yellow wall"]
CORPUS = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS, " ".join(YES_NO + FOUR), "Is the person smiling?"] * 5


def test_packed_row_layout_and_mask():
    pk = pack_candidates([[[5, 6, 7], [8, 9]], [[3]]], pad_id=1)
    assert pk.tokens.tolist() == [[5, 6, 8], [1, 1, 1]]
    assert pk.targets.tolist() == [[6, 7, 9], [0, 0, 0]]
    assert pk.offsets.tolist() == [[0, 1, 0], [0, 0, 0]]
    assert pk.owner.tolist() == [[0, 0, 1], [-1, -1, -1]]
    assert pk.first.tolist() == [5, 8, 3] and pk.row.tolist() == [0, 0, 1] and pk.lengths.tolist() == [3, 2, 1]
    # candidate 1 (column 2) sees itself only, never candidate 0
    assert pk.block[0].int().tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    prompt = torch.tensor([[0, 1, 1], [1, 1, 1]])
    mask = attention_mask_4d(prompt, pk.block)
    assert mask.shape == (2, 1, 3, 6) and mask.dtype == torch.bool
    assert mask[0, 0, 2].int().tolist() == [0, 1, 1, 0, 0, 1]
    assert mask[1, 0, :, :3].all()  # padding inputs see the prompt: no row without keys
    add = attention_mask_4d(prompt, pk.block, additive_dtype=torch.float32)
    assert torch.equal(add == 0, mask) and add.min() == torch.finfo(torch.float32).min
    with pytest.raises(ValueError, match="without tokens"):
        pack_candidates([[[]]])


_BACKENDS: dict = {}


def _backend(size: str, tmp_path_factory):
    from avere_utils.models import load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint

    if size not in _BACKENDS:
        d = build_tiny_checkpoint(tmp_path_factory.mktemp(size), CORPUS, size=size, seed=0)
        b = load_backend(str(d), device="cpu")
        assert b.dtype == torch.float32 and b._packed_mask_form() == "bool"  # sdpa on CPU
        # every prompt after the first nests after an earlier one's cache (the path of a clip's questions)
        b.nest_min_tokens, b.nest_min_fraction = 4, 0.0
        _BACKENDS[size] = b
    return _BACKENDS[size]


@pytest.fixture(scope="module", params=["micro", "tiny"])
def backend(tmp_path_factory, request):
    return _backend(request.param, tmp_path_factory)


def _items():
    rng = np.random.default_rng(0)
    av = Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
               audio=(0.1 * rng.standard_normal(32000)).astype(np.float32))
    audio = Media(audio=(0.1 * rng.standard_normal(24000)).astype(np.float32))
    ask = "Which cue does the clip show? " + " ".join(FOUR)
    return [(Example(CLASSIFICATION_PROMPT, av), list(EMOTIONS)),
            (Example("Is the person smiling? " + " ".join(YES_NO), av), YES_NO),
            (Example(ask, audio), FOUR),
            (Example("Is the person smiling? " + " ".join(YES_NO), None), YES_NO)]


def _scores(b, items, *, packed: bool) -> list[torch.Tensor]:
    b.pack_candidates = packed
    try:
        return b.score_choices_batch([e for e, _ in items], [c for _, c in items])
    finally:
        b.pack_candidates = True


@pytest.mark.model
def test_packed_scores_equal_unpacked_and_plain_logprobs(backend):
    b = backend
    items = _items()
    flat = [Example(e.prompt, e.media, c) for e, cs in items for c in cs]
    plain = torch.split(b.sequence_logprobs(flat)[0], [len(c) for _, c in items])
    assert {len(c) for _, c in items} == {2, 4, 7} and max(len(b.response_ids(c)) for c in FOUR) > 3
    for nest in (False, True):
        b.reuse_prefix = nest
        before = b.nested_rows_total
        batch = _scores(b, items, packed=True)
        assert (b.nested_rows_total > before) == nest
        unpacked = _scores(b, items, packed=False)
        for got, ref, one in zip(batch, unpacked, plain):
            torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
            torch.testing.assert_close(got, one, atol=ATOL, rtol=0)
    b.reuse_prefix = True
    for (ex, cs), one in zip(items[:3], plain):  # one item alone: 7, 2 and 4 candidates
        torch.testing.assert_close(b.score_choices(ex, cs), one, atol=ATOL, rtol=0)


@pytest.mark.model
def test_a_candidate_seeing_another_is_caught(backend, monkeypatch):
    """Not a vacuous comparison: letting each candidate attend the earlier candidates of its row moves the
    scores far beyond the tolerance."""
    import avere_utils.models.omni as omni

    def leaky(prompt, block, **kw):
        return attention_mask_4d(prompt, block.any(1, keepdim=True).expand_as(block).tril(), **kw)

    items = _items()[:1]
    good = _scores(backend, items, packed=True)[0]
    monkeypatch.setattr(omni, "attention_mask_4d", leaky)
    assert (_scores(backend, items, packed=True)[0] - good).abs().max() > 1e-3


@pytest.mark.model
def test_eager_attention_takes_the_additive_mask(backend):
    b = backend
    items = _items()
    ref = _scores(b, items, packed=False)
    b.thinker.set_attn_implementation("eager")
    try:
        assert b._packed_mask_form() == "additive"
        for got, want in zip(_scores(b, items, packed=True), ref):
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    finally:
        b.thinker.set_attn_implementation("sdpa")
    assert b._packed_mask_form() == "bool"


@pytest.mark.model
def test_stage_metrics_equal_with_and_without_packing(tmp_path_factory, tmp_path, monkeypatch):
    """The classification stage in scoring mode on the micro thinker: the metrics file is the same with
    pack_candidates on and off, apart from when and how fast it was made."""
    import json
    import shutil

    from avere_utils import config
    from avere_utils.evaluation import classification
    from avere_utils.evaluation.params import ClassificationParams
    from avere_utils.records import Item

    b = _backend("micro", tmp_path_factory)
    rng = np.random.default_rng(1)
    clips = [Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
                   audio=(0.3 * rng.standard_normal(16000)).astype(np.float32)) for _ in range(8)]
    items = [Item(id=f"c{i}", dataset="dfew", split="test", video=f"/v/{i}.mp4", label=EMOTIONS[i % 7])
             for i in range(8)]
    packed_calls = []
    real = type(b)._packed_scores
    monkeypatch.setattr(type(b), "_packed_scores", lambda self, *a: packed_calls.append(1) or real(self, *a))
    metrics = []
    for pack in (True, False):
        p = config.build(ClassificationParams, {"run_dir": str(tmp_path), "variant": "reference", "batch_size": 3,
                                                "modes": ["scoring"], "headline_mode": "scoring",
                                                "pack_candidates": pack}, "test")
        shutil.rmtree(tmp_path / "predictions", ignore_errors=True)  # same fingerprint: would be reused
        m = classification.evaluate_benchmark(p, "dfew", b, items=items, media_fn=lambda it: clips[int(it.id[1:])])
        metrics.append({k: v for k, v in json.loads(json.dumps(m)).items()
                        if k not in ("created", "timing", "predictions_file")})
        if pack:
            assert len(packed_calls) == 3  # one call per batch of 3
    assert b.pack_candidates is False
    b.pack_candidates = True
    assert metrics[0] == metrics[1] and metrics[0]["modes"]["scoring"]["n_scored"] == 8
