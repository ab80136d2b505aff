"""What every loader shares: the LoadResult (items + counted skips), manifests, path safety, side files."""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from avere_utils.paths import atomic_write_text
from avere_utils.records import Item

log = logging.getLogger(__name__)

SIDE_CUES = "synthetic_cues.json"  # synthetic world only: clip id -> cue record


class DatasetError(ValueError):
    """A dataset that cannot be indexed at all (missing index file, wrong columns); names the file."""


@dataclass
class LoadResult:
    """Items of one dataset plus every row that was not turned into an item, counted by reason."""

    dataset: str
    items: list[Item] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    source: str = ""  # the index file / folder read
    expected: int | None = None  # documented size when the full set is present (RAVDESS: 1,248)
    expected_skips: tuple[str, ...] = ()  # reasons that are the protocol, not a problem (calm, worried...)
    notes: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few offending ids/files
    flagged: Counter[str] = field(default_factory=Counter)  # kept items with a known defect (truncated)
    flag_examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, what: str) -> None:
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(what)
        log.debug("%s: skipped %s (%s)", self.dataset, what, reason)

    def flag(self, kind: str, what: str) -> None:
        self.flagged[kind] += 1
        self.flag_examples.setdefault(kind, []).append(what)

    def unexpected_skips(self) -> Counter[str]:
        return Counter({r: n for r, n in self.skipped.items()
                        if not any(r == e or r.startswith(e + ":") for e in self.expected_skips)})

    def class_counts(self) -> Counter[str]:
        return Counter(it.label for it in self.items if it.label is not None)

    def report(self) -> str:
        lines = [f"{self.dataset}: {len(self.items)} items from {self.source}"]
        if self.expected is not None:
            flag = "ok" if self.expected == len(self.items) else "MISMATCH"
            lines.append(f"  expected {self.expected} ({flag})")
        counts = self.class_counts()
        if counts:
            lines.append("  classes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for reason, n in sorted(self.skipped.items()):
            tag = "" if reason in self.expected_skips or reason.split(":")[0] in self.expected_skips else "  <-- check"
            lines.append(f"  skipped {n:5d} {reason} (e.g. {', '.join(self.examples.get(reason, []))}){tag}")
        for kind, n in sorted(self.flagged.items()):
            lines.append(f"  kept {n:5d} {kind} (e.g. {', '.join(self.flag_examples[kind][:3])})  <-- check")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LoadResult({self.dataset!r}, items={len(self.items)}, skipped={dict(self.skipped)})"


def write_manifest(path: str | os.PathLike, items: Iterable[Item]) -> Path:
    """One Item.to_dict() per line (atomic)."""
    path = Path(path)
    text = "".join(json.dumps(it.to_dict(), ensure_ascii=False) + "\n" for it in items)
    atomic_write_text(path, text)
    return path


def read_manifest(path: str | os.PathLike) -> list[Item]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path} (run notebook 01_data_preparation first)")
    items = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                items.append(Item.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as e:
                raise DatasetError(f"{path}:{n}: not an Item record ({e})") from e
    return items


def resolve_inside(root: Path, rel: str) -> Path | None:
    """root/rel, or None when rel is absolute or climbs out of root (e.g. `../../etc/passwd`)."""
    if not rel or os.path.isabs(rel):
        return None
    root_r = root.resolve()
    p = (root_r / rel).resolve()
    try:
        p.relative_to(root_r)
    except ValueError:
        return None
    return p


def load_side_cues(folder: Path) -> dict[str, Any]:
    """The synthetic world's cue records next to a dataset's files ({} for real data)."""
    f = folder / SIDE_CUES
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{f}: invalid JSON ({e})") from e


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}")


def read_csv_rows(path: Path, required: tuple[str, ...], what: str = "csv file",
                  on_bad_row: Callable[[int, str], None] | None = None) -> list[dict[str, str]]:
    """Rows of a small csv as dicts of stripped strings; checks the header has the required columns.

    A row with more fields than the header (an unquoted comma inside a field) cannot be read without
    guessing where the comma belongs: it goes to `on_bad_row(line, problem)` (a counted skip), or raises
    DatasetError naming the file and line when no callback is given.  Empty extra fields (a trailing
    comma) are harmless and ignored.
    """
    import csv
    require_file(path, what)
    rows: list[dict[str, str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; header is {header}")
            for row in reader:
                extra = [v for v in (row.pop(None, None) or []) if (v or "").strip()]
                if extra:
                    problem = f"{len(extra)} field(s) more than the header ({extra[0][:40]!r}...)"
                    if on_bad_row is None:
                        raise DatasetError(f"{path}:{reader.line_num}: {problem}")
                    on_bad_row(reader.line_num, problem)
                    continue
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from None
    except csv.Error as e:
        raise DatasetError(f"{path}: unreadable csv ({e})") from None
    return rows


def bad_row_counter(res: LoadResult, path: Path) -> Callable[[int, str], None]:
    """The `on_bad_row` callback that counts a malformed row in `res` under `malformed_row`."""
    def count(line: int, problem: str) -> None:
        log.warning("%s:%d: row skipped: %s", path, line, problem)
        res.skip("malformed_row", f"{path.name}:{line}")
    return count


def resolve_duplicates(rows: Iterable[tuple[str, Any, str]], res: LoadResult) -> dict[str, Any]:
    """(id, label, what) rows -> {id: label} in first-seen order.

    A repeated id with the same label is a `duplicate_id` skip (the first row is kept).  An id listed
    with two different labels is dropped altogether, since which row is right cannot be told: each of
    its rows is a `conflicting_label` skip.
    """
    groups: dict[str, list[tuple[Any, str]]] = {}
    for iid, label, what in rows:
        groups.setdefault(iid, []).append((label, what))
    labels: dict[str, Any] = {}
    for iid, group in groups.items():
        if len({repr(label) for label, _ in group}) > 1:
            for label, what in group:
                res.skip("conflicting_label", f"{what} (label {label})")
            continue
        for _, what in group[1:]:
            res.skip("duplicate_id", what)
        labels[iid] = group[0][0]
    return labels
