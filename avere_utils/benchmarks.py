"""Every benchmark as one record: how its items are indexed, what they ask, how they are scored, where the
report shows them.  Every list of benchmark names in the kit derives from `BENCHMARKS`:

    datasets.params.ALL_DATASETS          notebook 01's datasets (+ the training source)
    evaluation.params.Benchmark           notebook 05's choices (the `label` benchmarks)
    evaluation.registry.get_scorer(name)  the scorer stage.run_stage uses; `avere-kit score`'s choices
    report.tables.columns("table2")       the columns of the paper-shaped tables

A new benchmark is a loader module in datasets/, its parameters (where its files are) in datasets/params.py,
and one record here (CONTRIBUTING.md, "Adding a benchmark").  Loaders and scorers are named as
"module:attribute" and imported on first use: this module is imported by the params of every stage, which
must stay cheap to import (and the scorers' modules import those params).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from avere_utils.emotions import EMOTIONS, MER2023_CLASSES
from avere_utils.protocol import (
    CLASSIFICATION_PROMPT,
    EMER_CRITERIA,
    EMER_PROMPT,
    EMOREALM_AVERAGE,
    EMOREALM_HELDOUT,
    EMOREALM_PROMPT_TEMPLATE,
    EMOREALM_TASKS,
)

if TYPE_CHECKING:
    from avere_utils.datasets.common import LoadResult
    from avere_utils.datasets.params import DataPrepParams
    from avere_utils.evaluation.stage import Scorer

Loader = Callable[["DataPrepParams"], "LoadResult"]
ScorerFactory = Callable[[str], "Scorer"]
# What an item asks of the model, which decides how its answers are read:
#   label        one word, read as one of `classes` (notebook 05);
#   description  a free description, judged against a reference (notebook 06);
#   question     a lettered multiple-choice or Yes/No question (notebook 07).
ITEM_KINDS: tuple[str, ...] = ("label", "description", "question")
TABLES: tuple[str, ...] = ("table2", "table3")  # the paper's Table 2 (recognition, EMER) and 3 (EmoReAlM)


class UnknownBenchmarkError(ValueError):
    """A benchmark name no record is registered for."""


def imported(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """A "module:attribute" reference, imported; a callable as it is."""
    if callable(ref):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Benchmark:
    name: str  # manifests/<name>.jsonl, predictions/ and metrics/<name>-<variant>.json
    item_kind: str  # one of ITEM_KINDS
    loader: str | Loader  # (notebook 01's params) -> LoadResult
    scorer: str | ScorerFactory  # (name) -> a fresh Scorer for one run
    stage: str  # the notebook that evaluates it
    prompt: str  # the protocol's prompt (or prompt template); the stage's params default to it
    classes: tuple[str, ...] = ()  # `label` benchmarks: the class set answers are read into
    headline: tuple[str, ...] = ()  # the metric keys a command line prints for it, besides coverage
    table: str | None = None  # which of TABLES shows it; None: no paper-shaped table
    columns: tuple[tuple[str, str], ...] = ()  # (column header, metric key) in that table, in order
    # evaluated inside another benchmark's stage, never on its own (EmoReAlM's held-out wordings): left out
    # of the command lines' choices (`names(standalone=True)`)
    part_of: str | None = None
    # `avere-kit score`: the native annotation file's reader, (path, **options) -> (items, skip counts),
    # with the command's options it takes (recorded in the output); None: not scored from text there
    annotations: str | Callable[..., Any] | None = None
    annotation_options: tuple[str, ...] = ()
    numeric_ids: bool = False  # clip names are numbers, zero-padded or not ("00001" = "1")

    def __post_init__(self) -> None:
        if self.item_kind not in ITEM_KINDS:
            raise ValueError(f"benchmark {self.name!r}: item_kind {self.item_kind!r} is not one of {ITEM_KINDS}")
        if self.table is not None and self.table not in TABLES:
            raise ValueError(f"benchmark {self.name!r}: table {self.table!r} is not one of {TABLES}")
        if self.item_kind == "label" and not self.classes:
            raise ValueError(f"benchmark {self.name!r}: a label benchmark needs its classes")

    def load(self, params: DataPrepParams) -> LoadResult:
        """Index the benchmark with notebook 01's parameters (no decoding)."""
        return imported(self.loader)(params)

    def make_scorer(self) -> Scorer:
        return imported(self.scorer)(self.name)


