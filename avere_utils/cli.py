"""`avere-kit`: run a profile, sweep a grid, check the data, show the effective parameters."""
from __future__ import annotations

import argparse
import logging
import sys

from avere_utils import config


def _cmd_run(args: argparse.Namespace) -> int:
    from avere_utils import runner

    try:
        runner.run(args.profile, only=args.only, variants=args.variants, out=args.out,
                   overrides=runner.parse_overrides(args.set))
    except runner.StageFailed:
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from avere_utils import runner, sweep

    try:
        table = sweep.sweep(args.profile, sweep.parse_grid(args.grid), variants=[args.variant], out=args.out,
                            overrides=runner.parse_overrides(args.set))
    except runner.StageFailed:
        return 1
    print(table.to_string(index=False))
    return 0


def _cmd_seeds(args: argparse.Namespace) -> int:
    from avere_utils import runner, sweep

    variants = args.variants or config.load_run(args.profile).train_variants
    try:
        table = sweep.sweep(args.profile, {"seed": args.seeds}, variants=variants, out=args.out, folder="seeds")
    except runner.StageFailed:
        return 1
    print(table.to_string(index=False))
    print("rerun notebook 08 (avere-kit run --only 08_results_and_ablations) for mean ± spread per variant")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from avere_utils import datacheck

    table, ok = datacheck.check_profile(args.profile)
    print(datacheck.format_table(table))
    print("data check: OK" if ok else "data check: FAILED (see the table above)")
    return 0 if ok else 1


def _cmd_show(args: argparse.Namespace) -> int:
    stages = args.stages or config.load_run(args.profile).stages
    for stage in stages:
        config.print_params(config.load_stage(args.profile, stage))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avere-kit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks of a profile in order (papermill)")
    r.add_argument("--profile", default="tiny")
    r.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (others' outputs untouched)")
    r.add_argument("--variants", nargs="+", metavar="V", help="restrict the per-variant stages to these variants")
    r.add_argument("--out", help="run folder (default: run.yaml's run_dir)")
    r.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a parameter in every stage that has it (or STAGE.KEY=VALUE)")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("sweep", help="train + evaluate one variant over a grid of parameters")
    s.add_argument("--profile", default="tiny")
    s.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                   help="e.g. gamma_tpd=0,0.1,0.2 lambda_av=0,1 (any parameter path)")
    s.add_argument("--variant", default="avem_dpo")
    s.add_argument("--out", help="base run folder holding data, pairs and the reference model")
    s.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=_cmd_sweep)

    sd = sub.add_parser("seeds", help="repeat training + evaluation of every variant over several seeds")
    sd.add_argument("--profile", default="tiny")
    sd.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sd.add_argument("--variants", nargs="+", metavar="V")
    sd.add_argument("--out", help="base run folder holding data, pairs and the reference model")
    sd.set_defaults(func=_cmd_seeds)

    c = sub.add_parser("check-data", help="validate the configured datasets before any model is loaded")
    c.add_argument("--profile", default="tiny")
    c.set_defaults(func=_cmd_check_data)

    sh = sub.add_parser("show", help="print the effective parameters of a profile's stages")
    sh.add_argument("--profile", default="tiny")
    sh.add_argument("stages", nargs="*")
    sh.set_defaults(func=_cmd_show)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as err:
        print(f"avere-kit: configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
