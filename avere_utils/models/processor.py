"""Model inputs for the Qwen2.5-Omni thinker, written in the kit (no torchvision needed).

Mirrors transformers 5.24 `Qwen2_5OmniProcessor` + `Qwen2VLVideoProcessor` + `WhisperFeatureExtractor`:

* audio: 128-bin Whisper log-mel features; the number of audio placeholder tokens is the encoder's
  output length ((n - 1) // 2 + 1 - 2) // 2 + 1 of the n valid feature frames.  Whisper's extractor cuts
  audio at 30 s; here a setting decides (`long_audio`: "extend" keeps all of it, "cut" truncates) and the
  decision is logged, never silent.
* video: smart-resize to a multiple of patch_size * merge_size, pad the frame count to a multiple of
  temporal_patch_size by repeating the last frame, rescale to [0, 1], normalise with the CLIP mean/std,
  and flatten to (grid_t * grid_h * grid_w, C * T * P * P) in the official patch order; the number of
  video placeholder tokens is grid_t * grid_h * grid_w / merge_size ** 2.
* text: the chat template (system prompt, then a user turn with the media placeholders before the
  prompt).  With `audio_in_video` (the paper's setting, as in Qwen2.5-Omni's `use_audio_in_video`), a clip
  that has both frames and audio becomes ONE block `<|vision_bos|><|audio_bos|>` + video and audio tokens
  interleaved in 2-second chunks + `<|audio_eos|><|vision_eos|>`, which the thinker's TMRoPE aligns in
  time.  A text-only prompt (no media) has no placeholders at all.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from avere_utils.records import Media

log = logging.getLogger(__name__)

# OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, as used by the Qwen2-VL image and video processors.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

QWEN_OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)

# The special-token strings of Qwen2.5-Omni; the tiny tokenizer uses the same strings.
AUDIO_TOKEN = "<|AUDIO|>"
IMAGE_TOKEN = "<|IMAGE|>"
VIDEO_TOKEN = "<|VIDEO|>"
AUDIO_BOS, AUDIO_EOS = "<|audio_bos|>", "<|audio_eos|>"
VISION_BOS, VISION_EOS = "<|vision_bos|>", "<|vision_eos|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, AUDIO_TOKEN, IMAGE_TOKEN, VIDEO_TOKEN,
                  AUDIO_BOS, AUDIO_EOS, VISION_BOS, VISION_EOS)

PROCESSOR_FILE = "avere_processor.json"

# Qwen2.5-Omni's chat template (content items rendered back to back, no separators).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class ProcessorSettings:
    """How media become model inputs.  Saved next to a checkpoint as avere_processor.json.

    `media` holds the decoding settings the checkpoint expects (passed to `avere_utils.media.MediaSettings`,
    e.g. number of frames, frame size, sample rate)."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    # Official Qwen2.5-Omni video defaults are 128*28*28 .. 768*28*28 pixels per frame.
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    sampling_rate: int = 16000
    feature_size: int = 128
    long_audio: str = "extend"  # "extend": keep audio past 30 s (the encoder chunks it) | "cut": truncate at 30 s
    audio_in_video: bool = True  # interleave a clip's audio with its video (Qwen2.5-Omni use_audio_in_video)
    video_fps: float | None = None  # fps of the sampled frames; None: n_frames / clip duration (from the audio), else 2.0
    position_id_per_seconds: int = 25
    seconds_per_chunk: float = 2.0
    system_prompt: str = QWEN_OMNI_SYSTEM_PROMPT
    # default for real weights without avere_processor.json: 8 frames resized to 448x448 (within the
    # official 128*28*28 .. 768*28*28 pixel range: 32x32 patches, 256 video tokens per 2 frames)
    media: dict[str, Any] = field(default_factory=lambda: {"n_frames": 8, "frame_size": 448, "sample_rate": 16000})

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / PROCESSOR_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "ProcessorSettings":
        """The checkpoint's settings, or the official Qwen2.5-Omni defaults when the folder has none."""
        path = Path(model_dir) / PROCESSOR_FILE
        if not path.is_file():
            log.info("%s has no %s: using the Qwen2.5-Omni processor defaults", model_dir, PROCESSOR_FILE)
            return cls()
        raw = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**raw)


