"""What the three evaluation stages share: items, the model, media settings, and the metrics file."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avere_utils.evaluation.params import EvalParams
from avere_utils.evaluation.predict import Decoding, MediaFn, media_loader, model_stamp
from avere_utils.paths import RunLayout, atomic_write_text, run_relative
from avere_utils.records import Item

if TYPE_CHECKING:  # the backend module imports torch: only for annotations here
    from avere_utils.models.backend import Backend

log = logging.getLogger(__name__)

PAPER_MODE_NOTE = ("reproduces the released scoring code's documented flaws (see docs/evaluation.md); "
                   "not a corrected number")


def load_items(params: EvalParams, benchmark: str) -> list[Item]:
    """The benchmark's manifest (`<manifest_dir>/<benchmark>.jsonl`); `max_items` > 0 keeps that many items
    evenly spread over it."""
    from avere_utils.datasets import read_manifest

    path = Path(params.manifest_dir) / f"{benchmark}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest of {benchmark!r} not found; run 01_data_preparation first")
    items = read_manifest(path)
    if params.max_items and params.max_items < len(items):
        # evenly spread over the manifest, so that a quick look still sees every task and class
        keep = sorted({round(i * (len(items) - 1) / max(params.max_items - 1, 1)) for i in range(params.max_items)})
        items = [items[i] for i in keep]
    if not items:
        raise ValueError(f"{path}: no items")
    return items


def adapter_for(params: EvalParams) -> str | None:
    return None if params.variant == "reference" else params.adapter_dir


def open_backend(params: EvalParams) -> Any:
    """The model under evaluation: the reference checkpoint, plus the variant's adapter unless the
    variant is `reference`."""
    from avere_utils.models import load_backend

    ref = Path(params.reference_dir)
    if not ref.is_dir():
        raise FileNotFoundError(f"reference_dir {ref} does not exist; run 03_reference_model first")
    adapter = adapter_for(params)
    if adapter is not None and not Path(adapter).is_dir():
        raise FileNotFoundError(f"adapter_dir {adapter} (variant {params.variant!r}) does not exist; "
                                f"train it with 04_avem_dpo_training or evaluate variant 'reference'")
    return load_backend(str(ref), adapter_dir=adapter, device=process_device(params.device))


def _state() -> Any:
    from avere_utils.evaluation.predict import process_state

    return process_state()


def process_device(device: str) -> str:
    """Under `accelerate launch` with several processes, "auto" means this process's own GPU."""
    if device == "auto":
        state = _state()
        if state.num_processes > 1:
            return str(state.device)
    return device


def is_main_process() -> bool:
    """Scoring, judging and writing metrics happen once, on the main process, after the merge."""
    return _state().is_main_process


def media_settings(params: EvalParams, backend: Backend) -> Any:
    """The checkpoint's decoding settings with the params' non-zero overrides applied."""
    from avere_utils.media import MediaSettings

    base = backend.media_settings or MediaSettings()
    over = {k: getattr(params, k) for k in ("n_frames", "frame_size", "sample_rate") if getattr(params, k)}
    return dataclasses.replace(base, **over)


def make_media_fn(params: EvalParams, backend: Backend) -> tuple[MediaFn, Any]:
    settings = media_settings(params, backend)
    return media_loader(settings, params.cache_dir), settings


def decoding(params: EvalParams) -> Decoding:
    return Decoding(max_new_tokens=params.max_new_tokens, temperature=params.temperature, seed=params.seed,
                    use_cache=params.use_cache)


def model_info(params: EvalParams) -> dict[str, Any]:
    return {"path": params.reference_dir, "adapter": adapter_for(params), "variant": params.variant}


def run_settings(params: EvalParams, settings: Any, **extra: Any) -> dict[str, Any]:
    """Everything that decides the answers, hashed into each prediction's fingerprint."""
    media = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
    # run-relative model paths and content stamps: a copied or moved run folder keeps its predictions
    return {"model": run_relative(model_info(params), params.run_dir),
            "model_files": model_stamp(params.reference_dir),
            "adapter_files": model_stamp(adapter_for(params)), "media": media, **extra}


def protocol(params: EvalParams, settings: Any, **extra: Any) -> dict[str, Any]:
    """The protocol block of a metrics file (what a reader needs to compare two numbers)."""
    media = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
    return {"n_frames": media.get("n_frames"), "frame_size": media.get("frame_size"),
            "sample_rate": media.get("sample_rate"), "decoding": decoding(params).to_dict(),
            "batch_size": params.batch_size, "max_items": params.max_items, **extra}


def _clean(obj: Any) -> Any:
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_metrics(params: EvalParams, benchmark: str, metrics: dict[str, Any]) -> Path:
    path = RunLayout(params.run_dir).metrics_file(benchmark, params.variant)
    from avere_utils.datasets.prepare import clip_quality  # truncated clips kept/skipped by stage 01

    metrics = {"benchmark": benchmark, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               **clip_quality(params.manifest_dir, benchmark), **metrics}
    atomic_write_text(path, json.dumps(_clean(metrics), indent=1) + "\n")
    log.info("wrote %s", path)
    return path


def predictions_file(params: EvalParams, benchmark: str) -> Path:
    return RunLayout(params.run_dir).predictions_file(benchmark, params.variant)
