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
from typing import Any

from avere_utils import config
from avere_utils.evaluation import common, registry, stage

# The benchmarks each stage evaluates: notebook 05 those its params list, 06 and 07 one each.
STAGE_BENCHMARKS: dict[str, tuple[str, ...] | None] = {
    "05_zero_shot_classification": None,  # params.benchmarks
    "06_zero_shot_emer": ("emer",),
    "07_zero_shot_emorealm": ("emorealm",),
}
STAGES = tuple(STAGE_BENCHMARKS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m avere_utils.evaluation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    from avere_utils.cli import add_profile_args

    ap.add_argument("stage", choices=STAGES)
    add_profile_args(ap)
    args = ap.parse_args(argv)
    if args.params_dir:
        config.set_params_dir(args.params_dir)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = config.load_stage(args.profile, args.stage, config.parse_overrides(args.set))
    backend = common.open_backend(params)
    benchmarks = STAGE_BENCHMARKS[args.stage] or tuple(params.benchmarks)
    headlines: dict[str, dict[str, Any]] = {}
    for benchmark in benchmarks:
        scorer = registry.get_scorer(benchmark)
        m = stage.run_stage(params, benchmark, backend, scorer)
        headlines[benchmark] = {k: m.get(k) for k in scorer.headline_keys(params)} if m else {}
    if common.is_main_process():
        # notebook 05's stage prints one headline per benchmark, 06 and 07 that of their one benchmark
        if STAGE_BENCHMARKS[args.stage] is None:
            print(json.dumps({b: h for b, h in headlines.items() if h}, indent=1))
        else:
            print(json.dumps(headlines[benchmarks[0]], indent=1))


if __name__ == "__main__":
    main()
