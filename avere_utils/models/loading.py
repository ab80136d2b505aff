"""Load a Qwen2.5-Omni thinker checkpoint folder (real or tiny, same code) into an `OmniBackend`."""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avere_utils.media import MediaSettings
from avere_utils.models.adapters import attach_adapter
from avere_utils.models.omni import OmniBackend
from avere_utils.models.processor import CHAT_TEMPLATE, ProcessorSettings
from avere_utils.weights import load_guard

log = logging.getLogger(__name__)

LLM_PREFIX = "model.language_model.layers"


@dataclass
class LoraSettings:
    """The paper's LoRA: rank 8, alpha 32 (scale 4) on the LLM's attention and MLP projections only."""

    r: int = 8
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])

    def target_regex(self) -> str:
        """A full-match regex that hits the LLM's projections but never the audio encoder's q/k/v_proj
        or the vision encoder's gate/up/down_proj (they share those names)."""
        names = "|".join(sorted(set(self.target_modules)))
        prefix = re.escape(LLM_PREFIX)
        return rf"(.*\.)?{prefix}\.\d+\.(self_attn|mlp)\.({names})"

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_regex(), bias="none")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use auto or one of {sorted(table)}")
    return table[dtype]


def load_thinker(model_dir: str | Path, *, dtype: torch.dtype, trust_remote_code: bool = False) -> torch.nn.Module:
    """The thinker from a thinker-only folder (tiny, or a saved reference) or a full Qwen2.5-Omni folder
    (talker and token2wav are not built: enable_audio_output=False)."""
    from transformers import AutoConfig, Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a checkpoint folder (no config.json)")
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if config.model_type == "qwen2_5_omni":
        config.enable_audio_output = False
        full = Qwen2_5OmniForConditionalGeneration.from_pretrained(
            model_dir, config=config, dtype=dtype, trust_remote_code=trust_remote_code)
        return full.thinker
    if config.model_type == "qwen2_5_omni_thinker":
        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            model_dir, dtype=dtype, trust_remote_code=trust_remote_code)
    raise ValueError(f"{model_dir}/config.json: model_type {config.model_type!r} is not a Qwen2.5-Omni "
                     "(qwen2_5_omni or qwen2_5_omni_thinker) checkpoint")


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    if not getattr(tok, "chat_template", None):
        # Qwen2.5-Omni ships its template in the processor's chat_template.json; ours is a faithful copy.
        log.info("%s: tokenizer has no chat template, using the kit's copy of Qwen2.5-Omni's", model_dir)
        tok.chat_template = CHAT_TEMPLATE
    return tok


def default_media_settings(settings: ProcessorSettings) -> MediaSettings:
    """The checkpoint's expected decoding settings (its avere_processor.json) as `MediaSettings`."""
    known = {f.name for f in dataclasses.fields(MediaSettings)}
    unknown = sorted(set(settings.media) - known)
    if unknown:
        raise ValueError(f"avere_processor.json: media key(s) {unknown} are not MediaSettings fields {sorted(known)}")
    return MediaSettings(**settings.media)


def load_backend(model_dir: str, *, adapter_dir: str | None = None, lora: LoraSettings | None = None,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 media: Any = None) -> OmniBackend:
    """A backend over the checkpoint in `model_dir`.

    adapter_dir: load saved LoRA adapters (trainable).  lora: add fresh LoRA adapters (ignored when
    adapter_dir is given).  Neither: the plain model, all parameters trainable (SFT full fine-tune).
    device "auto": cuda when available.  dtype "auto": bf16 on GPU, fp32 on CPU.
    media: decoding settings for `avere_utils.media.load_media`; default: the checkpoint's own.
    A truncated or unreadable weight file is a `weights.WeightsError` naming it and the stage that
    rebuilds it (docs/bad_input.md), not the deserializer's message alone.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    with load_guard(model_dir):
        thinker = load_thinker(model_dir, dtype=dt, trust_remote_code=trust_remote_code).to(dev)
    thinker.eval()
    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    settings = ProcessorSettings.load(model_dir)
    model: torch.nn.Module = thinker
    if adapter_dir is not None:
        with load_guard(adapter_dir):
            model = attach_adapter(thinker, adapter_dir)
        if lora is not None:
            log.info("adapter_dir given: loaded %s, the fresh `lora` settings are not used", adapter_dir)
    elif lora is not None:
        from peft import get_peft_model

        model = get_peft_model(thinker, lora.peft_config())
    backend = OmniBackend(model, thinker, tokenizer, settings, dev,
                          media_settings=media if media is not None else default_media_settings(settings),
                          model_dir=str(model_dir))
    counts = backend.parameter_counts()
    log.info("loaded %s on %s (%s): %s", model_dir, dev, dt, counts)
    return backend
