"""Training checkpoints: everything needed to continue a killed run as if it had never stopped.

`<checkpoint_dir>/checkpoint-40/` (Hugging Face's naming: the optimizer step, no zero padding) holds the
LoRA adapter (a normal adapter folder, so a checkpoint can also be evaluated), the optimizer and scheduler
state, each process's RNG states, and `trainer_state.json` (step, the parameters that define the run, and
a hash of the data order).  A checkpoint folder is written under a temporary name and renamed when
complete, so a kill during the save leaves the previous one.  Checkpoints are ordered by the integer step
in their name (checkpoint-100 after checkpoint-99), never by string order.

A `step-NNNNNN` folder (the kit's naming before the Hugging Face one) is read, not refused: it is ordered
by its step like the others, the trainer translates its recorded run signature to today's key names
(params.upgrade_keys), so a run interrupted before the rename resumes from it; later saves are written as
`checkpoint-N` and save_total_limit removes the old folders like any other.

Each checkpoint records the sha256 of its files at save time (`weights.SIDECAR`).  Before a resume,
`load` checks every file (present, the recorded size, an intact safetensors header, the recorded hash,
the .pt files deserialise) before anything is applied, so a damaged checkpoint raises `CorruptCheckpoint`
naming the file and leaves the model and optimizer as they were: the trainer then tries the previous one.

The run's step log is written beside the checkpoints (`LOG_NAME`) while it trains and becomes the stage's
`log_file` only when the run completes (`promote_log`), so the stage's log and its adapter always agree.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avere_utils import weights
from avere_utils.paths import atomic_write_text

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
LOG_NAME = "train_log.jsonl"  # the working step log, beside the checkpoints


class CorruptCheckpoint(weights.WeightsError):
    """A checkpoint file that is missing, truncated or damaged (the message names it)."""


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


PREFIX = "checkpoint-"
# checkpoint-N, and the kit's earlier step-NNNNNN (read for resuming, never written)
_NAME = re.compile(r"^(checkpoint|step)-([0-9]+)$")


def step_dir(checkpoint_dir: Path, step: int) -> Path:
    return Path(checkpoint_dir) / f"{PREFIX}{step}"


def checkpoint_step(path: Path) -> int | None:
    """The optimizer step of a checkpoint folder's name (checkpoint-40 or step-000040 -> 40), else None."""
    m = _NAME.match(Path(path).name)
    return int(m.group(2)) if m else None


def _ordered(checkpoint_dir: Path) -> list[Path]:
    """Every checkpoint-N / step-NNNNNN folder, oldest first by the integer step (at one step, checkpoint-N
    after step-NNNNNN, so that it is the one taken)."""
    folders = [p for p in Path(checkpoint_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(folders, key=lambda p: (checkpoint_step(p), p.name.startswith(PREFIX)))


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The complete checkpoint folders (renamed from their temporary name), oldest first by step."""
    if not Path(checkpoint_dir).is_dir():
        return []
    return [p for p in _ordered(checkpoint_dir) if (p / STATE_FILE).is_file()]


def latest(checkpoint_dir: Path) -> Path | None:
    """The most recent complete checkpoint folder, or None."""
    done = complete_checkpoints(checkpoint_dir)
    return done[-1] if done else None


def read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CorruptCheckpoint(path / STATE_FILE, str(e)) from None


def save(checkpoint_dir: Path, step: int, *, backend, optimizer, scheduler, state: dict[str, Any],
         is_main: bool, rank: int, keep: int, barrier) -> Path:
    """Write checkpoint `step` (all processes call it: each saves its RNG state, the main process the rest)."""
    final = step_dir(checkpoint_dir, step)
    tmp = checkpoint_dir / f".tmp-{final.name}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
    if is_main:
        backend.save_adapter(str(tmp / "adapter"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    barrier()
    if is_main:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        weights.record_digests(tmp)  # mtimes survive the rename, so the recorded hashes stay valid
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = [p for p in _ordered(checkpoint_dir) if p != final]
        for p in old[:max(0, len(old) - (keep - 1))] if keep > 0 else []:
            shutil.rmtree(p, ignore_errors=True)
        log.info("checkpoint %s", final)
    barrier()
    return final


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CorruptCheckpoint(path, "missing")
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:  # truncated zip, bad pickle ...: the file is what matters to the user
        raise CorruptCheckpoint(path, f"{type(e).__name__}: {e}") from None


def load(path: Path, *, backend, optimizer, scheduler, rank: int) -> dict[str, Any]:
    """Check every file of checkpoint `path`, then apply it (nothing is applied when a check fails)."""
    rng_file = path / f"rng_rank{rank}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{rng_file} missing: the checkpoint was written by fewer processes than "
                                "this run has; resume with the same number of processes")
    state = read_state(path)
    try:
        weights.verify_recorded(path)
        weights.check_folder(path / "adapter")
    except weights.WeightsError as e:
        raise CorruptCheckpoint(e.path, e.detail) from None
    opt, sched, rng = (_torch_load(path / n) for n in ("optimizer.pt", "scheduler.pt", rng_file.name))
    try:
        backend.load_adapter(str(path / "adapter"))
    except (OSError, RuntimeError, ValueError) as e:
        if isinstance(e, ValueError) and "does not fit" in str(e):
            raise
        raise CorruptCheckpoint(path / "adapter", f"{type(e).__name__}: {e}") from None
    optimizer.load_state_dict(opt)
    scheduler.load_state_dict(sched)
    set_rng_state(rng)
    return state


def promote_log(working: Path, log_file: Path) -> None:
    """The completed run's working log becomes the stage's log (atomically: readers see old or new)."""
    if working.is_file():
        atomic_write_text(log_file, working.read_text())


def save_adapter_atomically(backend, out: Path) -> None:
    """Save the adapter into a temporary folder beside `out`, then move each file into `out` with an atomic
    rename: a kill leaves every file either the old or the new one, never a partial file."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    backend.save_adapter(str(tmp))
    weights.record_digests(tmp)
    for f in sorted(tmp.rglob("*"), key=lambda p: p.name == weights.SIDECAR):  # the hashes last
        if f.is_file():
            dst = out / f.relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dst)
    shutil.rmtree(tmp, ignore_errors=True)
