"""Parameters of notebook 01_data_preparation (defaults = the tiny profile)."""
from __future__ import annotations

from dataclasses import dataclass, field

from avere_utils.config import StageParams

ALL_DATASETS = ["dfew", "ravdess", "mer2023", "emer", "emorealm", "train_source"]


@dataclass
class DataPrepParams(StageParams):
    # --- tiny profile: the synthetic world (generated into data_root) ---------------------------------
    generate_world: bool = True  # paper profile: false (index the real data under data_root)
    regenerate_world: bool = False  # regenerate even when data_root already holds this exact world
    world_workers: int = 2
    n_train_source: int = 640
    n_dfew_test_per_class: int = 50
    n_dfew_train_per_class: int = 2
    n_ravdess_actors: int = 2
    n_mer2023: int = 100
    n_mer2023_worried: int = 6
    n_emer: int = 100
    n_emorealm_per_task: int = 240
    spurious_rate: float = 0.8
    text_prior_rate: float = 0.3
    context_reason_rate: float = 0.6
    qa_text_prior_rate: float = 0.0  # training stress questions about context / absent cues answered Yes
    disagreement_rate: float = 0.15
    clip_seconds: float = 2.0
    video_size: int = 112
    # --- which datasets, where (real layouts; the synthetic world writes the same) --------------------
    datasets: list[str] = field(default_factory=lambda: list(ALL_DATASETS))
    manifest_dir: str = "${run_dir}/manifests"
    figures_dir: str = "${run_dir}/figures"
    cache_dir: str = "${run_dir}/cache"
    dfew_root: str = "${data_root}/DFEW"
    dfew_fold: int = 1
    dfew_split: str = "test"
    dfew_video_subdir: str = "Clip/clip_224x224"
    dfew_wav_subdir: str = "Clip/clip_16k_wav"
    dfew_annotation_subdir: str = "dfew_annotation"
    ravdess_root: str = "${data_root}/RAVDESS"
    ravdess_modality: str = "01"
    ravdess_vocal_channel: str = "01"
    ravdess_calm_policy: str = "drop"
    # speech: the paper's text (AV speech, `01-01-*`); released: the released loader (every `01-*`, song too)
    ravdess_selection: str = "speech"
    truncated_clips: str = "keep"  # a clip decoding fewer frames than it declares: keep (counted) | skip
    mer2023_label_file: str = "${data_root}/MER2023/test3_label.csv"
    mer2023_clip_dir: str = "${data_root}/MER2023/test3"
    emer_reason_file: str = "${data_root}/MER2025/track3_ovmerd.csv"
    emer_clip_dir: str = "${data_root}/MER2025/video"
    emorealm_file: str = "${data_root}/EmoReAlM/emorealm_v1.json"
    train_source_format: str = "jsonl"  # or "mafw" (label file converted with datasets.mafw)
    train_source_file: str = "${data_root}/train_source/manifest.jsonl"
    mafw_clip_dir: str = "${data_root}/MAFW/clips"
    mafw_wav_dir: str = "${data_root}/MAFW/audio_16k"
    require_audio: bool = True
    strict: bool = False  # EmoReAlM: raise on the first bad item instead of counting skips
    max_unexpected_skips: int = 0  # the data check fails above this many (missing files, bad labels...)
    # Sizes to expect per dataset (checked by the data check); empty: derived from the world knobs (tiny).
    expected_counts: dict[str, int] = field(default_factory=dict)
    # --- decoding (what the downstream stages will see) ------------------------------------------------
    n_frames: int = 8
    frame_size: int = 56
    sample_rate: int = 16000
    max_audio_s: float = 30.0
    stereo_to_mono: str = "mean"
    on_missing_audio: str = "error"
    n_preview_clips: int = 4  # clips shown in the notebook's frame grid
