"""The shared-prefix pass computes what the unshared pass computes: log-probs within 1e-5 and LoRA
gradients within 1e-5 (relative, per tensor), on the micro Qwen2.5-Omni thinker in fp32, for every variant
and for a micro-batch mixing visual, audio and joint prompts with and without PMP inputs; with and
without nesting (a prompt continuing another prompt's cache for their common first tokens)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from training.test_trainer import CORPUS, fake_rows, make_params, real_media_source

from avere_utils.models.shared_prefix import common_prefix_length, group_by_prefix, nest_plan, prefix_key
from avere_utils.records import Example, Media
from avere_utils.training.trainer import Trainer
from avere_utils.training.variants import VARIANTS

pytestmark = pytest.mark.model  # builds or trains a Qwen2.5-Omni thinker: not in make test-fast

ATOL = 1e-5


def test_group_by_prefix_keeps_first_seen_order():
    heads, group = group_by_prefix(["a", "b", "a", "c", "b"])
    assert heads == [0, 1, 3] and group == [0, 1, 0, 2, 1]
    m1, m2 = Media(audio=np.zeros(4, np.float32)), Media(audio=np.zeros(4, np.float32))
    # equal content but different objects are different prefixes; no media at all is one prefix per prompt
    assert prefix_key(Example("q", m1), m1) != prefix_key(Example("q", m2), m2)
    assert prefix_key(Example("q"), None) == prefix_key(Example("q", None, "x"), None)


def test_nest_plan_reuses_long_common_parts_only():
    system = list(range(10))
    video = [50] * 40
    real = system + video + [60] * 10 + [1, 2]
    pmp_audio = system + video + [61] * 12 + [1, 2]  # audio replaced: shares system turn + video
    pmp_video = system + [51] * 40 + [60] * 10 + [1, 2]  # video replaced: only the system turn in common
    plan = nest_plan([real, pmp_audio, pmp_video], min_tokens=20, min_fraction=0.25)
    assert plan == [None, (0, 50), None]
    # a prompt identical to a root keeps its last token to run (it predicts the first response token)
    assert nest_plan([real, list(real)], min_tokens=1, min_fraction=0.0) == [None, (0, len(real) - 1)]
    assert common_prefix_length([1, 2, 3], [1, 2]) == 2
    # same ids, different clips: the verified common part decides, so B's PMP input nests after B (not A)
    same = [system + video + [1, 2]] * 4
    clip = {0: "A", 1: "A", 2: "B", 3: "B"}
    verify = lambda r, j, c: c if clip[r] == clip[j] else 10  # noqa: E731
    assert nest_plan(same, min_tokens=20, min_fraction=0.25, verify=verify) == [None, (0, 51), None, (2, 51)]


def test_width_groups_split_only_when_padding_is_worth_a_second_pass():
    from avere_utils.models.packing import width_groups

    # a training step: three responses after each real prompt, one after each PMP input
    assert width_groups([180, 60, 180, 60, 180, 60]) == [[1, 3, 5], [0, 2, 4]]
    assert width_groups([60, 62, 58]) == [[0, 1, 2]]  # nearly equal: one pass
    assert width_groups([]) == [[]] and width_groups([7]) == [[0]]
    assert width_groups([0, 0, 30]) == [[0, 1], [2]]  # one-token candidates need no pass at all


def test_audio_targeted_pmp_input_nests_after_its_real_prompt(lora_backend):
    """The real prompts of a visual and an audio pair and their PMP inputs: only the audio pair's PMP
    input (real video, other audio) continues its real prompt's cache, after the video."""
    b = lora_backend
    all_rows = fake_rows(6)
    rows = [all_rows[0], all_rows[4]]  # visual, audio (row 1's real video is row 0's rejected one)
    source = real_media_source(all_rows)
    exs = []
    for row in rows:
        real, rej = source.load_media(row)
        pmp = Media(frames=rej.frames if row["modality"] == "visual" else real.frames,
                    audio=real.audio if row["modality"] == "visual" else rej.audio)
        exs += [Example(row["prompt"], real), Example(row["prompt"], pmp)]
    saved = b.nest_min_tokens, b.nest_min_fraction
    b.nest_min_tokens, b.nest_min_fraction = 30, 0.25  # more than the micro prompt's system turn (27)
    try:
        batch = b._build(exs, with_response=False)
        with torch.no_grad():
            state = b._prompt_pass(batch, nest=True)
    finally:
        b.nest_min_tokens, b.nest_min_fraction = saved
    assert state.plan[:3] == [None, None, None] and state.plan[3][0] == 2
    n_video = b.encode_media(exs[2].media).n_video_tokens
    assert state.plan[3][1] > n_video  # the system turn, the media block's start and all the video


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    from avere_utils.models.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), CORPUS, size="micro", seed=0)


