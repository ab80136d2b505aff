"""`python -m avere_utils.launch SPEC`: one process of a notebook execution under `accelerate launch`.

The runner (avere_utils.runner.execute_launched) writes SPEC (the stage, its parameters, where its executed
copy goes) and starts `accelerate launch --num_processes N ... -m avere_utils.launch SPEC`; each of the N
processes runs the same notebook with the same parameters through papermill, in a kernel of its own that
inherits the process group's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so the
notebook's `train(P)` joins the process group as `python -m avere_utils.training` would.

Rank 0 writes the executed notebook where a single-process run writes it; rank r > 0 writes
`<work>/rank<r>.ipynb` and its figures under `<work>/rank<r>-figures/` (`<work>` is the spec's folder), so
that no two processes write the same file (the trainer writes the adapter, logs and checkpoints from rank 0
only).  A failed cell is recorded in `<work>/error-rank<r>.json` for the runner's message.  SIGTERM (accelerate
stopping the processes after another one failed, or the runner after Ctrl-C) stops the kernel before exiting.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

RANK_DIR_KEYS = ("figures_dir",)  # folders a notebook writes into that each rank > 0 gets its own copy of


def process_rank() -> int:
    value = os.environ.get("RANK", "0").strip()
    return int(value) if value.isdigit() else 0


def rank_output(spec: dict[str, Any], rank: int) -> tuple[Path, dict[str, Any]]:
    """Where this rank's executed notebook goes, and its parameters (rank 0: the spec's own)."""
    params = dict(spec["parameters"])
    if rank == 0:
        return Path(spec["output"]), params
    work = Path(spec["work"])
    for key in RANK_DIR_KEYS:
        if key in params:
            params[key] = str(work / f"rank{rank}-{key.removesuffix('_dir')}")
    return work / f"rank{rank}.ipynb", params


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _kill_kernel(kernel: Any) -> None:
    """A kernel may be blocked in a collective its peer will never join: kill its process group at once."""
    km = kernel.km
    provisioner = getattr(km, "provisioner", None) if km is not None else None
    pgid = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m avere_utils.launch SPEC.json (written by avere_utils.runner)", file=sys.stderr)
        return 2
    from avere_utils import runner

    spec = json.loads(Path(argv[0]).read_text())
    rank = process_rank()
    output, params = rank_output(spec, rank)
    e = runner.Execution(spec["stage"], spec.get("variant"), params, output)
    signal.signal(signal.SIGTERM, _interrupt)
    kernel = runner.StageKernel()
    print(f"rank {rank} of {os.environ.get('WORLD_SIZE', '1')}: {e.label} -> {output}", flush=True)
    try:
        runner.execute(e, Path(spec["notebooks_dir"]), kernel)
    except runner.StageFailed as err:
        record = {"rank": rank, "notebook": str(err.notebook), "cell": err.cell, "error": err.error,
                  "time": time.time()}  # the first failure is the cause; its peers then fail in a collective
        (Path(spec["work"]) / f"error-rank{rank}.json").write_text(json.dumps(record, indent=1))
        print(f"rank {rank}: {err}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        _kill_kernel(kernel)
        print(f"rank {rank}: stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        kernel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