CLASSIFICATION_SCORER = "avere_utils.evaluation.classification:ClassificationScorer"
CLASSIFICATION_STAGE = "05_zero_shot_classification"
EMOREALM_SCORER = "avere_utils.evaluation.emorealm:EmoRealmScorer"
EMOREALM_STAGE = "07_zero_shot_emorealm"
SCORE_CLI = "avere_utils.evaluation.score_cli"
CLASSIFICATION_HEADLINE = ("uar", "war", "weighted_f1")


def _classification(name: str, loader: str, classes: tuple[str, ...], columns: tuple[tuple[str, str], ...],
                    annotations: str, **extra: Any) -> Benchmark:
    """DFEW, RAVDESS and MER2023 differ only in their data, classes and columns."""
    return Benchmark(name, "label", loader, CLASSIFICATION_SCORER, CLASSIFICATION_STAGE, CLASSIFICATION_PROMPT,
                     classes=classes, headline=CLASSIFICATION_HEADLINE, table="table2", columns=columns,
                     annotations=f"{SCORE_CLI}:{annotations}", **extra)


# In the order of the paper's tables (classification, then EMER, then EmoReAlM): the tables' columns,
# the command lines' choices and error messages list them so.
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    _classification("dfew", "avere_utils.datasets.dfew:from_params", EMOTIONS,
                    (("DFEW UAR", "uar"), ("DFEW WAR", "war")), "load_dfew_csv", numeric_ids=True),
    # calm is dropped (or merged into neutral) by the loader: the seven DFEW classes remain
    _classification("ravdess", "avere_utils.datasets.ravdess:from_params", EMOTIONS,
                    (("RAV UAR", "uar"), ("RAV WAR", "war")), "load_ravdess_names",
                    annotation_options=("ravdess_selection",)),
    _classification("mer2023", "avere_utils.datasets.mer2023:from_params", MER2023_CLASSES,
                    (("MER23 F1", "weighted_f1"),), "load_mer2023_csv"),
    Benchmark("emer", "description", "avere_utils.datasets.emer:from_params",
              "avere_utils.evaluation.emer:EmerScorer", "06_zero_shot_emer", EMER_PROMPT,
              headline=EMER_CRITERIA, table="table2",
              columns=tuple(zip(("Clue", "Label", "Spurious", "Halluc"), EMER_CRITERIA, strict=True)),
              annotations=f"{SCORE_CLI}:load_emer_csv"),
    Benchmark("emorealm", "question", "avere_utils.datasets.emorealm:from_params", EMOREALM_SCORER,
              EMOREALM_STAGE, EMOREALM_PROMPT_TEMPLATE, headline=(EMOREALM_AVERAGE,), table="table3",
              columns=(*zip(("B-A", "B-V", "MA", "S-A", "S-V"), EMOREALM_TASKS, strict=True),
                       ("Avg", EMOREALM_AVERAGE)),
              annotations=f"{SCORE_CLI}:load_emorealm_json"),
    Benchmark(EMOREALM_HELDOUT, "question", "avere_utils.datasets.emorealm:heldout_from_params", EMOREALM_SCORER,
              EMOREALM_STAGE, EMOREALM_PROMPT_TEMPLATE, headline=(EMOREALM_AVERAGE,), part_of="emorealm"),
)}


def register(record: Benchmark) -> Benchmark:
    """Make a benchmark known to every stage; a name is registered once (one benchmark, one record)."""
    if record.name in BENCHMARKS:
        raise ValueError(f"benchmark {record.name!r} is already registered")
    BENCHMARKS[record.name] = record
    return record


def names(item_kind: str | None = None, *, standalone: bool = False) -> tuple[str, ...]:
    """Registered benchmarks in table order; of one item kind; `standalone`: without those evaluated only as
    part of another (the command lines' choices)."""
    return tuple(b.name for b in BENCHMARKS.values()
                 if (item_kind is None or b.item_kind == item_kind) and not (standalone and b.part_of))


def get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; known: {list(names(standalone=True))}")
    return BENCHMARKS[name]


def table_columns(table: str) -> list[tuple[str, str, str]]:
    """(column header, benchmark, metric key) of one paper-shaped table, in the registry's order."""
    return [(header, b.name, key) for b in BENCHMARKS.values() if b.table == table for header, key in b.columns]
