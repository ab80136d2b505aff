"""`python -m avere_utils.training --params FILE [--variant V] [--set key=value ...]`

The command-line entry point of notebook 04's training, for `accelerate launch` (multi-process CPU, DDP,
multi-GPU): e.g.

    accelerate launch --config_file configs/accelerate/ddp.yaml -m avere_utils.training \\
        --params params/paper/04_avem_dpo_training.yaml --variant avem_dpo

FILE is a stage YAML (params/<profile>/04_avem_dpo_training.yaml or any file with the same keys);
--set overrides keys (values parsed as YAML: --set gamma_tpd=0.1 max_steps=20), as on every command line.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from avere_utils.config import add_set_argument, build, load_yaml, parse_overrides
from avere_utils.training.params import TrainParams


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m avere_utils.training", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", required=True, help="YAML of 04_avem_dpo_training keys")
    ap.add_argument("--variant", help="override the file's variant (avem_dpo, naive_dpo, vista_dpo, no_pmp, ...)")
    add_set_argument(ap)
    return ap.parse_args(argv)


def params_from_args(args: argparse.Namespace) -> TrainParams:
    raw = load_yaml(args.params)
    raw.update(parse_overrides(args.set))
    if args.variant:
        raw["variant"] = args.variant
    return build(TrainParams, raw, args.params)


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
