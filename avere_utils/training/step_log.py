"""Per-step training logs: one JSON object per optimizer step in `<run_dir>/train_logs/<variant>.jsonl` (the
DPO) or `reference.jsonl` (the SFT, each phase after a line of its config), flushed every line, so a killed
run keeps what it did.  `report_to: tensorboard` adds the same scalars through accelerate's tracker API (the
trainer owns the Accelerator; `tracked_scalars` picks what goes)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None  # JSON has no NaN; a term that does not apply is null
    return v


def read_log(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class StepLogger:
    def __init__(self, path: str | Path, *, keep_until_step: int | None = None):
        """Open the log.  Lines of steps <= keep_until_step are kept (a resumed run, or a later SFT phase
        that continues the log), later ones dropped, so that no step appears twice; None starts it empty."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [] if keep_until_step is None else [r for r in read_log(self.path)
                                                  if r.get("step", 0) <= keep_until_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._f = open(self.path, "a")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


# bookkeeping, not curves: the step is the x axis, epoch and samples follow from it
UNTRACKED = ("step", "epoch", "samples")


def tracked_scalars(record: dict[str, Any]) -> dict[str, float]:
    """What a tracker gets of a step record: losses, rewards, margins, accuracies, lr, grad norm, step time.
    A term that does not apply (NaN, e.g. loss_av without PMP) is left out rather than drawn as a gap."""
    return {k: float(v) for k, v in record.items()
            if k not in UNTRACKED and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))}
