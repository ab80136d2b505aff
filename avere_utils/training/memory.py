"""Peak memory of one LoRA DPO / AVEm-DPO step, on paper: weights + LoRA state + what autograd keeps.

The activation term counts the tensors autograd saves for the backward pass of a Qwen2.5-Omni thinker
layer with frozen base weights and LoRA on its seven projections (inventoried with
`torch.autograd.graph.saved_tensors_hooks` on transformers 5.24 / sdpa; bench/bench_training_geometry.py
measures the same hook total and reports estimate / measured).  Per query token and layer:

* activation dtype: the two RMSNorm outputs (inputs of q/k/v and gate/up), the attention output (input
  of o_proj), q after rotary, gate, up, silu(gate) and silu(gate) * up (four intermediate-sized), and the
  seven rank-r LoRA A outputs;
* float32 whatever the dtype: the two RMSNorm inputs (upcast) and their rsqrt, and the attention
  kernel's log-sum-exp per head;
* per KEY token: k and v, repeated to all heads when a mask is present (transformers' sdpa path only
  asks the kernel for GQA when there is no mask), else at the key/value heads;
* a mask of q_len x k_len per row when the pass is masked (the kernel's float copy, one per layer).

Outside the layers: rotary cos/sin (float32, once) and the float32 log-softmax over the vocabulary of
every scored response token.  Frozen encoders run without a graph (nothing saved).  Transient buffers
(one layer's forward temporaries, the allocator's slack) are not counted: the estimate is what stays
alive when backward starts, which is the step's peak for these sequence lengths.
"""
from __future__ import annotations

from dataclasses import dataclass

LORA_TARGETS = 7  # q, k, v, o, gate, up, down
FP32 = 4


@dataclass(frozen=True)
class LMShape:
    """The language model's dimensions and the parameter counts a step keeps in memory."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    total_params: int  # the whole thinker (LLM + vision + audio encoders), held in the weight dtype

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def lora_params(self, r: int) -> int:
        """Rank-r A and B on q, k, v, o (attention) and gate, up, down (MLP) of every layer."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        pairs = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
        return self.layers * sum(r * (a + b) for a, b in pairs)


