"""What an exported lmms-eval task folder calls: documents -> prompts, media, choices; answers -> the kit's scores.

An exported folder (`lmms_export.export`) holds one JSONL of documents per benchmark, `avere_tasks.json`
(the protocol settings of the profile it was exported from) and a `utils` module that binds the functions below
to that folder (`TaskFolder(__file__)`).  lmms-eval calls them with the signatures of its task contract:

    doc_to_visual(doc) -> [video_path, audio_path?]      doc_to_text(doc, lmms_eval_specific_kwargs=None) -> str
    doc_to_target(doc) -> letter | label                 doc_to_choice(doc) -> [candidate answer, ...]
    doc_to_target_index(doc) -> int (likelihood tasks)   process_results_*(doc, results) -> {metric: payload}
    agg_<mode>_<key>(payloads) -> float                  (one aggregation per reported figure)

`process_results_*` returns, for every metric of the task, the same payload: the item (id, label, task,
choices, answer, kind) and the model's answer (`generation`) or candidate scores (`scores`).  Each
aggregation rebuilds the items and records and hands them to the kit's scorers (`emorealm.score_mode`,
`classification.score_records`, the functions behind `avere-kit score` and notebooks 05 / 07), so the number
lmms-eval reports is the kit's number for the same answers, by construction.

Likelihood (`multiple_choice`) results: lmms-eval's own multiple-choice reading takes the candidate with
the LOWEST returned value (its models return a loss), so the kit's model class returns the negative summed
log-likelihood and `process_results_likelihood` scores `-value` (the most likely candidate wins, ties to
the first, as in the kit's `scoring` mode).

Nothing here imports lmms_eval or torch.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from avere_utils.protocol import EMOREALM_TASKS, YES_NO_TASKS
from avere_utils.records import Item

SETTINGS_FILE = "avere_tasks.json"
FORMAT = 1
DATA_ROOT_ENV = "AVERE_DATA_ROOT"  # overrides the data root written into the folder (a moved dataset)
SPLIT = "test"

# The figures each task reports, per mode.  EmoReAlM: the average, each task's accuracy, the Yes/No tasks'
# F1 (harmonic mean of the accuracies on Yes- and No-items), the stress items' failure rates where the
# items carry their kind (synthetic world), and coverage.  Classification: UAR, WAR, macro / weighted F1,
# coverage.  All in percent, as the kit's metrics files.
EMOREALM_KEYS: tuple[str, ...] = ("average_accuracy", *EMOREALM_TASKS, *(f"{t}_f1" for t in YES_NO_TASKS),
                                  "coverage")
KIND_KEYS: tuple[str, ...] = ("hallucination_rate", "spurious_rate")
CLASSIFICATION_KEYS: tuple[str, ...] = ("uar", "war", "macro_f1", "weighted_f1", "coverage")
GENERATE_MODES: tuple[str, ...] = ("paper", "strict")
LIKELIHOOD_MODES: tuple[str, ...] = ("scoring",)
LOWER_IS_BETTER: frozenset[str] = frozenset(KIND_KEYS)


class TaskFolderError(ValueError):
    """An exported folder that does not fit this kit (the message names the file and what is wrong)."""


def family(benchmark: str) -> str:
    """"emorealm" for EmoReAlM and its held-out wordings, "classification" for DFEW / RAVDESS / MER2023."""
    from avere_utils import benchmarks

    if benchmark in benchmarks.names("label"):
        return "classification"
    if benchmark.startswith("emorealm"):
        return "emorealm"
    raise TaskFolderError(f"benchmark {benchmark!r} has no lmms-eval export (EmoReAlM, DFEW, RAVDESS, MER2023)")


def metric_keys(fam: str, has_kinds: bool = False) -> tuple[str, ...]:
    if fam == "emorealm":
        return EMOREALM_KEYS + (KIND_KEYS if has_kinds else ())
    return CLASSIFICATION_KEYS


def metric_name(mode: str, key: str) -> str:
    return f"{mode}_{key}"


def metric_names(fam: str, modes: Sequence[str], has_kinds: bool = False) -> list[str]:
    return [metric_name(m, k) for m in modes for k in metric_keys(fam, has_kinds)]


# --- documents ------------------------------------------------------------------------------------------
DOC_TEXT_KEYS = ("task", "question", "choices", "answer", "kind")


def item_to_doc(item: Item, media_root: str | os.PathLike) -> dict[str, Any]:
    """One exported document: the item's fields, flat, its media paths relative to `media_root`."""
    def rel(p: str | None) -> str | None:
        if p is None:
            return None
        rp = os.path.relpath(os.path.abspath(p), os.path.abspath(media_root))
        if rp.startswith(".."):
            raise TaskFolderError(f"{item.dataset} item {item.id}: media {p} is not under the data root {media_root}")
        return Path(rp).as_posix()

    text = item.text or {}
    return {"id": item.id, "dataset": item.dataset, "video": rel(item.video), "audio": rel(item.audio),
            "label": item.label, **{k: text.get(k) for k in DOC_TEXT_KEYS}}