# "plain": the default thresholds, under which the micro model's short prompts never nest (one prompt
# pass per distinct prompt); "nested": any common first part is reused, so every prompt after the first
# continues another's cache (the PMP input after the real one's video, the text-only prompt after the
# system turn) - the path an audio-targeted PMP input or an evaluation clip's questions take at real size.
# "copies": as plain, with the responses after a copy of their prompt's cache each instead of packed into
# one row per prompt (pack_candidates off, the path of an attention that takes no 4-D mask).
@pytest.fixture(scope="module", params=["plain", "nested", "copies"])
def lora_backend(micro_dir, request):
    from avere_utils.models import LoraSettings, load_backend

    torch.manual_seed(0)
    backend = load_backend(str(micro_dir), lora=LoraSettings(r=4, alpha=16), device="cpu")
    with torch.no_grad():  # non-zero B, as after a few steps, so that every LoRA matrix gets a gradient
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    if request.param == "nested":
        backend.nest_min_tokens, backend.nest_min_fraction = 4, 0.0
    backend.pack_candidates = request.param != "copies"
    backend.mode = request.param
    return backend


def _check_nesting(backend, before: int) -> None:
    nested = backend.nested_rows_total - before
    assert (nested > 0) if backend.mode == "nested" else (nested == 0)


def _examples(source, rows):
    out = []
    for row in rows:
        real, rej = source.load_media(row)
        out += [Example(row["prompt"], real, row["chosen"]), Example(row["prompt"], real, row["rejected_vr"]),
                Example(row["prompt"], real, row["rejected_er"]), Example(row["prompt"], rej, row["chosen"]),
                Example(row["prompt"], None, row["rejected_er"]), Example(row["prompt"], None, row["chosen"])]
    return out


def test_logprobs_shared_equal_unshared_with_and_without_grad(lora_backend):
    rows = fake_rows(6)[:3]  # visual, audio, both
    exs = _examples(real_media_source(rows), rows)
    b = lora_backend
    plain, n_plain = b.sequence_logprobs(exs)
    before = b.nested_rows_total
    shared, n_shared = b.sequence_logprobs(exs, share_prefix=True)
    _check_nesting(b, before)
    assert torch.equal(n_plain, n_shared)
    torch.testing.assert_close(shared, plain, atol=ATOL, rtol=0)
    with b.reference():
        torch.testing.assert_close(b.sequence_logprobs(exs, share_prefix=True)[0], b.sequence_logprobs(exs)[0],
                                   atol=ATOL, rtol=0)
    # not a vacuous comparison: different responses after one prompt do get different values
    assert (plain[0] - plain[1]).abs() > 1e-3


def _grads(backend, tmp_path, variant: str, shared: bool, indices) -> tuple[torch.Tensor, list[torch.Tensor]]:
    rows = fake_rows(6)
    params = make_params(tmp_path / f"{variant}-{shared}", variant=variant, per_device_train_batch_size=len(indices),
                         precompute_reference=False, logp_cache_dir="", shared_prefix=shared)
    trainer = Trainer(params, backend=backend, pairs=real_media_source(rows))
    backend.model.zero_grad(set_to_none=True)
    out = trainer.micro_batch_loss(indices)
    out.loss.backward()
    grads = [p.grad.detach().clone() for p in trainer.trainable]
    backend.model.zero_grad(set_to_none=True)
    return out.loss.detach(), grads


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_and_lora_gradients_shared_equal_unshared(lora_backend, tmp_path, variant):
    # rows 0-2: visual, audio and joint prompts with PMP inputs (where the variant has PMP); row 4 is an
    # audio row, which vista_dpo gives no PMP input: the batch mixes samples with and without one
    idx = [0, 1, 2, 4]
    loss_u, g_u = _grads(lora_backend, tmp_path, variant, False, idx)
    before = lora_backend.nested_rows_total
    loss_s, g_s = _grads(lora_backend, tmp_path, variant, True, idx)
    _check_nesting(lora_backend, before)
    torch.testing.assert_close(loss_s, loss_u, atol=ATOL, rtol=0)
    worst = max(float((a - b).norm() / a.norm()) for a, b in zip(g_u, g_s))
    assert all(a.norm() > 0 for a in g_u)
    assert worst < ATOL, f"{variant}: largest per-tensor relative LoRA gradient difference {worst:.2e}"
