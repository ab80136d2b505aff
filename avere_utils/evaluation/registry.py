"""Benchmark name -> its scorer, and the one entry notebooks 05-07 evaluate through.

    metrics = evaluate(P, "dfew", backend)          # predict, score, write metrics/dfew-<variant>.json
    scorer = get_scorer("dfew")                     # a fresh ClassificationScorer for DFEW

Which scorer evaluates which benchmark is a field of its record in `avere_utils.benchmarks`; a new benchmark
registers a record there (`benchmarks.register`), never here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from avere_utils import benchmarks
from avere_utils.benchmarks import UnknownBenchmarkError
from avere_utils.evaluation.params import EvalParams
from avere_utils.evaluation.predict import MediaFn
from avere_utils.evaluation.stage import Scorer, run_stage
from avere_utils.records import Item

if TYPE_CHECKING:  # the backend module imports torch: only for annotations here
    from avere_utils.models.backend import Backend

__all__ = ["UnknownBenchmarkError", "evaluate", "get_scorer", "known_benchmarks"]


def known_benchmarks() -> tuple[str, ...]:
    """The benchmarks evaluated on their own, in the order of the paper's tables."""
    return benchmarks.names(standalone=True)


def get_scorer(name: str) -> Scorer:
    """A new scorer for benchmark `name` (one per run: a scorer may keep state between its steps)."""
    return benchmarks.get(name).make_scorer()


def evaluate(params: EvalParams, benchmark: str, backend: Backend, *, items: Sequence[Item] | None = None,
             media_fn: MediaFn | None = None, media_settings: Any = None, scorer: Scorer | None = None
             ) -> dict[str, Any]:
    """Predict (resumably), score in every mode, write `metrics/<benchmark>-<variant>.json`, return it.
    `scorer`: one made by the caller (e.g. EMER's with a judge already built); else the registry's."""
    return run_stage(params, benchmark, backend, scorer or get_scorer(benchmark), items=items, media_fn=media_fn,
                     media_settings=media_settings)
