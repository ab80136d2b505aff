"""Parameters of notebook 03_reference_model (defaults = the tiny profile)."""
from __future__ import annotations

from dataclasses import dataclass, field

from avere_utils.config import StageParams


@dataclass
class ReferenceParams(StageParams):
    # where things are
    manifests_dir: str = "${run_dir}/manifests"
    pairs_dir: str = "${run_dir}/pairs"
    reference_dir: str = "${run_dir}/models/reference"
    train_log_file: str = "${run_dir}/train_logs/reference.jsonl"
    cache_dir: str = "${run_dir}/cache"
    # model: tiny builds one (base_model_path empty); paper loads a local Qwen2.5-Omni folder
    base_model_path: str = ""
    model_size: str = "tiny"
    dtype: str = "auto"
    trust_remote_code: bool = False
    # media the model sees (written to the reference folder's avere_processor.json)
    n_frames: int = 8
    frame_size: int = 56
    long_audio: str = "extend"
    audio_in_video: bool = True
    # SFT warm start (tiny profile; the paper's base is already trained: sft_epochs 0)
    sft_epochs: int = 2
    sft_batch_size: int = 16
    sft_lr: float = 3e-3
    sft_weight_decay: float = 0.01
    sft_warmup_ratio: float = 0.05
    sft_max_steps: int = 0  # 0: every step of sft_epochs; > 0 a step bound (smoke runs). Never a time cap:
    # the reference, and every number after it, must not depend on the machine's speed
    sft_tasks: list[str] = field(default_factory=lambda: ["label", "description", "qa", "presence", "grounded"])
    sft_qa_per_clip: int = 1  # qa items per clip per epoch, rotating, staggered over clips (0: all of them every epoch)
    sft_label_repeats: int = 3  # label examples per clip per epoch (see sft.sft_records)
    sft_perception_weight: float = 1.0  # auxiliary perception loss on the encoders (models/perception.py); 0 = off
    sft_presence_per_clip: int = 2  # cue-presence questions per clip per epoch, rotating (0: all of them)
    sft_max_items: int = 0  # 0: every training-source item
    # presence phase, after the main SFT (models/reference.presence_phase): every cue-presence question of
    # each clip with replay of the other tasks, bounded by steps, at its own learning rate; 0 steps = none
    sft_presence_phase_steps: int = 1000
    sft_presence_phase_tasks: list[str] = field(default_factory=lambda: ["presence", "label", "qa", "grounded"])
    sft_presence_phase_lr: float = 1e-3
    # what the notebook shows: generations on n_show held-out clips (paper: the smoke test on 2 clips),
    # closed-set recognition and cue citations on n_check held-out clips (DFEW test manifest)
    n_show: int = 6
    n_check: int = 140