def doc_to_item(doc: Mapping[str, Any], media_root: str | None = None) -> Item:
    """The kit's Item for one document (media paths resolved against `media_root` when given)."""
    def path(key: str) -> str | None:
        p = doc.get(key)
        if p is None or media_root is None:
            return p
        return os.path.normpath(os.path.join(media_root, p))

    text = {k: doc[k] for k in DOC_TEXT_KEYS if doc.get(k) is not None}
    if isinstance(text.get("choices"), tuple):
        text["choices"] = list(text["choices"])
    return Item(id=str(doc["id"]), dataset=str(doc["dataset"]), split=SPLIT, video=path("video"),
                audio=path("audio"), label=doc.get("label"), text=text)


# --- what process_results returns and the aggregations read -------------------------------------------
def _item_payload(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(doc["id"]), "dataset": str(doc["dataset"]), "label": doc.get("label"),
            "text": {k: doc[k] for k in ("task", "choices", "answer", "kind") if doc.get(k) is not None}}


def likelihood_value(result: Any) -> float:
    """The value of one candidate's likelihood result: a (value, is_greedy) pair, a bare number, or the pair's
    text form "(value, False)", which lmms-eval 0.7 hands to process_results (its evaluator passes every
    response through `unwrap_generation_output`, which turns anything but text into `str(...)`; Python's
    float text round-trips exactly)."""
    if isinstance(result, str):
        import ast

        try:
            result = ast.literal_eval(result.strip())
        except (ValueError, SyntaxError):
            raise TaskFolderError(f"likelihood result {result!r} is not a (value, is_greedy) pair") from None
    value = result[0] if isinstance(result, (tuple, list)) else result
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskFolderError(f"likelihood result {result!r} is not a (value, is_greedy) pair")
    return float(value)


def _scores_from_results(results: Sequence[Any]) -> list[float]:
    """lmms-eval hands a multiple-choice document one (value, is_greedy) pair per candidate; the value is
    a loss (lower = more likely): the kit's scores are its negation."""
    return [-likelihood_value(r) for r in results]


def _records(payloads: Sequence[Mapping[str, Any]]) -> tuple[list[Item], dict[str, dict[str, Any]]]:
    items, records = [], {}
    for p in payloads:
        it = Item(id=p["id"], dataset=p["dataset"], split=SPLIT, label=p.get("label"),
                  text={k: (list(v) if isinstance(v, tuple) else v) for k, v in (p.get("text") or {}).items()})
        if it.id in records:
            continue  # the same document twice (lmms-eval's padding of the last rank): counted once
        items.append(it)
        records[it.id] = {k: p[k] for k in ("generation", "scores") if k in p}
    return items, records


_CACHE: OrderedDict[str, dict[str, Any]] = OrderedDict()


