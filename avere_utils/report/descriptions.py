"""Descriptions side by side: what the reference wrote about a held-out clip, and what each trained form
wrote, with every cited cue marked as the clip's cue record classifies it.

A student sees the two errors in the text itself: a cue marked ABSENT is a hallucination (typical of the
emotion, not in the clip), a cue marked context is a spurious association (in the clip, but not emotional).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from avere_utils.emotions import cue_kind, find_cues

MARKS = {"present": "✓", "absent": "ABSENT", "context": "context", "context_not_shown": "context, not in clip",
         "other": "not in clip"}


def cue_status(cue: str, cues: Mapping[str, Any]) -> str:
    """present (typical and shown), context (shown, irrelevant), absent (typical of the emotion, not
    shown), context_not_shown (a background or sound this clip does not have) or other (another emotion's
    cue, not shown) for one cited cue of a clip."""
    for part in ("present", "context", "absent"):
        if cue in cues["visual"][part] or cue in cues["audio"][part]:
            return part
    return "context_not_shown" if cue_kind(cue)[1] == "context" else "other"


def mark_cues(text: str, cues: Mapping[str, Any]) -> str:
    """The text with each cited cue followed by its status: "a broad smile [✓]", "clenched fists [ABSENT]"."""
    out = text or ""
    for cue in sorted(set(find_cues(out)), key=len, reverse=True):
        mark = MARKS[cue_status(cue, cues)]
        out = re.sub(rf"\b{re.escape(cue)}\b(?! \[)", lambda m, mark=mark: f"{m.group(0)} [{mark}]", out, flags=re.I)
    return out


def _generations(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a partial last line of an interrupted run
        if isinstance(rec, dict) and "id" in rec and rec.get("generation") is not None:
            out[rec["id"]] = rec["generation"]
    return out


def compare_descriptions(run_dir: str | Path, variants: Sequence[str], n: int = 6) -> pd.DataFrame:
    """One row per (clip, variant) for the first `n` EMER clips that every listed variant described:
    the clip's emotion, the variant, the marked description and how many cues of each status it cites.
    Empty when the run has no EMER predictions or manifest with cue records."""
    run_dir = Path(run_dir)
    manifest = run_dir / "manifests" / "emer.jsonl"
    if not manifest.is_file():
        return pd.DataFrame()
    items = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    items = [it for it in items if (it.get("text") or {}).get("cues")]
    gens = {v: _generations(run_dir / "predictions" / f"emer-{v}.jsonl") for v in variants}
    variants = [v for v in variants if gens[v]]
    rows = []
    shown = 0
    for it in items:
        if shown >= n:
            break
        if not variants or any(it["id"] not in gens[v] for v in variants):
            continue
        shown += 1
        cues = it["text"]["cues"]
        for v in variants:
            text = gens[v][it["id"]]
            status = [cue_status(c, cues) for c in find_cues(text)]
            rows.append({"clip": it["id"], "emotion": it.get("label"), "variant": v,
                         "description": mark_cues(text, cues),
                         **{f"n_{s}": status.count(s) for s in ("present", "absent", "context", "context_not_shown",
                                                                "other")}})
    return pd.DataFrame(rows)


def markdown_lines(frame: pd.DataFrame) -> list[str]:
    """The comparison as markdown: a heading per clip, one bullet per variant."""
    lines: list[str] = []
    for clip, rows in frame.groupby("clip", sort=False):
        lines += [f"**{clip}** (emotion: {rows['emotion'].iloc[0]})", ""]
        lines += [f"- `{r.variant}`: {r.description}" for r in rows.itertuples()]
        lines.append("")
    return lines
