"""Where things live.  Relative paths in params are resolved against the repository root, so that a
notebook run by nbval (cwd = notebooks/) and one run by the runner (cwd = repo root) agree."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def check_output_path(path: str | os.PathLike, what: str = "output folder") -> Path:
    """`path` as a Path; a ValueError when one of its components starts with '-'.

    Such a name is a command-line option taken as a value (`--start` parsed as the output folder): the
    writer would put a model into whatever folder the caller stands in, under a name a shell reads as a flag
    (a checkpoint once landed in git as `--start/model.safetensors` that way)."""
    p = Path(path)
    bad = [part for part in p.parts if part.startswith("-")]
    if bad:
        raise ValueError(f"{what} {str(path)!r}: {bad[0]!r} looks like a command-line option, not a folder "
                         f"(was a flag parsed as a path?); name a folder inside the run folder")
    return p


def repo_path(p: str | os.PathLike) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (REPO_ROOT / p)


class RunLayout:
    """The layout of one run folder (outputs/<run>/)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.root = repo_path(run_dir)

    def _d(self, *parts: str) -> Path:
        d = self.root.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def notebooks(self) -> Path: return self._d("notebooks")
    @property
    def manifests(self) -> Path: return self._d("manifests")
    @property
    def pairs(self) -> Path: return self._d("pairs")
    @property
    def models(self) -> Path: return self._d("models")
    @property
    def train_logs(self) -> Path: return self._d("train_logs")
    @property
    def predictions(self) -> Path: return self._d("predictions")
    @property
    def metrics(self) -> Path: return self._d("metrics")
    @property
    def figures(self) -> Path: return self._d("figures")
    @property
    def cache(self) -> Path: return self._d("cache")

    def reference_model(self) -> Path:
        return self.root / "models" / "reference"

    def adapter(self, variant: str) -> Path:
        return self.root / "models" / variant

    def metrics_file(self, benchmark: str, variant: str) -> Path:
        return self.metrics / f"{benchmark}-{variant}.json"

    def predictions_file(self, benchmark: str, variant: str) -> Path:
        return self.predictions / f"{benchmark}-{variant}.jsonl"


def run_relative(values: dict[str, object], run_dir: str | os.PathLike) -> dict[str, object]:
    """Paths inside the run folder as `<run>/relative`, so that a moved or copied run is the same run."""
    root = Path(os.path.abspath(run_dir))  # not resolve(): a symlinked cache stays inside
    out = {}
    for k, v in values.items():
        if isinstance(v, str) and os.path.isabs(v):
            try:
                rel = Path(os.path.abspath(v)).relative_to(root).as_posix()
                v = "<run>" if rel == "." else f"<run>/{rel}"
            except ValueError:  # outside the run folder (e.g. a shared data_root): kept as it is
                pass
        out[k] = v
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers never see half of it (results, metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)