def score_payloads(payloads: Sequence[Mapping[str, Any]], mode: str) -> dict[str, Any]:
    """The kit's metrics of one mode over the payloads of one task: `emorealm.score_mode` over the tasks the
    items cover (as `avere-kit score`), or `classification.score_records` with the benchmark's classes.
    Cached by content: every figure of a task is read from one scoring."""
    key = hashlib.sha1(json.dumps([mode, list(payloads)], sort_keys=True, default=str).encode()).hexdigest()
    if key in _CACHE:
        return _CACHE[key]
    items, records = _records(payloads)
    if not items:
        raise TaskFolderError("no documents to score")
    benchmarks = sorted({it.dataset for it in items})
    if len(benchmarks) != 1:
        raise TaskFolderError(f"one task's documents come from several benchmarks {benchmarks}")
    if family(benchmarks[0]) == "emorealm":
        from avere_utils.evaluation import emorealm

        tasks = [t for t in EMOREALM_TASKS if any(it.text.get("task") == t for it in items)]
        out = emorealm.score_mode(mode, items, records, tasks)
    else:
        from avere_utils.evaluation import classification

        _, scored = classification.score_records(items, records, [mode], classification.classes_for(benchmarks[0]))
        out = scored[mode]
    _CACHE[key] = out
    while len(_CACHE) > 8:
        _CACHE.popitem(last=False)
    return out


def figure(metrics: Mapping[str, Any], key: str) -> float:
    """One reported figure from a mode's metrics (NaN where the kit leaves it undefined)."""
    if key.endswith("_f1") and key[: -len("_f1")] in EMOREALM_TASKS:
        value = (metrics.get("tasks", {}).get(key[: -len("_f1")]) or {}).get("f1")
    else:
        value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) else math.nan


def make_aggregation(mode: str, key: str) -> Callable[[Sequence[Mapping[str, Any]]], float]:
    def aggregate(items: Sequence[Mapping[str, Any]]) -> float:
        return figure(score_payloads(items, mode), key)

    aggregate.__name__ = f"agg_{metric_name(mode, key)}"
    aggregate.__doc__ = f"`{key}` in {mode} mode, by the kit's scorer (lmms-eval aggregation)."
    return aggregate


def _all_aggregations() -> dict[str, Callable[[Sequence[Mapping[str, Any]]], float]]:
    out = {}
    for mode in (*GENERATE_MODES, *LIKELIHOOD_MODES):
        for key in dict.fromkeys((*EMOREALM_KEYS, *KIND_KEYS, *CLASSIFICATION_KEYS)):
            fn = make_aggregation(mode, key)
            out[fn.__name__] = fn
    return out


AGGREGATIONS = _all_aggregations()


def aggregation_name(mode: str, key: str) -> str:
    return f"agg_{metric_name(mode, key)}"


