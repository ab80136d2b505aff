"""`python -m avere_utils.training [--profile P] [--params-dir DIR] [--params FILE] [--variant V] [--set key=value ...]`

The command-line entry point of notebook 04's training, for `accelerate launch` (multi-process CPU, DDP,
multi-GPU): e.g.

    accelerate launch --config_file configs/accelerate/ddp.yaml -m avere_utils.training \\
        --profile paper --variant avem_dpo

The profile's 04_avem_dpo_training params are read as `avere-kit` reads them (`--profile`, `--params-dir`),
with the same runtime settings (torch_threads); `--params FILE` reads a stage YAML instead (any file with
the same keys). --set overrides keys (values parsed as YAML: --set gamma_tpd=0.1 max_steps=20), as on every
command line. `avere-kit run` is the usual way in (it also launches this under accelerate: num_processes).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from avere_utils.config import apply_runtime, build, load_stage, load_yaml, parse_overrides, set_params_dir
from avere_utils.training.params import TrainParams

STAGE = "04_avem_dpo_training"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from avere_utils.cli import add_profile_args

    ap = argparse.ArgumentParser(prog="python -m avere_utils.training", description=__doc__.split("\n\n")[0])
    add_profile_args(ap)
    ap.add_argument("--params", help=f"a YAML of {STAGE} keys, read instead of the profile's")
    ap.add_argument("--variant", help="override the variant (avem_dpo, naive_dpo, vista_dpo, no_pmp, ...)")
    return ap.parse_args(argv)


def params_from_args(args: argparse.Namespace) -> TrainParams:
    overrides = parse_overrides(args.set)
    if args.variant:
        overrides["variant"] = args.variant
    if args.params:
        return apply_runtime(build(TrainParams, {**load_yaml(args.params), **overrides}, args.params))
    if args.params_dir:
        set_params_dir(args.params_dir)
    return load_stage(args.profile, STAGE, overrides)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = params_from_args(parse_args(argv))
    from avere_utils.training.trainer import train

    result = train(params)
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        last = result.history[-1] if result.history else {}
        print(json.dumps({"variant": result.variant, "steps": result.steps, "seconds": round(result.seconds, 2),
                          "output_dir": result.output_dir, "final_loss": last.get("loss")}))
    state.destroy_process_group()  # a clean exit of every process (else gloo may abort at teardown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
