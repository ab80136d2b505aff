"""Ablation sweeps: train and evaluate one variant at every point of a parameter grid.

A sweep runs, at each grid point, the stages from the earliest one any of its keys (grid or --set) belongs
to through the last evaluation (default: training and the evaluations) into <run>/sweep/<point>/.  Every
execution upstream of that stage is linked from the base run, and every execution whose params, notebook
code and inputs hash the same as the base run's is reused from it (`runner.run(from_run=...)`,
stage_done/ records), so a point whose value equals the base run's rebuilds nothing.  A key of a stage the
sweep does not run (08, or a stage missing from the profile) is refused before any work.

Values are YAML.  `--grid KEY=V1,V2` splits on commas; `KEY=[V1, V2]` is a YAML list of points, so a point
can be a dict or a list (`--grid 'family_weights=[{a: 1, b: 2}, {a: 2, b: 1}]'`); a repeated KEY adds its
points (`--grid 'family_weights={a: 1}' --grid 'family_weights={a: 2}'`).

With `seeds`, each point runs once per seed (the seed of the stages the sweep runs from training on) into
<point>/seed-K/, and the summary gives mean ± sd over the seeds.  The summary has two more rows: the base
run's reference and its run of the swept variant.  A point (or seed) whose `point.json` says done is not rerun.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import yaml

from avere_utils import config, runner
from avere_utils.paths import atomic_write_text, repo_path

BASE_ROWS = "row"  # the summary's first column: a point's name, or "reference (base run)", "<variant> (base run)"


def _value_name(value: Any) -> str:
    """A folder-safe spelling of one grid value: scalars as written; a dict as its keys' initials and values
    (`{visual_reasoning: 0.6, audio_stress: 0.8}` -> `vr0.6,as0.8`) and a list as its items, each with a short
    hash of the whole value (two values never share a folder), cut when long."""
    if not isinstance(value, (dict, list, tuple)):
        return str(value)
    full = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    if isinstance(value, dict):
        text = ",".join("".join(w[:1] for w in str(k).split("_")) + (str(v) if not isinstance(v, (dict, list)) else "")
                        for k, v in value.items())
    else:
        text = ",".join(str(v) for v in value)
    text = re.sub(r"[^A-Za-z0-9.,=+-]+", "", text)[:40] or "value"
    return f"{text}-{hashlib.sha256(full.encode()).hexdigest()[:6]}"


def point_name(point: Mapping[str, Any]) -> str:
    return "_".join(f"{k.rpartition('.')[2]}-{_value_name(v)}" for k, v in point.items())


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """`--grid` entries -> {key: [points]}: `KEY=V1,V2` (split on commas), `KEY=[V1, V2]` (a YAML list: its
    items are the points, so they may be dicts or lists), `KEY={...}` (one dict point); a key given again
    adds its points."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, values = config.split_assignment(item, "grid entry")
        text = values.strip()
        if not text:
            raise config.ConfigError(f"grid entry {item!r} is not of the form key=v1,v2,... or key=[v1, v2]")
        try:
            if text.startswith("["):
                points = yaml.safe_load(text)
            elif text.startswith("{"):
                points = [yaml.safe_load(text)]
            else:
                points = [yaml.safe_load(v) for v in text.split(",")]
        except yaml.YAMLError as err:
            raise config.ConfigError(f"grid entry {item!r}: not YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(points, list) or not points:
            raise config.ConfigError(f"grid entry {item!r}: no points")
        grid.setdefault(key, []).extend(points)
    return grid


def key_stages(key: str, stages: Sequence[str]) -> list[str]:
    """The stages of `stages` an override key reaches (STAGE.key: that stage; a bare key: every stage with it)."""
    target, dot, name = key.rpartition(".")
    if dot:
        return [target] if target in stages else []
    return [s for s in stages if name in {f.name for f in dataclasses.fields(config.stage_class(s))}]


def sweep_stages(profile: str, keys: Sequence[str]) -> list[str]:
    """The stages a sweep over `keys` runs: from the earliest stage a key belongs to (the training stage if
    none is earlier) through the last per-variant stage.  A bare key that training or an evaluation has is
    theirs (`seed` does not rebuild the data).  A key of no stage run is an error, before any work."""
    run_cfg = config.load_run(profile)
    stages = list(run_cfg.stages)
    per_variant = [s for s in stages if s in run_cfg.per_train_variant or s in run_cfg.per_eval_variant]
    if not per_variant:
        raise config.ConfigError(f"profile {profile!r} has no per-variant stage to sweep")
    first, last = stages.index(per_variant[0]), stages.index(per_variant[-1])
    for key in keys:
        reach = key_stages(key, stages)
        if any(s in per_variant for s in reach):
            continue
        if reach and stages.index(reach[0]) < first:
            first = stages.index(reach[0])
    run = stages[first:last + 1]
    for key in keys:
        reach = key_stages(key, stages)
        if reach and not set(reach) & set(run):
            raise config.ConfigError(
                f"sweep key {key!r} belongs to {', '.join(reach)}, which a sweep does not run (it runs "
                f"{run[0]} .. {run[-1]}, the stages that make one variant's results); sweep a key of those")
    return run


def _points_to_run(base: Path, folder: str, points: Sequence[Mapping[str, Any]], seeds: Sequence[int] | None
                   ) -> list[tuple[dict[str, Any], int | None, Path]]:
    out = []
    for point in points:
        point_dir = base / folder / point_name(point)
        for seed in (seeds if seeds is not None else [None]):
            out.append((dict(point), seed, point_dir if seed is None else point_dir / f"seed-{seed}"))
    return out


def sweep(profile: str, grid: Mapping[str, Sequence[Any]], *, variants: Sequence[str] = ("avem_dpo",),
          out: str | None = None, folder: str = "sweep", overrides: Mapping[str, Any] | None = None,
          seeds: Sequence[int] | None = None, echo=print) -> pd.DataFrame:
    run_cfg = config.load_run(profile)
    base = repo_path(out or run_cfg.run_dir)
    overrides = dict(overrides or {})
    runner.check_overrides(run_cfg.stages, {**grid, **overrides})
    stages = sweep_stages(profile, [*grid, *overrides])
    per_variant = [s for s in stages if s in run_cfg.per_train_variant or s in run_cfg.per_eval_variant]
    seed_keys = [f"{s}.seed" for s in per_variant]  # a seed of the sweep: training's and the evaluations'
    order = list(run_cfg.stages)
    needed = [rel for stage, rels in (("01_data_preparation", ("manifests",)), ("02_pair_construction", ("pairs",)),
                                      ("03_reference_model", ("models/reference",)))
              if stage in order and order.index(stage) < order.index(stages[0]) for rel in rels]
    missing = [rel for rel in needed if not (base / rel).exists()]
    if missing:
        upto = [s for s in order if order.index(s) < order.index(stages[0])]
        raise config.ConfigError(
            f"sweep needs the base run's {', '.join(missing)} under {base}; run "
            f"`avere-kit run --profile {profile} --only {' '.join(upto)}` first")
    points = grid_points(grid)
    todo = _points_to_run(base, folder, points, seeds)
    for i, (point, seed, run_dir) in enumerate(todo, 1):
        label = point_name(point) + (f" seed {seed}" if seed is not None else "")
        status = run_dir / "point.json"
        if status.is_file() and json.loads(status.read_text()).get("done"):
            echo(f"sweep point {i}/{len(todo)} {label}: done before, skipped")
            continue
        echo(f"sweep point {i}/{len(todo)} {label} (stages {stages[0]} .. {stages[-1]})")
        run_dir.mkdir(parents=True, exist_ok=True)
        ov = {**overrides, **point, **({k: seed for k in seed_keys} if seed is not None else {})}
        runner.run(profile, only=stages, variants=list(variants), out=str(run_dir), overrides=ov, from_run=base,
                   preflight_check=False, echo=lambda s: echo("  " + s))
        atomic_write_text(status, json.dumps({"point": point, "seed": seed, "variants": list(variants),
                                              "stages": stages, "done": True}, indent=1, default=str))
    return aggregate(base / folder, points, variants[0], seeds=seeds, base=base)


REFERENCE_STAGE = "03_reference_model"
REFERENCE_SHARED = ("world", "manifests", "pairs", "cache")  # not models/: each seed trains its own reference


def reference_seeds(profile: str, seeds: Sequence[int], *, variants: Sequence[str] | None = None,
                    out: str | None = None, overrides: Mapping[str, Any] | None = None, echo=print) -> list[Path]:
    """Rebuild the reference with each of `seeds` (stage 03's `seed`: the tiny thinker's initialisation and
    the SFT's data order) and train and evaluate every variant on it, into <run>/reference_seeds/seed-K/,
    sharing the base run's world, manifests, pairs and caches (the log-prob cache is keyed by the reference
    checkpoint, so a new reference never reads another's).  A seed whose `point.json` says done is skipped.
    The story's claims hold only if they hold for every reference, not for one draw of it."""
    run_cfg = config.load_run(profile)
    base = repo_path(out or run_cfg.run_dir)
    missing = [rel for rel in ("manifests", "pairs") if not (base / rel).exists()]
    if missing:
        raise config.ConfigError(f"reference seeds need the base run's {', '.join(missing)} under {base}; run "
                                 f"`avere-kit run --profile {profile} --only 01_data_preparation 02_pair_construction` first")
    stages = [REFERENCE_STAGE] + [s for s in run_cfg.stages
                                  if s in run_cfg.per_train_variant or s in run_cfg.per_eval_variant]
    runner.check_overrides(stages, dict(overrides or {}))
    done = []
    for i, seed in enumerate(seeds, 1):
        seed_dir = base / "reference_seeds" / f"seed-{seed}"
        status = seed_dir / "point.json"
        done.append(seed_dir)
        if status.is_file() and json.loads(status.read_text()).get("done"):
            echo(f"reference seed {i}/{len(seeds)} ({seed}): done before, skipped")
            continue
        echo(f"reference seed {i}/{len(seeds)} ({seed})")
        seed_dir.mkdir(parents=True, exist_ok=True)
        for rel in REFERENCE_SHARED:
            src, dst = base / rel, seed_dir / rel
            if src.exists() and not dst.exists():
                os.symlink(src, dst, target_is_directory=True)
        runner.run(profile, only=stages, variants=list(variants) if variants else None, out=str(seed_dir),
                   overrides={**(overrides or {}), f"{REFERENCE_STAGE}.seed": seed}, echo=lambda s: echo("  " + s))
        atomic_write_text(status, json.dumps({"reference_seed": seed, "done": True}, indent=1))
    return done


def _metrics_row(metrics_dir: Path, variant: str) -> dict[str, Any]:
    from avere_utils.report.tables import headline_row

    return {**headline_row(metrics_dir, variant), **yes_rate_row(metrics_dir, variant)}


def aggregate(sweep_dir: Path, points: Sequence[Mapping[str, Any]], variant: str, *,
              seeds: Sequence[int] | None = None, base: Path | None = None) -> pd.DataFrame:
    """One row per grid point with the headline metrics of `variant` (with `seeds`: their mean, and a
    "<metric> sd" column each), then the base run's reference and `variant` rows; summary.csv/.md/.png."""
    from avere_utils.report.tables import markdown_table

    rows = []
    metric_cols: list[str] = []
    for point in points:
        point_dir = sweep_dir / point_name(point)
        keys = {k.rpartition(".")[2]: (_value_name(v) if isinstance(v, (dict, list)) else v) for k, v in point.items()}
        if seeds is None:
            m = _metrics_row(point_dir / "metrics", variant)
            rows.append({BASE_ROWS: point_name(point), **keys, **m})
        else:
            per_seed = pd.DataFrame([_metrics_row(point_dir / f"seed-{k}" / "metrics", variant) for k in seeds],
                                    dtype=float)
            mean = per_seed.mean(skipna=True)
            sd = per_seed.std(ddof=1, skipna=True) if len(seeds) > 1 else per_seed.std(ddof=0)
            rows.append({BASE_ROWS: point_name(point), **keys, **mean.to_dict(), "n_seeds": int(len(seeds)),
                         **{f"{c} sd": sd[c] for c in per_seed.columns}})
        metric_cols = metric_cols or [c for c in rows[-1] if c not in keys and c != BASE_ROWS
                                      and c != "n_seeds" and not c.endswith(" sd")]
    grid_table = pd.DataFrame(rows)
    extra = []
    if base is not None:
        for v, name in (("reference", "reference (base run)"), (variant, f"{variant} (base run)")):
            if v == "reference" and variant == "reference":
                continue
            extra.append({BASE_ROWS: name, **_metrics_row(base / "metrics", v)})
    table = pd.concat([grid_table, pd.DataFrame(extra)], ignore_index=True) if extra else grid_table
    sweep_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(sweep_dir / "summary.csv", index=False)
    shown = table.drop(columns=[c for c in table.columns if c.endswith(" sd")])
    if seeds is not None:  # mean ± sd in one cell
        shown = shown.astype(object)
        for c in metric_cols:
            if f"{c} sd" in table:
                shown[c] = [_pm(m, s) for m, s in zip(table[c], table[f"{c} sd"])]
    atomic_write_text(sweep_dir / "summary.md", markdown_table(shown))
    _plot(grid_table, list(points[0]) if points else [], sweep_dir / "summary.png",
          base_rows=pd.DataFrame(extra), seeds=seeds)
    return table


def _pm(mean: Any, sd: Any) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    return f"{mean:.2f}" if sd is None or pd.isna(sd) else f"{mean:.2f} ± {sd:.2f}"


def yes_rate_row(metrics_dir: Path, variant: str, mode: str | None = None) -> dict[str, float | None]:
    """EmoReAlM stress items answered Yes, per kind (the headline mode's unless `mode` is given)."""
    from avere_utils.report.story import KINDS, yes_rate
    from avere_utils.report.tables import load_metrics

    m = load_metrics(metrics_dir).get(("emorealm", variant))
    return {f"Yes {kind}": yes_rate(m, kind, mode) for kind in KINDS}


def panel_layout(n: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, cols) of a grid holding n panels, at most max_cols wide."""
    cols = max(1, min(max_cols, n))
    return (n + cols - 1) // cols, cols


def _plot(table: pd.DataFrame, keys: list[str], path: Path, base_rows: pd.DataFrame | None = None,
          seeds: Sequence[int] | None = None) -> None:
    """One panel per metric on its own y scale, against the swept value (a line over a numeric single
    key; one point per grid point, labelled, otherwise), with error bars of one sd over the seeds when there
    are several, and the base run's reference (dashed) and variant (dotted) as horizontal lines.  EMER
    scores (1-10) and percentages never share an axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k.rpartition(".")[2] for k in keys]
    skip = set(keys) | {BASE_ROWS, "n_seeds"}
    metrics = [c for c in table.columns if c not in skip and not c.endswith(" sd") and table[c].notna().any()]
    if table.empty or not metrics or not keys:
        return
    numeric = len(keys) == 1 and pd.api.types.is_numeric_dtype(table[keys[0]])
    if numeric:
        order = table.sort_values(keys[0])
        x, xlabel, ticks = order[keys[0]].to_numpy(), keys[0], None
    else:
        order = table
        x = list(range(len(table)))
        xlabel, ticks = ", ".join(keys), order[keys].astype(str).agg(", ".join, axis=1).tolist()
    nrows, ncols = panel_layout(len(metrics))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    styles = (("--", "tab:gray"), (":", "tab:red"))
    for ax, col in zip(axes.flat, metrics):
        y = order[col].to_numpy(dtype=float)
        if f"{col} sd" in order and seeds is not None and len(seeds) > 1:
            ax.errorbar(x, y, yerr=order[f"{col} sd"].to_numpy(dtype=float), marker="o", lw=1.4, capsize=3,
                        label=f"mean ± sd ({len(seeds)} seeds)")
        else:
            ax.plot(x, y, marker="o", lw=1.4, label="sweep")
        if base_rows is not None and not base_rows.empty and col in base_rows:
            for (_, row), (ls, color) in zip(base_rows.iterrows(), styles):
                if pd.notna(row[col]):
                    ax.axhline(float(row[col]), ls=ls, color=color, lw=1, label=row[BASE_ROWS])
        ax.set_title(col, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        if ticks is not None:
            ax.set_xticks(x)
            ax.set_xticklabels(ticks, rotation=30, fontsize=7)
        elif len(x) <= 8:
            ax.set_xticks(x)
        ax.tick_params(labelsize=7)
        ax.margins(y=0.15)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if handles:
        fig.legend(handles, labels, loc="lower right", fontsize=7)
    fig.suptitle("Sweep: each headline metric and Yes-rate against the swept value (own scale per panel)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
