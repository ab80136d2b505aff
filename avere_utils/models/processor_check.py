"""Compare the kit's processor with transformers' official `Qwen2_5OmniProcessor` on one clip.

Needs torchvision (the official video processor imports it), so it runs on a GPU/full machine only;
tests/models/test_models.py skips it elsewhere with the reason shown.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avere_utils.records import Example, Media


def official_processor(backend: Any):
    from transformers import Qwen2_5OmniProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    s = backend.settings
    size = {"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels}
    common = dict(patch_size=s.patch_size, temporal_patch_size=s.temporal_patch_size, merge_size=s.merge_size)
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **common),
        video_processor=Qwen2VLVideoProcessor(size=size, **common),
        feature_extractor=WhisperFeatureExtractor(feature_size=s.feature_size, sampling_rate=s.sampling_rate),
        tokenizer=backend.tokenizer, chat_template=backend.tokenizer.chat_template)


def compare_with_official(backend: Any, media: Media, prompt: str) -> dict[str, Any]:
    """Run both processors on (media, prompt) with audio interleaved in the video; return the differences."""
    s = backend.settings
    proc = official_processor(backend)
    enc = backend.encode_media(media)
    fps = s.temporal_patch_size / enc.second_per_grid
    content = [{"type": "video"}] + ([] if enc.interleaved else [{"type": "audio"}]) + [{"type": "text", "text": prompt}]
    messages = [{"role": "system", "content": [{"type": "text", "text": s.system_prompt}]},
                {"role": "user", "content": content}]
    text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    video = torch.from_numpy(media.frames).permute(0, 3, 1, 2)  # (T, C, H, W)
    kwargs: dict[str, Any] = dict(text=[text], videos=[video], audio=[media.audio], return_tensors="pt",
                                  videos_kwargs={"fps": fps, "do_sample_frames": False, "cap_pixels_per_frame": False,
                                                 "size": {"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels}},
                                  position_id_per_seconds=s.position_id_per_seconds,
                                  seconds_per_chunk=s.seconds_per_chunk)
    if enc.interleaved:
        kwargs.update(load_audio_from_video=True, audio_from_video_indices=[0])
    out = proc(**kwargs)
    ours = backend._build([Example(prompt, media)], with_response=False)
    n_off = int(out["feature_attention_mask"].sum())
    feats = out["input_features"][0, :, :n_off].float()
    return {
        "input_ids_equal": out["input_ids"][0].tolist() == ours.input_ids[0].tolist(),
        "n_input_ids": (len(out["input_ids"][0]), len(ours.input_ids[0])),
        "video_grid_equal": out["video_grid_thw"][0].tolist() == list(enc.grid_thw),
        "pixel_max_abs_diff": float((out["pixel_values_videos"].float() - enc.pixel_values).abs().max())
        if out["pixel_values_videos"].shape == enc.pixel_values.shape else float("inf"),
        "audio_frames_equal": n_off == enc.n_audio_frames,
        "audio_max_abs_diff": float((feats - enc.audio_features).abs().max()) if n_off == enc.n_audio_frames else float("inf"),
        "second_per_grid_equal": bool(np.isclose(float(out["video_second_per_grid"][0]), enc.second_per_grid)),
    }
