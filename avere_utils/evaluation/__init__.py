"""Zero-shot evaluation (notebooks 05-07): resumable predictions, three scoring modes, judges, metrics.

    from avere_utils.evaluation import classification, emer, emorealm
    backend = common.open_backend(P)
    classification.evaluate_benchmark(P, "dfew", backend)   # -> metrics dict, also written to disk
"""
from avere_utils.evaluation import classification, common, emer, emorealm, metrics, parsing, plots
from avere_utils.evaluation.common import open_backend
from avere_utils.evaluation.params import ClassificationParams, EmerParams, EmoRealmParams

__all__ = ["ClassificationParams", "EmerParams", "EmoRealmParams", "classification", "common", "emer",
           "emorealm", "metrics", "open_backend", "parsing", "plots"]
