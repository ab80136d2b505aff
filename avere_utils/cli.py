"""`avere-kit`: run a profile, sweep a grid, check the data, show the effective parameters and their help.

Every command that reads a profile takes the same `--profile`, `--params-dir DIR` (profiles kept outside
the repository) and `--set KEY=VALUE ...` (a parameter of any stage, or STAGE.KEY=VALUE; values are
YAML: `--set "datasets=[dfew,emorealm]"`).  An override that matches no stage is an error.
"""
from __future__ import annotations

import argparse
import logging
import sys

from avere_utils import config


def add_profile_args(p: argparse.ArgumentParser) -> None:
    """The options of every command that reads a profile (also used by `score`)."""
    p.add_argument("--profile", default="tiny")
    p.add_argument("--params-dir", metavar="DIR", help="folder of profiles to read instead of params/")
    config.add_set_argument(p)


def profile_overrides(args: argparse.Namespace, stages: list[str] | None = None) -> dict:
    """Apply --params-dir, then parse --set and check every override reaches a stage of the profile."""
    from avere_utils import runner

    if getattr(args, "params_dir", None):
        config.set_params_dir(args.params_dir)
    overrides = config.parse_overrides(args.set)
    if overrides:
        runner.check_overrides(stages or config.load_run(args.profile).stages, overrides)
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    from avere_utils import runner

    overrides = profile_overrides(args)
    try:
        if args.from_run and not args.out:
            raise config.ConfigError("--from RUN needs --out NEW: a new run folder for what changes")
        runner.run(args.profile, only=args.only, variants=args.variants, out=args.out, overrides=overrides,
                   reuse_kernels=not args.fresh_kernels, jobs=args.jobs, preflight_check=not args.skip_preflight,
                   from_run=args.from_run, reuse=not args.no_reuse)
    except runner.StageFailed:
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from avere_utils import runner, sweep

    overrides = profile_overrides(args)
    try:
        table = sweep.sweep(args.profile, sweep.parse_grid(args.grid), variants=[args.variant], out=args.out,
                            overrides=overrides, seeds=args.seeds)
    except runner.StageFailed:
        return 1
    print(table.to_string(index=False))
    return 0


def _cmd_seeds(args: argparse.Namespace) -> int:
    from avere_utils import runner, sweep

    overrides = profile_overrides(args)
    variants = args.variants or config.load_run(args.profile).train_variants
    try:
        table = sweep.sweep(args.profile, {"seed": args.seeds}, variants=variants, out=args.out, folder="seeds",
                            overrides=overrides)
    except runner.StageFailed:
        return 1
    print(table.to_string(index=False))
    print("rerun notebook 08 (avere-kit run --only 08_results_and_ablations) for mean ± spread per variant")
    return 0


def _cmd_reference_seeds(args: argparse.Namespace) -> int:
    from avere_utils import runner, sweep

    try:
        dirs = sweep.reference_seeds(args.profile, args.seeds, variants=args.variants, out=args.out,
                                     overrides=profile_overrides(args))
    except runner.StageFailed:
        return 1
    print("\n".join(str(d) for d in dirs))
    print("rerun notebook 08 (avere-kit run --only 08_results_and_ablations) for the figures per reference seed")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from avere_utils import datacheck, runner

    overrides = profile_overrides(args)
    rep = datacheck.check_profile_report(args.profile, runner.overrides_for(datacheck.STAGE, overrides),
                                         quick=args.quick)
    print(datacheck.format_report(rep))
    return 0 if rep.ok else 1


def _cmd_show(args: argparse.Namespace) -> int:
    from avere_utils import runner

    overrides = profile_overrides(args)
    stages = args.stages or config.load_run(args.profile).stages
    for stage in stages:
        config.print_params(config.load_stage(args.profile, stage, runner.overrides_for(stage, overrides)))
        print()
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from avere_utils import runner

    overrides = profile_overrides(args, [args.stage])
    print(config.describe_stage(args.profile, args.stage, runner.overrides_for(args.stage, overrides)))
    return 0


