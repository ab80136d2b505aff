"""A tiny Qwen2.5-Omni thinker built from a config object, with a tokenizer trained offline.

The result is an ordinary checkpoint folder (config.json, model.safetensors, tokenizer files with the chat
template, avere_processor.json) that `load_backend` loads with the same code as real weights.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Iterable

import torch

from avere_utils.models.processor import (
    AUDIO_BOS,
    AUDIO_EOS,
    AUDIO_TOKEN,
    CHAT_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    IM_START,
    IMAGE_TOKEN,
    SPECIAL_TOKENS,
    VIDEO_TOKEN,
    VISION_BOS,
    VISION_EOS,
    ProcessorSettings,
)
from avere_utils.paths import check_output_path

log = logging.getLogger(__name__)

# Named sizes.  "tiny" is measured to fit the CPU budget and learn the synthetic world (see docs/models.md).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "vocab_size": 1024,
        "text": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "mrope_section": [4, 6, 6]},
        "vision": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "patch_size": 14},
        "audio": {"encoder_layers": 2, "d_model": 64, "encoder_attention_heads": 4, "encoder_ffn_dim": 128},
        # what the checkpoint expects from avere_utils.media.MediaSettings (8 frames of 56x56, 16 kHz)
        "media": {"n_frames": 8, "frame_size": 56, "sample_rate": 16000},
    },
    "micro": {  # for unit tests
        "vocab_size": 512,
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "mrope_section": [2, 3, 3]},
        "vision": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14},
        "audio": {"encoder_layers": 1, "d_model": 32, "encoder_attention_heads": 2, "encoder_ffn_dim": 64},
        "media": {"n_frames": 8, "frame_size": 56, "sample_rate": 16000},
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_size(size: str | dict[str, Any]) -> dict[str, Any]:
    """A named size, or a dict of overrides on top of "tiny" (e.g. {"text": {"num_hidden_layers": 4}})."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown tiny model size {size!r}; sizes: {sorted(SIZES)}")
        return copy.deepcopy(SIZES[size])
    return _merge(SIZES["tiny"], size)


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on the corpus (any text encodes, nothing is unknown), with the Qwen2.5-Omni
    special tokens, wrapped as a transformers fast tokenizer carrying the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((t for t in corpus if t), trainer=trainer)
    # The named media tokens (tokenizer.video_token etc.) are what the official Qwen2.5-Omni processor reads.
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT, extra_special_tokens={
        "image_token": IMAGE_TOKEN, "audio_token": AUDIO_TOKEN, "video_token": VIDEO_TOKEN,
        "vision_bos_token": VISION_BOS, "vision_eos_token": VISION_EOS,
        "audio_bos_token": AUDIO_BOS, "audio_eos_token": AUDIO_EOS})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer: Any, spec: dict[str, Any]):
    from transformers import Qwen2_5OmniThinkerConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(spec["text"])
    mrope = text.pop("mrope_section")
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(mrope) * 2 != head_dim:
        raise ValueError(f"mrope_section {mrope} must sum to head_dim/2 = {head_dim // 2}")
    vision = dict(spec["vision"])
    vision.setdefault("fullatt_block_indexes", [vision["depth"] - 1])
    vision.setdefault("window_size", 112)
    return Qwen2_5OmniThinkerConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=4096, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
                         pad_token_id=ids[ENDOFTEXT], eos_token_id=ids[IM_END], **text),
        vision_config=dict(out_hidden_size=text["hidden_size"], spatial_merge_size=2, temporal_patch_size=2, **vision),
        audio_config=dict(output_dim=text["hidden_size"], num_mel_bins=128, **spec["audio"]),
        audio_token_index=ids[AUDIO_TOKEN], image_token_index=ids[IMAGE_TOKEN], video_token_index=ids[VIDEO_TOKEN],
        audio_start_token_id=ids[AUDIO_BOS], audio_end_token_id=ids[AUDIO_EOS],
        vision_start_token_id=ids[VISION_BOS], vision_end_token_id=ids[VISION_EOS],
        user_token_id=tokenizer("user", add_special_tokens=False)["input_ids"][0],
        pad_token_id=ids[ENDOFTEXT], eos_token_id=ids[IM_END], im_start_token_id=ids[IM_START],
        tie_word_embeddings=False,
    )


def build_tiny_checkpoint(out_dir: str | Path, corpus: Iterable[str], *, size: str | dict[str, Any] = "tiny",
                          seed: int = 0, system_prompt: str | None = None) -> Path:
    """Train a tokenizer on `corpus`, build a randomly initialised tiny thinker, save both to out_dir."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    spec = resolve_size(size)
    out = check_output_path(out_dir, "build_tiny_checkpoint: out_dir")
    out.mkdir(parents=True, exist_ok=True)
    settings_prompt = system_prompt or "You are an assistant that perceives audio and video."
    corpus = list(corpus) + [settings_prompt]
    if not corpus:
        raise ValueError("build_tiny_checkpoint: empty tokenizer corpus")
    tokenizer = train_tokenizer(corpus, spec["vocab_size"])
    config = tiny_config(tokenizer, spec)
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    patch = spec["vision"]["patch_size"]
    frame = spec["media"].get("frame_size", 56)
    if frame % (patch * 2):
        raise ValueError(f"frame_size {frame} must be a multiple of patch_size*merge_size = {patch * 2}")
    settings = ProcessorSettings(patch_size=patch, temporal_patch_size=2, merge_size=2,
                                 min_pixels=(patch * 2) ** 2, max_pixels=frame * frame,
                                 media=dict(spec["media"]),
                                 system_prompt=settings_prompt)
    settings.save(out)
    n = sum(p.numel() for p in model.parameters())
    log.info("tiny checkpoint (%d parameters, vocab %d) written to %s", n, len(tokenizer), out)
    return out