# --- one exported folder ----------------------------------------------------------------------------------
def load_settings(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / SETTINGS_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskFolderError(f"{path}: not found; export the folder again (avere-kit export-lmms-eval)") from None
    except json.JSONDecodeError as e:
        raise TaskFolderError(f"{path}: invalid JSON ({e})") from e
    if settings.get("format") != FORMAT:
        raise TaskFolderError(f"{path}: format {settings.get('format')!r}, this kit reads format {FORMAT}; "
                              "export the folder again with this kit")
    return settings


class TaskFolder:
    """The task functions of one exported folder (its `utils` module makes one from its own `__file__`)."""

    def __init__(self, where: str | os.PathLike):
        where = Path(where)
        self.folder = (where.parent if where.is_file() or where.suffix == ".py" else where).resolve()
        self.settings = load_settings(self.folder)

    # media
    @property
    def data_root(self) -> str:
        """$AVERE_DATA_ROOT when set, else the data root written at export (relative to this folder)."""
        name = self.settings.get("data_root_env", DATA_ROOT_ENV)
        env = os.environ.get(name)
        if env:
            return os.path.abspath(os.path.expanduser(env))
        if self.settings.get("data_root") is None:
            raise TaskFolderError(f"{self.folder / SETTINGS_FILE} names no data root (it was exported outside the "
                                  f"data's folder tree): set ${name} to the folder holding the benchmarks' media")
        return os.path.normpath(os.path.join(self.folder, self.settings["data_root"]))

    def bench(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        name = str(doc["dataset"])
        try:
            return self.settings["benchmarks"][name]
        except KeyError:
            raise TaskFolderError(f"{self.folder / SETTINGS_FILE}: no settings for benchmark {name!r}") from None

    def doc_to_visual(self, doc: Mapping[str, Any]) -> list[str]:
        """The clip's video, then its separate audio file when it has one (else the video's own track)."""
        it = doc_to_item(doc, self.data_root)
        return [p for p in (it.video, it.audio) if p]

    def doc_to_text(self, doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
        """The kit's prompt: EmoReAlM question + lettered choices (`prompt_template`), or the one-word
        classification prompt.  `pre_prompt` / `post_prompt` in lmms_eval_specific_kwargs are added around it
        (empty in the exported YAML: the paper's protocol)."""
        b = self.bench(doc)
        if b["family"] == "emorealm":
            from avere_utils.evaluation.emorealm import build_prompt

            text = build_prompt(doc_to_item(doc), b["prompt_template"])
        else:
            text = b["prompt"]
        kw = lmms_eval_specific_kwargs or {}
        return f"{kw.get('pre_prompt', '')}{text}{kw.get('post_prompt', '')}"

    def doc_to_target(self, doc: Mapping[str, Any]) -> str:
        """The right letter (EmoReAlM) or the emotion label (classification)."""
        return str(doc["answer"]) if self.bench(doc)["family"] == "emorealm" else str(doc["label"])

    def doc_to_choice(self, doc: Mapping[str, Any]) -> list[str]:
        """The candidate answers the kit's `scoring` mode compares, in the form the model answers."""
        b = self.bench(doc)
        if b["family"] == "emorealm":
            from avere_utils.evaluation.emorealm import candidate_answers

            return candidate_answers(doc_to_item(doc), b["choice_answer_template"])
        return [b["label_answer_template"].format(label=c) for c in b["classes"]]

    def doc_to_target_index(self, doc: Mapping[str, Any]) -> int:
        """The right candidate's index in `doc_to_choice` (likelihood tasks)."""
        b = self.bench(doc)
        if b["family"] == "emorealm":
            from avere_utils.evaluation.parsing import choice_letters

            return choice_letters(doc["choices"]).index(doc["answer"])
        return list(b["classes"]).index(doc["label"])

    def _metrics(self, doc: Mapping[str, Any], modes: Sequence[str]) -> list[str]:
        b = self.bench(doc)
        return metric_names(b["family"], modes, b.get("has_kinds", False))

    def process_results_generate(self, doc: Mapping[str, Any], results: Sequence[Any]) -> dict[str, Any]:
        """generate_until: the answer text (lmms-eval passes [text]) with the item, for every paper / strict
        figure of the task."""
        text = results[0] if results else ""
        if isinstance(text, (list, tuple)):  # a repeated request: the first answer, as lmms-eval's take_first
            text = text[0] if text else ""
        payload = {**_item_payload(doc), "generation": "" if text is None else str(text)}
        return {name: payload for name in self._metrics(doc, GENERATE_MODES)}

    def process_results_likelihood(self, doc: Mapping[str, Any], results: Sequence[Any]) -> dict[str, Any]:
        """multiple_choice: one (loss, is_greedy) per candidate of `doc_to_choice`, for every scoring figure."""
        n = len(self.doc_to_choice(doc))
        if len(results) != n:
            raise TaskFolderError(f"document {doc.get('id')}: {len(results)} likelihood results for {n} candidates")
        payload = {**_item_payload(doc), "scores": _scores_from_results(results)}
        return {name: payload for name in self._metrics(doc, LIKELIHOOD_MODES)}
