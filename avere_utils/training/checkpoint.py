"""Training checkpoints: everything needed to continue a killed run as if it had never stopped.

`<checkpoint_dir>/step-000040/` holds the LoRA adapter (a normal adapter folder, so a checkpoint can also
be evaluated), the optimizer and scheduler state, each process's RNG states, and `trainer_state.json`
(step, the parameters that define the run, and a hash of the data order).  A checkpoint folder is written
under a temporary name and renamed when complete, so a kill during the save leaves the previous one.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"


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


def step_dir(checkpoint_dir: Path, step: int) -> Path:
    return checkpoint_dir / f"step-{step:06d}"


def latest(checkpoint_dir: Path) -> Path | None:
    """The most recent complete checkpoint folder, or None."""
    if not checkpoint_dir.is_dir():
        return None
    done = sorted(p for p in checkpoint_dir.glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((path / STATE_FILE).read_text())


def save(checkpoint_dir: Path, step: int, *, backend, optimizer, scheduler, state: dict[str, Any],
         is_main: bool, rank: int, keep: int, barrier) -> Path:
    """Write checkpoint `step` (all processes call it: each saves its RNG state, the main process the rest)."""
    final = step_dir(checkpoint_dir, step)
    tmp = checkpoint_dir / f".tmp-step-{step:06d}"
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
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = sorted(p for p in checkpoint_dir.glob("step-*") if p != final)
        for p in old[:max(0, len(old) - (keep - 1))] if keep > 0 else []:
            shutil.rmtree(p, ignore_errors=True)
        log.info("checkpoint %s", final)
    barrier()
    return final


def load(path: Path, *, backend, optimizer, scheduler, rank: int) -> dict[str, Any]:
    backend.load_adapter(str(path / "adapter"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng_rank{rank}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{rng_file} missing: the checkpoint was written by fewer processes than "
                                "this run has; resume with the same number of processes")
    set_rng_state(torch.load(rng_file, weights_only=False))
    return read_state(path)
