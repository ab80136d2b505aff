"""`avere-kit score`: score predictions made anywhere (the released inference scripts' `<id>.txt` files, or
the kit's predictions JSONL) against a benchmark's native annotation file, with no model and no media.

The metrics come from the same scorers notebooks 05-07 use (`registry.get_scorer(benchmark)`, whose
`score_text` calls classification.score_mode / emorealm.score_mode), so a number here and one in a
notebook's metrics file mean the same thing.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from avere_utils import benchmarks
from avere_utils.datasets.common import DatasetError, read_csv_rows
from avere_utils.emotions import DFEW_LABELS, RAVDESS_LABELS
from avere_utils.evaluation import emorealm, registry
from avere_utils.evaluation.common import PAPER_MODE_NOTE, _clean
from avere_utils.evaluation.released import (
    JUDGE_KEYS,
    batch_reply_content,
    record_text,
    released_judge_means,
    released_parse_reply,
)
from avere_utils.paths import atomic_write_text
from avere_utils.protocol import EMOREALM_TASKS
from avere_utils.records import Item

log = logging.getLogger(__name__)

BENCHMARKS = registry.known_benchmarks()
TEXT_MODES = ("paper", "strict")
# MER2023 test3's released label map: exact `discrete` values; anything else (worried) is left out.
RELEASED_MER2023_LABELS = {"happy": "happiness", "sad": "sadness", "neutral": "neutral", "angry": "anger",
                           "surprise": "surprise"}
RAVDESS_SELECTIONS = ("speech", "released")


class ScoreError(ValueError):
    """Bad input to `avere-kit score` (the message names the file)."""


# --- predictions ------------------------------------------------------------------------------------------
def numeric_key(name: str) -> str:
    """Clips named by number (DFEW), zero-padded or not ("00001" = "1"): compare them as numbers."""
    return str(int(name)) if name.isdigit() else name


def read_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """{id: record} from a folder of `<id>.txt` (the file's text is the answer) or a predictions JSONL.

    Read-only: a partial last JSONL line (an interrupted run) is ignored with a warning, never repaired.
    """
    path = Path(path)
    if path.is_dir():
        out: dict[str, dict[str, Any]] = {}
        for f in sorted(path.glob("*.txt")):
            try:
                out[f.name[: -len(".txt")]] = {"generation": f.read_text(encoding="utf-8")}
            except UnicodeDecodeError as e:
                raise ScoreError(f"{f}: prediction file is not UTF-8 text ({e})") from e
        if not out:
            raise ScoreError(f"{path}: no <id>.txt prediction files in this folder")
        return out
    if not path.is_file():
        raise ScoreError(f"{path}: predictions not found (a folder of <id>.txt or a predictions .jsonl)")
    out = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                log.warning("%s:%d: partial last line ignored (interrupted run?)", path, lineno)
                continue
            raise ScoreError(f"{path}:{lineno}: not a JSON record ({e})") from e
        if not isinstance(rec, dict) or "id" not in rec:
            raise ScoreError(f"{path}:{lineno}: a predictions record needs an 'id'")
        out[str(rec["id"])] = rec
    return out


def match_predictions(items: Sequence[Item], preds: Mapping[str, dict[str, Any]], benchmark: str
                      ) -> tuple[dict[str, dict[str, Any]], int]:
    """Records keyed by item id, and how many predictions name no annotated item."""
    key = numeric_key if benchmarks.get(benchmark).numeric_ids else str
    by_key: dict[str, str] = {}
    for pid in preds:
        k = key(pid)
        if k in by_key:
            raise ScoreError(f"predictions {by_key[k]!r} and {pid!r} name the same item")
        by_key[k] = pid
    records = {it.id: preds[by_key[key(it.id)]] for it in items if key(it.id) in by_key}
    return records, len(preds) - len(records)


# --- annotations (native files) ---------------------------------------------------------------------------
def _dedupe(items: list[Item], skipped: Counter[str]) -> list[Item]:
    """The released readers keep one label per name (the last row wins): same here, counted."""
    by_id: dict[str, Item] = {}
    for it in items:
        if it.id in by_id:
            skipped["duplicate_id"] += 1
        by_id[it.id] = it
    return list(by_id.values())


def load_dfew_csv(path: Path) -> tuple[list[Item], Counter[str]]:
    skipped: Counter[str] = Counter()
    items = []
    for row in read_csv_rows(path, ("video_name", "label"), "DFEW annotation csv"):
        try:
            label = DFEW_LABELS[int(row["label"])]
        except (KeyError, ValueError):
            skipped[f"label_not_1_7:{row['label']}"] += 1
            continue
        items.append(Item(id=row["video_name"], dataset="dfew", split="test", label=label))
    return _dedupe(items, skipped), skipped


def _ravdess_item(stem: str, selection: str, skipped: Counter[str]) -> Item | None:
    from avere_utils.datasets.ravdess import parse_name

    fields = parse_name(stem)
    if fields is None:
        skipped["unparseable_name"] += 1
        return None
    if fields["modality"] != "01":
        skipped[f"modality:{fields['modality']}"] += 1
        return None
    if selection == "speech" and fields["vocal_channel"] != "01":
        skipped[f"vocal_channel:{fields['vocal_channel']}"] += 1
        return None
    label = RAVDESS_LABELS.get(fields["emotion"])
    if label is None or label == "calm":
        skipped[f"emotion:{fields['emotion']}"] += 1
        return None
    return Item(id=stem, dataset="ravdess", split="test", label=label)


def load_ravdess_names(path: Path, ravdess_selection: str = "released") -> tuple[list[Item], Counter[str]]:
    """A RAVDESS folder (the kit's loader, with its `selection`) or a text file listing one clip path or
    name per line.  `released` keeps every audio-video `01-*` file, song included; `speech` only `01-01-*`."""
    if ravdess_selection not in RAVDESS_SELECTIONS:
        raise ScoreError(f"ravdess selection must be one of {list(RAVDESS_SELECTIONS)}, got {ravdess_selection!r}")
    if path.is_dir():
        from avere_utils.datasets.ravdess import load_ravdess

        res = load_ravdess(path, selection=ravdess_selection)
        items = [Item(id=it.id, dataset="ravdess", split="test", label=it.label) for it in res.items]
        return items, Counter(res.skipped)
    skipped: Counter[str] = Counter()
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            it = _ravdess_item(Path(line.strip()).stem, ravdess_selection, skipped)
            if it is not None:
                items.append(it)
    return _dedupe(items, skipped), skipped


def load_mer2023_csv(path: Path) -> tuple[list[Item], Counter[str]]:
    skipped: Counter[str] = Counter()
    items = []
    for row in read_csv_rows(path, ("name", "discrete"), "MER2023 test3 label csv"):
        label = RELEASED_MER2023_LABELS.get(row["discrete"])
        if label is None:
            skipped[f"label_not_in_protocol:{row['discrete']}"] += 1
            continue
        items.append(Item(id=row["name"], dataset="mer2023", split="test", label=label))
    return _dedupe(items, skipped), skipped


def load_emorealm_json(path: Path) -> tuple[list[Item], Counter[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScoreError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(data, list):
        raise ScoreError(f"{path}: expected a JSON array of question items")
    items, seen = [], set()
    for n, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise ScoreError(f"{path}: item #{n} is not an object")
        iid = str(raw.get("id", f"#{n}"))
        if iid in seen:
            raise ScoreError(f"{path}: item id {iid!r} appears twice")
        seen.add(iid)
        text = {k: raw[k] for k in ("task", "question", "choices", "answer", "kind") if k in raw}
        if isinstance(text.get("answer"), str):
            text["answer"] = text["answer"].strip()
        it = Item(id=iid, dataset="emorealm", split="test", text=text)
        try:
            emorealm.check_item(it)
        except (ValueError, TypeError, KeyError) as e:
            raise ScoreError(f"{path}: {e}") from e
        if text["task"] not in EMOREALM_TASKS:
            raise ScoreError(f"{path}: item {iid}: unknown task {text['task']!r}; known: {list(EMOREALM_TASKS)}")
        items.append(it)
    if not items:
        raise ScoreError(f"{path}: no question items")
    return items, Counter()


def load_emer_csv(path: Path) -> tuple[list[Item], Counter[str]]:
    rows = read_csv_rows(path, ("name", "reason"), "MER2025 OV-MERD reason csv")
    return [Item(id=r["name"], dataset="emer", split="test", text={"reason": r["reason"]}) for r in rows], Counter()


def annotation_options(benchmark: str, ravdess_selection: str) -> dict[str, Any]:
    """This command's options that the benchmark's annotation reader takes (and the output records)."""
    given = {"ravdess_selection": ravdess_selection}
    return {k: given[k] for k in benchmarks.get(benchmark).annotation_options}


def load_annotations(benchmark: str, path: str | Path, ravdess_selection: str = "released"
                     ) -> tuple[list[Item], Counter[str]]:
    """The items of a benchmark's native annotation file, read by the reader its record names, with the
    options of this command that reader takes."""
    path = Path(path)
    if not path.exists():
        raise ScoreError(f"{path}: annotation file not found")
    if benchmark not in BENCHMARKS or benchmarks.get(benchmark).annotations is None:
        raise ScoreError(f"unknown benchmark {benchmark!r}; one of {list(BENCHMARKS)}")
    reader = benchmarks.imported(benchmarks.get(benchmark).annotations)
    try:
        items, skipped = reader(path, **annotation_options(benchmark, ravdess_selection))
    except DatasetError as e:
        raise ScoreError(str(e)) from e
    if not items:
        raise ScoreError(f"{path}: no {benchmark} items (skipped: {dict(skipped)})")
    return items, skipped


# --- EMER: judged replies ------------------------------------------------------------------------------
def read_judged(path: str | Path) -> tuple[dict[str, dict[str, Any] | None], str]:
    """({id: reply criteria or None (unparseable)}, format) from the Batch-API output file of the released
    protocol (`custom_id` + response; format "batch"), or from the kit's judged rows (`id` + `scores`,
    written by notebook 06; format "kit rows").  Kit rows are the paper protocol's only when notebook 06
    ran with `judge_protocol: paper`; the rows do not say which, so the caller reports the format."""
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{path}: judged replies not found")
    to_released = {name: key for key, name in JUDGE_KEYS.items()}
    out: dict[str, dict[str, Any] | None] = {}
    formats: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ScoreError(f"{path}:{lineno}: not a JSON row ({e})") from e
        if not isinstance(row, dict):
            raise ScoreError(f"{path}:{lineno}: a judged row must be a JSON object")
        if "custom_id" in row:
            formats.add("batch")
            out[str(row["custom_id"])] = released_parse_reply(batch_reply_content(row))
        elif "id" in row:
            formats.add("kit rows")
            scores = row.get("scores")
            if isinstance(scores, dict) and set(to_released) <= set(scores):
                scores = {to_released[k]: v for k, v in scores.items() if k in to_released}
            out[str(row["id"])] = scores if isinstance(scores, dict) and scores else None
        else:
            raise ScoreError(f"{path}:{lineno}: a judged row needs 'custom_id' (Batch API) or 'id' (kit rows)")
    if len(formats) > 1:
        raise ScoreError(f"{path}: mixes Batch-API rows and kit judged rows")
    return out, formats.pop() if formats else "batch"


def score_emer(items: Sequence[Item], records: Mapping[str, dict[str, Any]], modes: Sequence[str],
               judged_path: str | Path | None) -> dict[str, Any]:
    """Paper mode: the released means over the parsed judge replies of items that have a prediction."""
    if list(modes) != ["paper"]:
        raise ScoreError("emer: only --modes paper is scored here; the kit's strict judge runs in notebook 06 "
                         "(judge: openai | hf | cue)")
    if judged_path is None:
        raise ScoreError("emer: paper mode needs a judge's replies: pass --judged with the Batch-API output "
                         "of the released protocol (or judged rows with its reply keys); no judge is run here")
    replies, fmt = read_judged(judged_path)
    if fmt == "kit rows":
        log.warning("%s: kit judged rows are paper mode only if notebook 06 ran with judge_protocol: paper",
                    judged_path)
    answered = [it for it in items if record_text(records.get(it.id)) is not None]
    parsed = {it.id: replies[it.id] for it in answered if replies.get(it.id) is not None}
    n_unjudged = sum(it.id not in replies for it in answered)
    means = released_judge_means(parsed)
    mode = {**means, "n_items": len(items), "n_scored": means["n_judged"],
            "n_dropped_missing": len(items) - len(answered),
            "n_dropped_error": len(answered) - n_unjudged - len(parsed) + means["n_reply_malformed"],
            "n_not_judged": n_unjudged, "note": PAPER_MODE_NOTE}
    return {"modes": {"paper": mode}, "judged_file": str(judged_path), "judged_format": fmt}


# --- the command -----------------------------------------------------------------------------------------
def score(benchmark: str, annotations: str | Path, predictions: str | Path, *,
          modes: Sequence[str] = TEXT_MODES, judged: str | Path | None = None,
          ravdess_selection: str = "released") -> dict[str, Any]:
    """The metrics dict of `avere-kit score` (same schema as the notebooks' metrics files)."""
    if benchmark not in BENCHMARKS:
        raise ScoreError(f"unknown benchmark {benchmark!r}; one of {list(BENCHMARKS)}")
    modes = list(dict.fromkeys(modes))
    if "scoring" in modes:
        raise ScoreError("mode 'scoring' needs each candidate answer's log-likelihood, which only a model run "
                         "produces (notebooks 05/07 with modes: [scoring]); score reads text answers: "
                         f"use --modes {' '.join(TEXT_MODES)}")
    bad = [m for m in modes if m not in TEXT_MODES]
    if bad or not modes:
        raise ScoreError(f"unknown mode(s) {bad or modes}; score knows {list(TEXT_MODES)}")
    items, skipped = load_annotations(benchmark, annotations, ravdess_selection)
    records, unmatched = match_predictions(items, read_predictions(predictions), benchmark)
    head: dict[str, Any] = {"benchmark": benchmark, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "source": "avere-kit score", "annotations": str(annotations),
                            "predictions": str(predictions), "annotation_skips": dict(skipped),
                            "n_predictions_unmatched": unmatched}
    head.update(annotation_options(benchmark, ravdess_selection))
    if unmatched:
        log.warning("%d predictions name no annotated %s item", unmatched, benchmark)
    if benchmarks.get(benchmark).item_kind == "description":  # scored from a judge's replies, not the records
        body = score_emer(items, records, modes, judged)
    else:
        body = registry.get_scorer(benchmark).score_text(items, records, modes)
    first = modes[0]
    top = {k: v for k, v in body["modes"][first].items() if k not in ("note", "tasks", "per_class", "confusion")}
    return {**head, "scoring_mode": first, **top, **body}


def add_parser(sub: Any) -> None:
    """Register `score` on the `avere-kit` subcommand parser."""
    p = sub.add_parser("score", help="score text predictions (folder of <id>.txt or predictions JSONL) against "
                                     "a benchmark's annotation file; no model, no media")
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--annotations", required=True, metavar="PATH",
                   help="DFEW set_K.csv | RAVDESS folder or list of files | MER2023 label csv | "
                        "MER2025 OV-MERD csv | EmoReAlM json")
    p.add_argument("--predictions", required=True, metavar="PATH", help="folder of <id>.txt, or a predictions JSONL")
    p.add_argument("--out", required=True, metavar="METRICS.json")
    p.add_argument("--modes", nargs="+", default=None, metavar="MODE",
                   help="paper and/or strict (default: both; emer: paper)")
    p.add_argument("--judged", metavar="PATH", help="emer: the judge's replies (Batch-API output jsonl of the "
                                                    "released protocol, or notebook 06's judged rows)")
    p.add_argument("--ravdess-selection", default="released", choices=RAVDESS_SELECTIONS,
                   help="released: every 01-* file incl. song (the released loader); speech: 01-01-* (paper text)")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    judged = benchmarks.get(args.benchmark).item_kind == "description"
    modes = args.modes or (["paper"] if judged else list(TEXT_MODES))
    try:
        metrics = score(args.benchmark, args.annotations, args.predictions, modes=modes, judged=args.judged,
                        ravdess_selection=args.ravdess_selection)
    except ScoreError as e:
        print(f"avere-kit score: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(_clean(metrics), indent=1) + "\n")
    for mode, m in metrics["modes"].items():
        keys = benchmarks.get(args.benchmark).headline
        shown = ", ".join(f"{k} {m[k]:.2f}" for k in keys if isinstance(m.get(k), (int, float)))
        print(f"{args.benchmark} {mode}: {shown} (n_scored {m['n_scored']} of {m['n_items']}, dropped missing "
              f"{m['n_dropped_missing']}, dropped error {m['n_dropped_error']})")
    print(f"wrote {out}")
    return 0
