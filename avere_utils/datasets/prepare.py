"""Stage 01: (tiny) generate the synthetic world, then index every configured dataset into manifests."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from avere_utils import benchmarks
from avere_utils.datasets.clipcheck import apply_probe, probe_items
from avere_utils.datasets.common import LoadResult, write_manifest
from avere_utils.datasets.mafw import load_mafw_labels
from avere_utils.datasets.params import TRAIN_SOURCE, DataPrepParams, all_datasets
from avere_utils.datasets.train_source import load_train_source
from avere_utils.emotions import EMOTIONS, MER2023_LABELS
from avere_utils.media import MediaSettings
from avere_utils.paths import atomic_write_text

log = logging.getLogger(__name__)


def world_config(P: DataPrepParams):
    from avere_utils.synth import WorldConfig  # the synthetic world is only needed for the tiny profile
    return WorldConfig(n_train_source=P.n_train_source, n_dfew_test_per_class=P.n_dfew_test_per_class,
                       n_dfew_train_per_class=P.n_dfew_train_per_class, n_ravdess_actors=P.n_ravdess_actors,
                       n_mer2023=P.n_mer2023, n_mer2023_worried=P.n_mer2023_worried, n_emer=P.n_emer,
                       n_emorealm_per_task=P.n_emorealm_per_task, spurious_rate=P.spurious_rate,
                       text_prior_rate=P.text_prior_rate, context_reason_rate=P.context_reason_rate,
                       qa_text_prior_rate=P.qa_text_prior_rate, cue_typicality=P.cue_typicality,
                       disagreement_rate=P.disagreement_rate, clip_seconds=P.clip_seconds,
                       video_size=P.video_size, workers=P.world_workers)


def media_settings(P: DataPrepParams) -> MediaSettings:
    return MediaSettings(n_frames=P.n_frames, frame_size=P.frame_size, sample_rate=P.sample_rate,
                         max_audio_s=P.max_audio_s, stereo_to_mono=P.stereo_to_mono,
                         on_missing_audio=P.on_missing_audio)


def expected_counts(P: DataPrepParams) -> dict[str, int]:
    """Item counts to expect: P.expected_counts, else (synthetic world) what the knobs produce."""
    if P.expected_counts or not P.generate_world:
        return dict(P.expected_counts)
    n_mer_classes = len(MER2023_LABELS)
    return {"dfew": P.n_dfew_test_per_class * len(EMOTIONS) if P.dfew_split == "test"
            else P.n_dfew_train_per_class * len(EMOTIONS),
            # per actor: 52 speech AV clips without calm (60 with), plus the world's 2 song AV clips when
            # the released selection keeps song
            "ravdess": P.n_ravdess_actors * ((52 if P.ravdess_calm_policy == "drop" else 60)
                                             + (2 if P.ravdess_selection == "released" else 0)),
            "mer2023": min(P.n_mer2023, -(-P.n_mer2023 // n_mer_classes) * n_mer_classes),
            "emer": P.n_emer, "emorealm": 5 * P.n_emorealm_per_task, "emorealm_heldout": 2 * P.n_emorealm_per_task,
            "train_source": P.n_train_source}


def load_training_source(P: DataPrepParams) -> LoadResult:
    if P.train_source_format == "mafw":
        return load_mafw_labels(P.train_source_file, P.mafw_clip_dir, P.mafw_wav_dir)
    if P.train_source_format != "jsonl":
        raise ValueError(f"train_source_format must be 'jsonl' or 'mafw', got {P.train_source_format!r}")
    return load_train_source(P.train_source_file, require_audio=P.require_audio)


def load_dataset(name: str, P: DataPrepParams) -> LoadResult:
    """Index one dataset with the stage's parameters (no decoding): a benchmark by its record's loader."""
    if name == TRAIN_SOURCE:
        return load_training_source(P)
    if name not in benchmarks.BENCHMARKS:
        raise ValueError(f"unknown dataset {name!r}; datasets are {all_datasets()}")
    return benchmarks.get(name).load(P)


def ensure_world(P: DataPrepParams):
    """Generate the synthetic world into data_root unless it already holds this exact world."""
    from avere_utils.synth import existing_world, generate_world
    cfg = world_config(P)
    if not P.regenerate_world:
        found = existing_world(P.data_root, cfg, P.seed)
        if found is not None:
            log.info("reusing the synthetic world in %s (same knobs and seed)", P.data_root)
            return found
    return generate_world(P.data_root, cfg, P.seed)


def prepare_data(P: DataPrepParams) -> dict[str, LoadResult]:
    """(tiny) generate the world; index every dataset in P.datasets; write manifests/<name>.jsonl and
    manifests/index.json (counts, skips, sources)."""
    t0 = time.perf_counter()
    world = ensure_world(P) if P.generate_world else None
    results: dict[str, LoadResult] = {}
    probes: dict[str, Any] = {}
    for name in P.datasets:
        res = load_dataset(name, P)
        # every clip is checked here, once, so that a broken one is a counted skip now rather than a
        # failure (or 8 frames from its first half second) during evaluation
        summary = probe_items(res.items, on_missing_audio=P.on_missing_audio, desc=f"check {name} clips")
        apply_probe(res, summary, P.truncated_clips)
        probes[name] = {"files": summary.n_files, "seconds": round(summary.seconds, 3),
                        "problems": len(summary.problems)}
        write_manifest(Path(P.manifest_dir) / f"{name}.jsonl", res.items)
        log.info("%s", res.report())
        results[name] = res
    index: dict[str, Any] = {
        "profile": P.profile, "data_root": P.data_root, "seconds": round(time.perf_counter() - t0, 3),
        "world": None if world is None else {"n_clips": world.n_clips, "seconds": world.seconds,
                                             "clips_per_s": world.clips_per_s, "reused": world.reused},
        "datasets": {n: {"items": len(r.items), "skipped": dict(r.skipped), "flagged": dict(r.flagged),
                         "source": r.source, "classes": dict(r.class_counts()), "clip_check": probes[n]}
                     for n, r in results.items()},
        "truncated_clips": P.truncated_clips,
    }
    atomic_write_text(Path(P.manifest_dir) / "index.json", json.dumps(index, indent=1) + "\n")
    return results


def clip_quality(manifest_dir: str | Path, name: str) -> dict[str, Any]:
    """What stage 01's clip check found for one dataset, for the evaluation metrics files: truncated clips
    kept (`n_truncated`, used with frames sampled over what decodes) or skipped, under which policy.
    Empty when the manifests predate the clip check."""
    index = Path(manifest_dir) / "index.json"
    if not index.is_file():
        return {}
    try:
        entry = json.loads(index.read_text())["datasets"][name]
        policy = json.loads(index.read_text()).get("truncated_clips")
    except (ValueError, KeyError, TypeError):
        return {}
    if "flagged" not in entry:
        return {}
    return {"n_truncated": int(entry["flagged"].get("truncated", 0)),
            "n_truncated_skipped": int(entry.get("skipped", {}).get("truncated", 0)),
            "truncated_clips": policy}
