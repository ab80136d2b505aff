"""Benchmark name -> its scorer, the one place that knows which code evaluates which benchmark.

    scorer = get_scorer("dfew")                     # a fresh ClassificationScorer for DFEW
    stage.run_stage(params, "dfew", backend, scorer)

A new benchmark registers a factory (called with the benchmark's name) returning its `Scorer`:
`register_scorer("mybench", MyScorer)`.
"""
from __future__ import annotations

from typing import Callable

from avere_utils.evaluation.classification import ClassificationScorer
from avere_utils.evaluation.emer import EmerScorer
from avere_utils.evaluation.emorealm import EmoRealmScorer
from avere_utils.evaluation.params import CLASSIFICATION_BENCHMARKS
from avere_utils.evaluation.stage import Scorer

ScorerFactory = Callable[[str], Scorer]

# In the order of the paper's tables (classification, then EMER, then EmoReAlM): command-line choices
# and error messages list them so.
SCORERS: dict[str, ScorerFactory] = {
    **{name: ClassificationScorer for name in CLASSIFICATION_BENCHMARKS},
    "emer": EmerScorer,
    "emorealm": EmoRealmScorer,
}

class UnknownBenchmarkError(ValueError):
    """A benchmark name no scorer is registered for."""


def register_scorer(name: str, factory: ScorerFactory) -> None:
    """Make `name` evaluable; registering a name twice is an error (one benchmark, one scorer)."""
    if name in SCORERS:
        raise ValueError(f"benchmark {name!r} already has a scorer ({SCORERS[name]!r})")
    SCORERS[name] = factory


def known_benchmarks() -> tuple[str, ...]:
    return tuple(SCORERS)


def get_scorer(name: str) -> Scorer:
    """A new scorer for benchmark `name` (one per run: a scorer may keep state between its steps)."""
    if name not in SCORERS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; known: {list(SCORERS)}")
    return SCORERS[name](name)
