"""A run's identity: the sha256 of its reference checkpoint and of every adapter (docs/models.md, "Same bits on every CPU").

`write(run)` hashes the weight files of `<run>/models/reference/` and of each adapter folder
`<run>/models/<variant>/` and writes `<run>/checksums.json`:

    {"reference": sha256, "adapters": {variant: sha256}, "numerics": avere_utils.numerics.describe()}

A folder's sha256 is taken over the lines "relative/path<TAB>sha256-of-file" of its weight files
(.safetensors, .bin, .pt, .pth; training checkpoints under `checkpoints/` left out), in sorted order, so it
does not depend on the file system's listing order, on modification times or on where the run lies.
`compare(run, other_run)` lists the differences (an empty list: the same weights).

    python -m avere_utils.checksums write RUN
    python -m avere_utils.checksums compare RUN OTHER_RUN         # exit 1 on any difference
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from avere_utils import numerics
from avere_utils.paths import atomic_write_text
from avere_utils.weights import WEIGHT_SUFFIXES, file_sha256

FILE_NAME = "checksums.json"
# folders under models/ that are not adapters: the reference, its SFT start, and a swap's leftovers
NOT_ADAPTERS = ("reference", "reference_init")


def folder_sha256(folder: str | Path) -> str | None:
    """sha256 over (relative path, sha256) of the folder's weight files, sorted; None if it has none."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                   and "checkpoints" not in p.relative_to(root).parts)
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\t{file_sha256(f)}\n".encode())
    return h.hexdigest()


def adapter_dirs(run: str | Path) -> dict[str, Path]:
    models = Path(run) / "models"
    if not models.is_dir():
        return {}
    return {d.name: d for d in sorted(models.iterdir())
            if d.is_dir() and d.name not in NOT_ADAPTERS and "." not in d.name}


def checksums(run: str | Path) -> dict[str, Any]:
    """{"reference": sha or None, "adapters": {variant: sha}, "numerics": describe()} of a run folder."""
    run = Path(run)
    ref = run / "models" / "reference"
    adapters = {name: folder_sha256(d) for name, d in adapter_dirs(run).items()}
    return {"reference": folder_sha256(ref) if ref.is_dir() else None,
            "adapters": {k: v for k, v in adapters.items() if v is not None},
            "numerics": numerics.describe()}


def write(run: str | Path) -> Path:
    """Write `<run>/checksums.json` (atomically) and return its path."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"checksums: no run folder {run}")
    data = checksums(run)
    if data["reference"] is None and not data["adapters"]:
        raise FileNotFoundError(f"checksums: {run}/models holds no reference checkpoint and no adapter")
    out = run / FILE_NAME
    atomic_write_text(out, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return out


def load(path: str | Path) -> dict[str, Any]:
    """A run's checksums: hashed from its weights when the folder has them (models/), else its
    checksums.json (the committed golden run, outputs/golden, keeps no weights); a `path` to a .json file is read as is."""
    p = Path(path)
    if p.suffix == ".json":
        return json.loads(p.read_text())
    if (p / "models").is_dir():
        return checksums(p)
    if (p / FILE_NAME).is_file():
        return json.loads((p / FILE_NAME).read_text())
    raise FileNotFoundError(f"checksums: {p} has neither models/ nor {FILE_NAME}")


def compare_data(new: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The differences between two checksums records (weights only; the numerics are context)."""
    diffs = []
    if new.get("reference") != other.get("reference"):
        diffs.append(f"reference: {_short(new.get('reference'))} != {_short(other.get('reference'))}")
    a, b = new.get("adapters") or {}, other.get("adapters") or {}
    for variant in sorted(set(a) | set(b)):
        if variant not in a:
            diffs.append(f"adapter {variant}: missing (the other run has {_short(b[variant])})")
        elif variant not in b:
            diffs.append(f"adapter {variant}: not in the other run ({_short(a[variant])})")
        elif a[variant] != b[variant]:
            diffs.append(f"adapter {variant}: {_short(a[variant])} != {_short(b[variant])}")
    if diffs:
        na, nb = new.get("numerics") or {}, other.get("numerics") or {}
        for key in ("capability", "pins", "cpu_model", "cpu_family"):
            if na.get(key) != nb.get(key):
                diffs.append(f"note: numerics {key}: {na.get(key)!r} here, {nb.get(key)!r} in the other run")
    return diffs


def compare(run: str | Path, other_run: str | Path) -> list[str]:
    """Differences between a run's weights and another run's, e.g. the golden run's (either a folder or a checksums.json)."""
    return compare_data(load(run), load(other_run))


def _short(sha: str | None) -> str:
    return "none" if sha is None else sha[:12]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avere_utils.checksums", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write RUN/checksums.json")
    w.add_argument("run")
    c = sub.add_parser("compare", help="compare RUN's weights with OTHER_RUN's, e.g. outputs/golden (exit 1 on a difference)")
    c.add_argument("run")
    c.add_argument("other_run")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "write":
            print(write(args.run))
            return 0
        diffs = compare(args.run, args.other_run)
    except (FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    for d in diffs:
        print(d)
    if not diffs:
        print("same weights: reference and every adapter")
    return 1 if any(not d.startswith("note:") for d in diffs) else 0


if __name__ == "__main__":
    sys.exit(main())