# --- audio ------------------------------------------------------------------------------------------
def audio_output_length(n_frames: int) -> int:
    """Audio tokens produced by the Qwen2.5-Omni audio encoder from n feature frames (conv stride 2, pool 2)."""
    after_conv = (n_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


class AudioFeaturizer:
    """Whisper log-mel features of the valid frames only (what the thinker keeps after its mask)."""

    def __init__(self, settings: ProcessorSettings):
        from transformers import WhisperFeatureExtractor

        self.settings = settings
        self.fe = WhisperFeatureExtractor(feature_size=settings.feature_size, sampling_rate=settings.sampling_rate)
        self._warned_long = False

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(feature_size, n_valid_frames) float32 for a mono waveform at `sample_rate`."""
        if sample_rate != self.settings.sampling_rate:
            raise ValueError(f"audio at {sample_rate} Hz, the model expects {self.settings.sampling_rate} Hz "
                             "(resample when decoding: avere_utils.media does)")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise ValueError("empty audio array")
        limit = self.fe.n_samples  # 30 s
        if audio.size > limit:
            secs = audio.size / sample_rate
            if self.settings.long_audio == "cut":
                log.warning("audio of %.1f s cut to %.0f s (long_audio='cut')", secs, limit / sample_rate)
                audio = audio[:limit]
            elif self.settings.long_audio == "extend":
                if not self._warned_long:
                    log.info("audio of %.1f s kept whole past Whisper's 30 s window (long_audio='extend'); "
                             "the audio encoder processes it in chunks", secs)
                    self._warned_long = True
            else:
                raise ValueError(f"long_audio must be 'extend' or 'cut', got {self.settings.long_audio!r}")
        hop, n_fft = self.fe.hop_length, self.fe.n_fft
        n_valid = math.ceil(audio.size / hop)
        # Zero padding past the end, as the official 30 s padding does: the valid frames then see exactly
        # the same samples (each frame spans n_fft samples around its centre).
        padded = np.zeros(n_valid * hop + n_fft, dtype=np.float32)
        padded[: audio.size] = audio
        feats = self.fe(padded, sampling_rate=sample_rate, padding="do_not_pad", truncation=False,
                        return_attention_mask=False, return_tensors="np")["input_features"][0]
        return feats[:, :n_valid].astype(np.float32)


# --- video ------------------------------------------------------------------------------------------
def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Copy of transformers' qwen2_vl smart_resize: sides divisible by factor, area within the bounds."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify_video(frames: np.ndarray, settings: ProcessorSettings) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(T, H, W, 3) uint8 frames -> (grid_t * grid_h * grid_w, 3 * T_p * P * P) float32 patches and grid_thw."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    p, tp, m = settings.patch_size, settings.temporal_patch_size, settings.merge_size
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # T, C, H, W
    h, w = video.shape[-2:]
    rh, rw = smart_resize(h, w, factor=p * m, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    video = video.float()
    if (rh, rw) != (h, w):
        # torchvision's bicubic antialiased resize on uint8, approximated with torch + rounding back to uint8
        video = F.interpolate(video, size=(rh, rw), mode="bicubic", antialias=True, align_corners=False)
        video = video.round().clamp(0, 255)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    video = (video / 255.0 - mean) / std
    if pad := -video.shape[0] % tp:
        video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)], dim=0)
    t, c = video.shape[0], video.shape[1]
    gt, gh, gw = t // tp, rh // p, rw // p
    patches = video.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # gt, gh/m, gw/m, m, m, C, T, P, P
    return patches.reshape(gt * gh * gw, c * tp * p * p).contiguous(), (gt, gh, gw)


def chunked_index(token_indices: np.ndarray, tokens_per_chunk: int) -> list[tuple[int, int]]:
    """Copy of Qwen2_5OmniProcessor.get_chunked_index: split a monotone index list into time chunks."""
    out, start, chunk = [], 0, 1
    for i, v in enumerate(token_indices):
        if v >= chunk * tokens_per_chunk:
            out.append((start, i))
            start = i
            chunk += 1
    out.append((start, len(token_indices)))
    return out


# --- one encoded clip -------------------------------------------------------------------------------
@dataclass
class EncodedMedia:
    """What the model needs from one Media: encoder inputs and the placeholder string for the prompt."""

    pixel_values: torch.Tensor | None  # (n_patches, patch_dim)
    grid_thw: tuple[int, int, int] | None
    second_per_grid: float | None
    audio_features: torch.Tensor | None  # (feature_size, n_frames)
    n_video_tokens: int
    n_audio_tokens: int
    interleaved: bool
    placeholder: str  # the text that replaces the media part of the user turn

    @property
    def n_audio_frames(self) -> int:
        return 0 if self.audio_features is None else int(self.audio_features.shape[1])


def encode_media(media: Media, settings: ProcessorSettings, featurizer: AudioFeaturizer) -> EncodedMedia:
    has_v, has_a = media.frames is not None, media.audio is not None
    pixel_values = grid = spg = feats = None
    n_v = n_a = 0
    if has_v:
        pixel_values, grid = patchify_video(media.frames, settings)
        n_v = grid[0] * grid[1] * grid[2] // settings.merge_size ** 2
        fps = settings.video_fps
        if fps is None:
            n_frames = media.frames.shape[0]
            fps = n_frames / (len(media.audio) / media.sample_rate) if has_a and len(media.audio) else 2.0
        spg = settings.temporal_patch_size / fps
    if has_a:
        feats = torch.from_numpy(featurizer(media.audio, media.sample_rate))
        n_a = audio_output_length(feats.shape[1])
    interleaved = has_v and has_a and settings.audio_in_video
    if interleaved:
        placeholder = VISION_BOS + _interleaved_placeholder(grid, spg, n_a, settings) + VISION_EOS
    else:
        placeholder = ""
        if has_v:
            placeholder += VISION_BOS + VIDEO_TOKEN * n_v + VISION_EOS
        if has_a:
            placeholder += AUDIO_BOS + AUDIO_TOKEN * n_a + AUDIO_EOS
    return EncodedMedia(pixel_values, grid, spg, feats, n_v, n_a, interleaved, placeholder)


def _interleaved_placeholder(grid: tuple[int, int, int], second_per_grid: float, n_audio: int,
                             s: ProcessorSettings) -> str:
    """Qwen2_5OmniProcessor.replace_video_with_audio_token: video and audio tokens in 2 s chunks."""
    gt, gh, gw = grid
    h, w = gh // s.merge_size, gw // s.merge_size
    video_idx = np.broadcast_to(np.arange(gt).reshape(-1, 1, 1), (gt, h, w)).reshape(-1)
    video_idx = video_idx * second_per_grid * s.position_id_per_seconds
    per_chunk = int(s.position_id_per_seconds * s.seconds_per_chunk)
    v_chunks = chunked_index(video_idx, per_chunk)
    a_chunks = chunked_index(np.arange(n_audio), per_chunk)
    out = AUDIO_BOS
    for j in range(max(len(v_chunks), len(a_chunks))):
        if j < len(v_chunks):
            out += VIDEO_TOKEN * (v_chunks[j][1] - v_chunks[j][0])
        if j < len(a_chunks):
            out += AUDIO_TOKEN * (a_chunks[j][1] - a_chunks[j][0])
    return out + AUDIO_EOS


def render_prompt(tokenizer: Any, prompt: str, encoded: EncodedMedia | None, system_prompt: str) -> str:
    """The chat-templated prompt text (ending with the assistant header) with placeholders expanded."""
    content: list[dict[str, str]] = []
    if encoded is not None:
        if encoded.pixel_values is not None:
            content.append({"type": "video"})
        if encoded.audio_features is not None and not encoded.interleaved:
            content.append({"type": "audio"})
    content.append({"type": "text", "text": prompt})
    messages = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]},
                {"role": "user", "content": content}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if encoded is None:
        return text
    media_block = ""
    if encoded.pixel_values is not None:
        media_block += VISION_BOS + VIDEO_TOKEN + VISION_EOS
    if encoded.audio_features is not None and not encoded.interleaved:
        media_block += AUDIO_BOS + AUDIO_TOKEN + AUDIO_EOS
    if text.count(media_block) != 1:
        raise ValueError(f"chat template output does not contain the media block {media_block!r} exactly once: {text!r}")
    return text.replace(media_block, encoded.placeholder, 1)


def media_or_none(media: Media | None) -> Media | None:
    return None if media is None or media.is_empty else media


def batch_media_features(encoded: Sequence[EncodedMedia]) -> dict[str, Any]:
    """Stack the encoder inputs of several distinct clips (one encoder call per modality)."""
    vids = [e for e in encoded if e.pixel_values is not None]
    auds = [e for e in encoded if e.audio_features is not None]
    out: dict[str, Any] = {}
    if vids:
        out["pixel_values_videos"] = torch.cat([e.pixel_values for e in vids], dim=0)
        out["video_grid_thw"] = torch.tensor([e.grid_thw for e in vids], dtype=torch.long)
    if auds:
        n = max(e.n_audio_frames for e in auds)
        feats = torch.zeros(len(auds), auds[0].audio_features.shape[0], n)
        mask = torch.zeros(len(auds), n, dtype=torch.long)
        for i, e in enumerate(auds):
            feats[i, :, : e.n_audio_frames] = e.audio_features
            mask[i, : e.n_audio_frames] = 1
        out["input_features"], out["feature_attention_mask"] = feats, mask
    return out
