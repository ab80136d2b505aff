"""The paper memory estimate: its activation term equals what autograd saves on the micro thinker (the
same hook the geometry benchmark uses), and the 7B table's figures are what the function gives."""
from __future__ import annotations

import pytest
from test_trainer import CORPUS

from avere_utils.records import Example
from avere_utils.training.memory import (
    LMShape,
    Pass,
    SavedTensorMeter,
    activation_bytes,
    estimate_step_memory,
    shape_from_config,
    step_passes,
)

pytestmark = pytest.mark.model  # builds or trains a Qwen2.5-Omni thinker: not in make test-fast


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from avere_utils.models import LoraSettings, load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), CORPUS, size="micro", seed=0)
    b = load_backend(str(ckpt), lora=LoraSettings(r=8, alpha=32), device="cpu")
    b.model.train()
    return b


def _measured(backend, examples, share: bool) -> int:
    with SavedTensorMeter(backend.model.parameters()) as meter:
        backend.sequence_logprobs(examples, grad=True, share_prefix=share)
    return meter.bytes


@pytest.mark.parametrize("share", [False, True])
def test_activation_estimate_matches_saved_tensors(backend, share):
    prompt = "Why is person 1 feeling this way? " * 4
    # equal-length responses (so the estimate's one response length is exact), two of them after one prompt
    responses = ["a broad smile 1", "a broad smile 2"]
    exs = [Example(prompt, None, r) for r in responses]
    n_prompt = int(backend._build(exs[:1], with_response=False).attention_mask.sum())
    n_resp = len(backend.response_ids(responses[0]))
    assert all(len(backend.response_ids(r)) == n_resp for r in responses)
    shape = shape_from_config(backend.thinker.config)
    if share:
        # the packed layout (pack_candidates, the default): both responses in one row after the prompt's
        # cache, under one block mask; the prompt's last position scores each response's first token
        q = 2 * (n_resp - 1)
        passes = [Pass(1, n_prompt, n_prompt, masked=False), Pass(1, q, n_prompt + q, masked=True)]
        est = activation_bytes(shape, passes, scored_tokens=q, act_bytes=4, lora_r=8, first_token_rows=1)
    else:
        passes = [Pass(2, n_prompt + n_resp, n_prompt + n_resp, masked=False)]
        est = activation_bytes(shape, passes, scored_tokens=2 * n_resp, act_bytes=4, lora_r=8)
    measured = _measured(backend, exs, share)
    # what the estimate leaves out: a few index tensors (int64 targets, row numbers)
    assert abs(est - measured) / measured < 0.02, (est, measured)


def test_padding_adds_the_mask_and_full_head_kv(backend):
    exs = [Example("Why is person 1 feeling this way?", None, "a broad smile 1"),
           Example("Why is person 1 feeling this way?", None, "the yellow wall 2 and clenched fists")]
    shape = shape_from_config(backend.thinker.config)
    b = backend._build(exs, with_response=True)
    rows, length = b.input_ids.shape
    scored = int(b.response_mask.sum())
    est = activation_bytes(shape, [Pass(rows, length, length, masked=True)], scored_tokens=scored, act_bytes=4,
                           lora_r=8)
    measured = _measured(backend, exs, False)
    assert abs(est - measured) / measured < 0.02, (est, measured)


def test_seven_b_table_orders_and_sizes():
    shape = LMShape(hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064,
                    total_params=8_900_000_000)
    assert shape.lora_params(8) == 28 * 8 * (2 * 7168 + 2 * 4096 + 3 * 22528)
    kw = dict(prompt_tokens=1150, response_tokens=60)
    dpo = estimate_step_memory(shape, batch=1, method="dpo", shared=False, **kw)
    unshared = estimate_step_memory(shape, batch=1, method="avem", shared=False, **kw)
    shared = estimate_step_memory(shape, batch=1, method="avem", shared=True, **kw)
    assert dpo["weights"] == unshared["weights"] == 17_800_000_000
    # four full sequences hold twice what two do; the shared pass holds two prompts' worth plus the four
    # responses' k and v over the whole prompt (repeated to 28 heads: about 2 GB at this geometry)
    assert unshared["activations"] == pytest.approx(2 * dpo["activations"], rel=1e-9)
    assert dpo["activations"] < shared["activations"] < 0.6 * unshared["activations"]
    kv = 28 * 4 * 2 * 3584 * (1150 + 59) * 2
    assert shared["activations"] - dpo["activations"] > kv
    assert len(step_passes(batch=2, method="avem", shared=True, **kw)) == 2
    with pytest.raises(ValueError, match="method"):
        step_passes(batch=1, method="ppo", shared=False, **kw)
