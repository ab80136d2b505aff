"""Parameters of notebook 01_data_preparation (defaults = the tiny profile)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avere_utils import benchmarks
from avere_utils.config import StageParams, param

TRAIN_SOURCE = "train_source"  # what SFT and the pairs are built from: a dataset, no benchmark


def all_datasets() -> list[str]:
    """What notebook 01 can index: every registered benchmark, then the training source."""
    return [*benchmarks.names(), TRAIN_SOURCE]


ALL_DATASETS = all_datasets()  # the `datasets` default: the benchmarks registered when the kit is imported


@dataclass
class DataPrepParams(StageParams):
    # --- tiny profile: the synthetic world (generated into data_root) ---------------------------------
    generate_world: bool = param(True, "generate the synthetic world into data_root (paper profile: false, index "
                                       "the real data under data_root)")
    regenerate_world: bool = param(False, "regenerate even when data_root already holds this exact world")
    world_workers: int = param(2, "processes writing the synthetic world's clips")
    n_train_source: int = param(640, "synthetic training-source clips (what SFT and the preference pairs use)")
    n_dfew_test_per_class: int = param(50, "synthetic DFEW test clips per emotion class")
    n_dfew_train_per_class: int = param(2, "synthetic DFEW train clips per emotion class")
    n_ravdess_actors: int = param(2, "synthetic RAVDESS actors (each with the dataset's full set of recordings)")
    n_mer2023: int = param(100, "synthetic MER2023 test clips")
    n_mer2023_worried: int = param(6, "of those, rows labelled `worried`, which the protocol drops")
    n_emer: int = param(100, "synthetic EMER clips (open-ended descriptions with reference reasons)")
    n_emorealm_per_task: int = param(240, "synthetic EmoReAlM questions per task")
    spurious_rate: float = param(0.8, "training source only: P(the context follows the emotion's spurious "
                                      "background / ambience)")
    text_prior_rate: float = param(0.3, "training-source captions: P(cite an absent typical cue), the text prior")
    context_reason_rate: float = param(0.6, "training-source captions: P(cite a context cue as a reason)")
    qa_text_prior_rate: float = param(0.0, "training-source stress questions about context / absent cues: "
                                           "P(answered Yes)")
    cue_typicality: float = param(0.0, "training source: how unevenly typical cues are rendered and answered by the "
                                       "text-prior annotator, in [0, 1] (0 = a flat prior; docs/data.md)")
    disagreement_rate: float = param(0.15, "training source and DFEW: P(the audio voices another emotion)")
    clip_seconds: float = param(2.0, "length of each synthetic clip in seconds")
    video_size: int = param(112, "frame size of the written synthetic videos in pixels (even: yuv420p)")
    # --- which datasets, where (real layouts; the synthetic world writes the same) --------------------
    datasets: list[str] = param(list(ALL_DATASETS), f"datasets to index, any of {', '.join(ALL_DATASETS)}")
    manifest_dir: str = param("${run_dir}/manifests", "where the per-dataset manifests (<dataset>.jsonl) are written")
    figures_dir: str = param("${run_dir}/figures", "where the notebook's figures are saved")
    cache_dir: str = param("${run_dir}/cache", "the decoded-clip cache shared with the other stages")
    dfew_root: str = param("${data_root}/DFEW", "DFEW's root folder")
    dfew_fold: int = param(1, "DFEW fold (1-5) whose annotation is read")
    dfew_split: Literal["test", "train"] = param("test", "DFEW split of that fold: test | train")
    dfew_video_subdir: str = param("Clip/clip_224x224", "DFEW clips, relative to dfew_root")
    dfew_wav_subdir: str = param("Clip/clip_16k_wav", "DFEW 16 kHz wavs, relative to dfew_root")
    dfew_annotation_subdir: str = param("dfew_annotation", "DFEW fold annotation csvs, relative to dfew_root")
    ravdess_root: str = param("${data_root}/RAVDESS", "RAVDESS root folder (Actor_XX/ folders)")
    ravdess_modality: str = param("01", "RAVDESS modality code kept: 01 audio-video, 02 video-only, 03 audio-only")
    ravdess_vocal_channel: str = param("01", "RAVDESS vocal channel kept with selection speech: 01 speech, 02 song")
    ravdess_calm_policy: Literal["drop", "merge"] = param("drop", "RAVDESS `calm`: drop (the protocol) | merge (into neutral)")
    ravdess_selection: Literal["speech", "released"] = param(
        "speech", "speech: the paper's text (AV speech, `01-01-*`) | released: the released loader (every `01-*`, "
                  "song too)")
    truncated_clips: Literal["keep", "skip"] = param(
        "keep", "a clip decoding fewer frames than it declares: keep (counted) | skip")
    mer2023_label_file: str = param("${data_root}/MER2023/test3_label.csv", "MER2023 test label csv")
    mer2023_clip_dir: str = param("${data_root}/MER2023/test3", "MER2023 test clips")
    emer_reason_file: str = param("${data_root}/MER2025/track3_ovmerd.csv", "EMER reference reasons csv")
    emer_clip_dir: str = param("${data_root}/MER2025/video", "EMER clips")
    emorealm_file: str = param("${data_root}/EmoReAlM/emorealm_v1.json", "EmoReAlM questions json")
    emorealm_heldout_file: str = param("${data_root}/EmoReAlM/emorealm_heldout_wordings.json",
                                       "stress questions in wordings no training text uses, EmoReAlM's JSON schema "
                                       "(the synthetic world writes one; for real data, write your own rewordings)")
    train_source_format: Literal["jsonl", "mafw"] = param(
        "jsonl", "training-source index: jsonl (a manifest) | mafw (a MAFW label file converted with datasets.mafw)")
    train_source_file: str = param("${data_root}/train_source/manifest.jsonl", "the training-source index file")
    mafw_clip_dir: str = param("${data_root}/MAFW/clips", "MAFW clips (train_source_format mafw)")
    mafw_wav_dir: str = param("${data_root}/MAFW/audio_16k", "MAFW 16 kHz wavs (train_source_format mafw)")
    require_audio: bool = param(True, "a listed clip without its audio file is a counted skip (else kept "
                                      "without)")
    strict: bool = param(False, "EmoReAlM: raise on the first bad item instead of counting skips")
    max_unexpected_skips: int = param(0, "the data check fails above this many (missing files, bad labels...)")
    expected_counts: dict[str, int] = param({}, "items to expect per dataset (checked by the data check); empty: "
                                                "derived from the world knobs (tiny)")
    # --- decoding (what the downstream stages will see) ------------------------------------------------
    n_frames: int = param(8, "frames sampled per clip (evenly over its length)")
    frame_size: int = param(56, "decoded frames are resized to frame_size x frame_size")
    sample_rate: int = param(16000, "audio is resampled to this rate (Hz)")
    max_audio_s: float = param(30.0, "audio longer than this is cut (with a logged warning)")
    stereo_to_mono: Literal["mean", "left"] = param("mean", "how several audio channels become one: mean | left")
    on_missing_audio: Literal["error", "skip", "silence"] = param(
        "error", "a clip without audio: error | skip (no audio) | silence (zeros)")
    n_preview_clips: int = param(4, "clips shown in the notebook's frame grid")
