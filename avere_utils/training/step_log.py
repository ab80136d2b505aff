"""Per-step training logs: one JSON object per optimizer step in `<run_dir>/train_logs/<variant>.jsonl`
(flushed every line, so a killed run keeps what it did), and optionally TensorBoard scalars."""
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
    def __init__(self, path: str | Path, *, keep_until_step: int = 0, report_to: str = "none",
                 tensorboard_dir: str | Path | None = None):
        """Open the log.  Lines of steps <= keep_until_step are kept (a resumed run), later ones dropped, so
        that no step appears twice."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_log(self.path) if r.get("step", 0) <= keep_until_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._f = open(self.path, "a")
        self._tb = None
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("report_to: tensorboard needs the `tensorboard` package, which is not "
                                  "installed; pip install tensorboard or set report_to: none") from e
            self._tb = SummaryWriter(str(tensorboard_dir or self.path.with_suffix("")))

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        self._f.flush()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step" and not (isinstance(v, float) and math.isnan(v)):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()
