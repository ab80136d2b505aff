"""An auxiliary perception objective for the tiny reference's encoders (SFT only; synthetic world only).

Why: trained on the SFT tasks alone, the tiny thinker settles on the largest, easiest signal, the
training source's background colour (80 % tied to the emotion), and never learns which face parts and
voice parts a clip shows: the cue-presence probe stayed at "always Yes" (balanced accuracy 0.5) for both
modalities.  Real encoders (ViT, Whisper) arrive pretrained on perception; this gives the tiny ones a
comparable start.  A small linear head reads the encoders' output tokens and predicts, per face part
and per voice part, whether the part is rendered and which emotion shapes it.  Nothing here names or
predicts the context (background, object, ambience), so the spurious association of the training
source is still there to be absorbed by the language model, and the captions' text prior is untouched.
The head is discarded after SFT; the saved reference is an ordinary thinker checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from avere_utils.emotions import AUDIO_CUES, AUDIO_PARTS, EMOTIONS, VISUAL_CUES, VISUAL_PARTS
from avere_utils.models.processor import audio_output_length, batch_media_features

MODALITY_PARTS = {"visual": VISUAL_PARTS, "audio": AUDIO_PARTS}
MODALITY_TABLE = {"visual": VISUAL_CUES, "audio": AUDIO_CUES}
MODALITY_EMOTION = {"visual": "video_emotion", "audio": "audio_emotion"}


@dataclass(frozen=True)
class PerceptionTargets:
    """Per modality: presence (n_parts,) in {0, 1} and the emotion index of each part (-100 if absent)."""

    presence: dict[str, torch.Tensor]
    emotion: dict[str, torch.Tensor]


def perception_targets(record: Mapping[str, Any]) -> PerceptionTargets:
    """Targets from a clip's cue record: which parts render the modality's emotion, and that emotion."""
    presence, emotion = {}, {}
    for m, parts in MODALITY_PARTS.items():
        emo = record[MODALITY_EMOTION[m]]
        shown = set(record[m]["present"])
        on = [MODALITY_TABLE[m][emo][p] in shown for p in parts]
        presence[m] = torch.tensor(on, dtype=torch.float32)
        emotion[m] = torch.tensor([EMOTIONS.index(emo) if o else -100 for o in on], dtype=torch.long)
    return PerceptionTargets(presence, emotion)


class PerceptionHead(torch.nn.Module):
    """Linear read-outs of the MEAN of a clip's video tokens and of its audio tokens -> per part, a
    presence logit and 7 emotion logits.

    The mean, not the tokens per position: a first version read the video tokens per position, and the
    encoder then held each part's presence (linearly, with accuracy 1.0) only in the tokens of that part's
    place in the frame; the language model, which would have to learn where to look for which cue, never
    used it (grounded cue lists at chance for the face, 0.72 for the voice, whose tokens all carry the same
    information).  Read from the mean, every token carries it, and uniform attention finds it."""

    def __init__(self, hidden: int, video_positions: int = 0):
        super().__init__()
        n = len(EMOTIONS) + 1
        self.visual = torch.nn.Linear(hidden, len(VISUAL_PARTS) * n)
        self.audio = torch.nn.Linear(hidden, len(AUDIO_PARTS) * n)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = {}
        if video is not None:  # (tokens, hidden)
            out["visual"] = self.visual(video.mean(0)).view(len(VISUAL_PARTS), -1)
        if audio is not None:  # (tokens, hidden)
            out["audio"] = self.audio(audio.mean(0)).view(len(AUDIO_PARTS), -1)
        return out


def perception_loss(logits: Mapping[str, torch.Tensor], targets: PerceptionTargets) -> torch.Tensor:
    """Binary cross-entropy of presence plus cross-entropy of the emotion of the present parts, summed
    over the modalities that have logits."""
    total = torch.zeros(())
    for m, lg in logits.items():
        total = total + F.binary_cross_entropy_with_logits(lg[:, 0], targets.presence[m].to(lg.device))
        emo = targets.emotion[m].to(lg.device)
        if (emo >= 0).any():
            total = total + F.cross_entropy(lg[:, 1:], emo, ignore_index=-100)
    return total


def encoder_outputs(backend: Any, media: Sequence[Any]) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
    """(video tokens, audio tokens) per clip from the thinker's own encoders, with gradient."""
    thinker = backend.thinker
    encoded = [backend.encode_media(m) for m in media]
    feats = batch_media_features(encoded)
    videos: list[torch.Tensor | None] = [None] * len(encoded)
    audios: list[torch.Tensor | None] = [None] * len(encoded)
    if "pixel_values_videos" in feats:
        out = thinker.model.get_video_features(feats["pixel_values_videos"].to(backend.device, backend.dtype),
                                               feats["video_grid_thw"].to(backend.device), return_dict=True)
        it = iter(out.pooler_output)
        for k, e in enumerate(encoded):
            if e.pixel_values is not None:
                videos[k] = next(it)
    if "input_features" in feats:
        out = thinker.model.get_audio_features(feats["input_features"].to(backend.device, backend.dtype),
                                               feats["feature_attention_mask"].to(backend.device), return_dict=True)
        lengths = [audio_output_length(e.n_audio_frames) for e in encoded if e.audio_features is not None]
        it = iter(torch.split(out.last_hidden_state, lengths))
        for k, e in enumerate(encoded):
            if e.audio_features is not None:
                audios[k] = next(it)
    return list(zip(videos, audios))


def video_positions(backend: Any, media: Any) -> int:
    """Merged video tokens per temporal patch of this checkpoint (grid_h * grid_w / merge^2)."""
    enc = backend.encode_media(media)
    _, h, w = enc.grid_thw
    merge = backend.settings.merge_size
    return (h // merge) * (w // merge)
