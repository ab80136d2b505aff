"""Run one evaluation stage outside a notebook, e.g. on several GPUs:

    accelerate launch --num_processes 8 -m avere_utils.evaluation 07_zero_shot_emorealm \\
        --profile paper --set variant=avem_dpo batch_size=16

Each process predicts its share of the items into its own shard file; the main process merges the shards,
scores every mode and writes the metrics file (figures are the notebooks' job).  The notebook run for the
same params afterwards finds every prediction done and only scores and plots.
"""
from __future__ import annotations

import argparse
import json
import logging

from avere_utils import config
from avere_utils.evaluation import classification, common, emer, emorealm

STAGES = ("05_zero_shot_classification", "06_zero_shot_emer", "07_zero_shot_emorealm")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m avere_utils.evaluation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--profile", default="tiny")
    config.add_set_argument(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = config.load_stage(args.profile, args.stage, config.parse_overrides(args.set))
    backend = common.open_backend(params)
    if args.stage == "05_zero_shot_classification":
        result = {b: classification.evaluate_benchmark(params, b, backend) for b in params.benchmarks}
        headline = {b: {k: m.get(k) for k in ("uar", "war", "weighted_f1", "coverage")} for b, m in result.items() if m}
    elif args.stage == "06_zero_shot_emer":
        m = emer.evaluate(params, backend)
        headline = {k: m.get(k) for k in ("clue", "label", "spurious", "hallucination", "coverage")} if m else {}
    else:
        m = emorealm.evaluate(params, backend)
        headline = {k: m.get(k) for k in ("average_accuracy", *params.tasks, "coverage")} if m else {}
    if common.is_main_process():
        print(json.dumps(headline, indent=1))


if __name__ == "__main__":
    main()
