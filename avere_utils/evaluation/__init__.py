"""Zero-shot evaluation (notebooks 05-07): resumable predictions, three scoring modes, judges, metrics.

    from avere_utils.evaluation import classification, emer, emorealm
    backend = common.open_backend(P)
    registry.evaluate(P, "dfew", backend)   # -> metrics dict, also written to disk

Every benchmark runs through one loop, `stage.run_stage`, with the scorer its record names
(`avere_utils.benchmarks`, made by `registry.get_scorer(name)`); notebooks 05-07 call it under the names
`classification.evaluate_benchmark`, `emer.evaluate` and `emorealm.evaluate`.
"""
import importlib
from typing import Any

# Submodules load on first use, so that `avere-kit score` (and every other command, whose parser
# registers it) does not pay for plotting and model imports.
_LAZY = ("classification", "common", "emer", "emorealm", "figures", "metrics", "parsing", "registry", "released",
         "stage")
_FROM_PARAMS = ("ClassificationParams", "EmerParams", "EmoRealmParams")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FROM_PARAMS:
        return getattr(importlib.import_module(f"{__name__}.params"), name)
    if name == "open_backend":
        return importlib.import_module(f"{__name__}.common").open_backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ClassificationParams", "EmerParams", "EmoRealmParams", "classification", "common", "emer",
           "emorealm", "figures", "metrics", "open_backend", "parsing", "registry", "released", "stage"]