def _cmd_export_lmms_eval(args: argparse.Namespace) -> int:
    from avere_utils.harness import lmms_export

    stages = sorted({lmms_export.STAGE_OF[b] for b in args.benchmarks})
    return lmms_export.run_command(args, profile_overrides(args, stages))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avere-kit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    # one function per command, in the order `avere-kit --help` lists them
    for add_command in (_add_run, _add_sweep, _add_seeds, _add_reference_seeds, _add_check_data, _add_preflight,
                        _add_show, _add_params, _add_export_lmms_eval, _add_score):
        add_command(sub)
    return p


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="execute the notebooks of a profile in order (papermill)")
    add_profile_args(r)
    r.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (others' outputs untouched)")
    r.add_argument("--variants", nargs="+", metavar="V", help="restrict the per-variant stages to these variants")
    r.add_argument("--out", help="run folder (default: run.yaml's run_dir)")
    r.add_argument("--fresh-kernels", action="store_true",
                   help="one new kernel per notebook (default: the variants of a stage share one, namespace wiped)")
    r.add_argument("--jobs", type=int, metavar="N",
                   help="variants of a stage run N at a time (default: run.yaml's variant_jobs)")
    r.add_argument("--skip-preflight", action="store_true", help="do not run avere-kit preflight first")
    r.add_argument("--from", dest="from_run", metavar="RUN",
                   help="start from run folder RUN: every stage whose params, notebook code and inputs are the "
                        "same as there is linked from it (run.log: reused), the rest runs into --out")
    r.add_argument("--no-reuse", action="store_true",
                   help="run every stage asked even when stage_done/ says an identical one finished")
    r.set_defaults(func=_cmd_run)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="train + evaluate one variant over a grid of parameters")
    add_profile_args(s)
    s.add_argument("--grid", nargs="+", action="extend", required=True, metavar="KEY=V1,V2",
                   help="e.g. gamma_tpd=0,0.1,0.2 lambda_av=0,1; a YAML list for dict or list points: "
                        "'02_pair_construction.family_weights=[{...}, {...}]'; a repeated KEY adds points. "
                        "The sweep runs from the earliest stage of its keys on; a key of a stage it does not "
                        "run is an error")
    s.add_argument("--seeds", nargs="+", type=int, metavar="K",
                   help="run each point once per seed (training's and the evaluations'): mean ± sd per point")
    s.add_argument("--variant", default="avem_dpo")
    s.add_argument("--out", help="base run folder holding data, pairs and the reference model")
    s.set_defaults(func=_cmd_sweep)


def _add_seeds(sub: argparse._SubParsersAction) -> None:
    sd = sub.add_parser("seeds", help="repeat training + evaluation of every variant over several seeds")
    add_profile_args(sd)
    sd.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    sd.add_argument("--variants", nargs="+", metavar="V")
    sd.add_argument("--out", help="base run folder holding data, pairs and the reference model")
    sd.set_defaults(func=_cmd_seeds)


def _add_reference_seeds(sub: argparse._SubParsersAction) -> None:
    rs = sub.add_parser("reference-seeds", help="rebuild the reference with other seeds and rerun every variant on each")
    add_profile_args(rs)
    rs.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    rs.add_argument("--variants", nargs="+", metavar="V", help="default: every variant of run.yaml")
    rs.add_argument("--out", help="base run folder holding data and pairs")
    rs.set_defaults(func=_cmd_reference_seeds)


def _add_check_data(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check-data", help="validate the configured datasets (every clip) before any model is loaded")
    add_profile_args(c)
    c.add_argument("--quick", type=int, metavar="N", help="check a sample of N clips per dataset instead of all")
    c.set_defaults(func=_cmd_check_data)


def _add_preflight(sub: argparse._SubParsersAction) -> None:
    from avere_utils import preflight  # `preflight`: everything a run needs, checked before it starts

    pf = sub.add_parser("preflight", help="check data, base model, keys, judge prompt, GPU, disk; print the cost")
    preflight.add_args(pf)
    pf.set_defaults(func=preflight.run_cli)


def _add_show(sub: argparse._SubParsersAction) -> None:
    sh = sub.add_parser("show", help="print the effective parameters of a profile's stages")
    add_profile_args(sh)
    sh.add_argument("stages", nargs="*")
    sh.set_defaults(func=_cmd_show)


def _add_params(sub: argparse._SubParsersAction) -> None:
    pa = sub.add_parser("params", help="every key of one stage: type, value in the profile, where it comes from, help")
    pa.add_argument("--stage", required=True, metavar="STAGE", help=f"one of {', '.join(config.STAGES)}")
    add_profile_args(pa)
    pa.set_defaults(func=_cmd_params)


def _add_export_lmms_eval(sub: argparse._SubParsersAction) -> None:
    le = sub.add_parser("export-lmms-eval", help="write an lmms-eval task folder (EmoReAlM, DFEW, RAVDESS) scored by "
                                                  "the kit's own scorers")
    add_profile_args(le)
    from avere_utils.harness import lmms_export  # no lmms_eval import: the folder is plain files

    lmms_export.add_arguments(le)
    le.set_defaults(func=_cmd_export_lmms_eval)


def _add_score(sub: argparse._SubParsersAction) -> None:
    from avere_utils.evaluation import score_cli  # `score`: text predictions -> metrics, no model

    score_cli.add_parser(sub)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from avere_utils.runlock import RunFolderBusy
    from avere_utils.runner import RunInterrupted

    try:
        return args.func(args)
    except config.ConfigError as err:
        print(f"avere-kit: configuration error: {err}", file=sys.stderr)
        return 2
    except RunFolderBusy as err:
        print(f"avere-kit: {err}", file=sys.stderr)
        return 3
    except RunInterrupted:  # the runner has said which notebook stopped and what a rerun resumes
        return 130


if __name__ == "__main__":
    sys.exit(main())