def shape_from_config(config) -> LMShape:
    """LMShape of a Qwen2_5OmniThinkerConfig; parameters counted on the meta device (no memory used)."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    with torch.device("meta"):
        n = sum(p.numel() for p in Qwen2_5OmniThinkerForConditionalGeneration(config).parameters())
    t = config.text_config
    return LMShape(t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads,
                   t.num_key_value_heads, t.vocab_size, n)


def qwen2_5_omni_7b_config():
    """The thinker of Qwen/Qwen2.5-Omni-7B (its config.json's sizes; weights never needed)."""
    from transformers import Qwen2_5OmniThinkerConfig

    return Qwen2_5OmniThinkerConfig(
        text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        audio_config=dict(encoder_layers=32, d_model=1280, encoder_attention_heads=20, encoder_ffn_dim=5120,
                          output_dim=3584, num_mel_bins=128),
        tie_word_embeddings=False)


@dataclass(frozen=True)
class Pass:
    """One language-model forward: `rows` sequences of q_len new tokens attending to k_len keys each."""

    rows: int
    q_len: int
    k_len: int
    masked: bool


def step_passes(*, prompt_tokens: int, response_tokens: int, batch: int, method: str, shared: bool,
                padded: bool = True) -> list[Pass]:
    """The policy passes of one step (reference and text-only log-probs precomputed, as the kit does).

    method "dpo": chosen + rejected, two full sequences per sample (trl's concatenated forward).
    method "avem": chosen, vr, er on the real input and chosen on the PMP input; shared: one prompt pass
    per distinct prompt (real, PMP), then the four responses after their prompt's KV cache, one row each (the
    layout with `pack_candidates: false`).  The default packs a prompt's responses into one row, which keeps
    k and v over the prompt once per prompt instead of once per response: this estimate is an upper bound
    for it (tests/training/test_training_memory.py measures the packed layout on the micro thinker).
    padded: the rows of a pass differ in length (real data: they do), so attention gets a mask; rows of
    equal length get none (transformers then lets sdpa run causal, without repeating k and v).  The
    response pass after a cache always has one."""
    p, r = prompt_tokens, response_tokens
    if method == "dpo":
        n = 2 * batch
        return [Pass(n, p + r, p + r, masked=padded)]
    if method != "avem":
        raise ValueError(f"method must be 'dpo' or 'avem', got {method!r}")
    if not shared:
        return [Pass(4 * batch, p + r, p + r, masked=padded)]
    # the response pass feeds r - 1 tokens (the prompt's last position predicts the first one)
    return [Pass(2 * batch, p, p, masked=padded), Pass(4 * batch, r - 1, p + r - 1, masked=True)]


def activation_bytes(shape: LMShape, passes: list[Pass], *, scored_tokens: int, act_bytes: int, lora_r: int,
                     first_token_rows: int = 0) -> int:
    """Bytes autograd keeps for backward over these passes (see the module docstring for the terms)."""
    h, i, L = shape.hidden, shape.intermediate, shape.layers
    per_query = (4 * h + 4 * i + LORA_TARGETS * lora_r) * act_bytes + (2 * h + 2 + shape.heads) * FP32
    total = 0
    for ps in passes:
        q_tokens = ps.rows * ps.q_len
        kv = 2 * (h if ps.masked else shape.kv_dim) * ps.rows * ps.k_len * act_bytes
        mask = ps.rows * ps.q_len * ps.k_len * act_bytes if ps.masked else 0
        total += L * (q_tokens * per_query + kv + mask)
        total += 2 * q_tokens * shape.head_dim * FP32  # rotary cos and sin
    total += (scored_tokens + first_token_rows) * shape.vocab * FP32  # log-softmax of each scored token
    return total


def estimate_step_memory(shape: LMShape, *, prompt_tokens: int, response_tokens: int, batch: int, method: str,
                         shared: bool, padded: bool = True, weight_bytes: int = 2, act_bytes: int = 2,
                         lora_r: int = 8, lora_bytes_per_param: int = 16) -> dict[str, int]:
    """Estimated peak bytes of one policy step: weights, LoRA state (fp32 parameter, gradient and two AdamW
    moments = 16 bytes per parameter: PEFT keeps adapters in fp32 over a bf16 base), activations."""
    passes = step_passes(prompt_tokens=prompt_tokens, response_tokens=response_tokens, batch=batch,
                         method=method, shared=shared, padded=padded)
    n_resp = (2 if method == "dpo" else 4) * batch
    if shared and method == "avem":  # the prompt pass scores each response's first token
        scored, first = n_resp * (response_tokens - 1), 2 * batch + n_resp
    else:
        scored, first = n_resp * response_tokens, 0
    acts = activation_bytes(shape, passes, scored_tokens=scored, act_bytes=act_bytes, lora_r=lora_r,
                            first_token_rows=first)
    weights = shape.total_params * weight_bytes
    lora = shape.lora_params(lora_r) * lora_bytes_per_param
    return {"weights": weights, "lora_state": lora, "activations": acts, "total": weights + lora + acts}


class SavedTensorMeter:
    """Bytes of the distinct storages autograd saves for backward inside the `with` block, parameters
    excluded (what `activation_bytes` estimates; measurable on any device)."""

    def __init__(self, parameters):
        self._params = {p.untyped_storage().data_ptr() for p in parameters}
        self._seen: dict[int, int] = {}
        self._ctx = None

    def _pack(self, t):
        st = t.untyped_storage()
        if st.data_ptr() not in self._params:
            self._seen[st.data_ptr()] = st.nbytes()
        return t

    def __enter__(self) -> "SavedTensorMeter":
        import torch

        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())


# The paper geometry (docs/training.md): 8 frames at 448x448 -> 1,024 video tokens, ~4 s of audio -> ~100,
# question and chat template ~30; answers of ~60 tokens.
PAPER_PROMPT_TOKENS = 1150
PAPER_RESPONSE_TOKENS = 60


def paper_table(shape: LMShape | None = None, *, prompt_tokens: int = PAPER_PROMPT_TOKENS,
                response_tokens: int = PAPER_RESPONSE_TOKENS) -> list[dict]:
    """Estimated peak GiB of a LoRA step of Qwen2.5-Omni-7B in bf16: DPO and AVEm-DPO unshared / shared,
    batch 1 and 2 per device."""
    shape = shape or shape_from_config(qwen2_5_omni_7b_config())
    rows = []
    for batch in (1, 2):
        for method, shared, label in (("dpo", False, "DPO (2 sequences)"), ("avem", False, "AVEm-DPO unshared"),
                                      ("avem", True, "AVEm-DPO shared prefix")):
            est = estimate_step_memory(shape, prompt_tokens=prompt_tokens, response_tokens=response_tokens,
                                       batch=batch, method=method, shared=shared)
            rows.append({"batch": batch, "step": label, **{k: v / 2**30 for k, v in est.items()}})
    return rows


def markdown_table(rows: list[dict]) -> str:
    out = ["| batch | step | weights | LoRA state | activations | total (GiB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['batch']} | {r['step']} | {r['weights']:.1f} | {r['lora_state']:.2f} | "
                   f"{r['activations']:.1f} | {r['total']:.1f} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown_table(paper_table()))
