"""Ablation sweeps: train and evaluate one variant at every point of a parameter grid.

Each point runs the per-variant stages (training, evaluations) into <run>/sweep/<point>/, sharing the
base run's data, pairs and reference model through symlinks, so nothing upstream is recomputed.
A point whose `point.json` says done is not rerun.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from avere_utils import config, runner
from avere_utils.paths import atomic_write_text, repo_path

SHARED = ("world", "manifests", "pairs", "cache", "models/reference")


def point_name(point: Mapping[str, Any]) -> str:
    return "_".join(f"{k.rpartition('.')[2]}-{v}" for k, v in point.items())


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _link_shared(base: Path, point_dir: Path) -> None:
    for rel in SHARED:
        src, dst = base / rel, point_dir / rel
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, dst, target_is_directory=True)


def sweep(profile: str, grid: Mapping[str, Sequence[Any]], *, variants: Sequence[str] = ("avem_dpo",),
          out: str | None = None, folder: str = "sweep", overrides: Mapping[str, Any] | None = None,
          echo=print) -> pd.DataFrame:
    run_cfg = config.load_run(profile)
    base = repo_path(out or run_cfg.run_dir)
    stages = [s for s in run_cfg.stages if s in run_cfg.per_train_variant or s in run_cfg.per_eval_variant]
    missing = [rel for rel in ("manifests", "pairs", "models/reference") if not (base / rel).exists()]
    if missing:
        raise config.ConfigError(
            f"sweep needs the base run's {', '.join(missing)} under {base}; run "
            f"`avere-kit run --profile {profile} --only 01_data_preparation 02_pair_construction 03_reference_model` first")
    runner.check_overrides(stages, {**grid, **(overrides or {})})
    points = grid_points(grid)
    for i, point in enumerate(points, 1):
        point_dir = base / folder / point_name(point)
        status = point_dir / "point.json"
        if status.is_file() and json.loads(status.read_text()).get("done"):
            echo(f"sweep point {i}/{len(points)} {point_name(point)}: done before, skipped")
            continue
        echo(f"sweep point {i}/{len(points)} {point_name(point)}")
        point_dir.mkdir(parents=True, exist_ok=True)
        _link_shared(base, point_dir)
        runner.run(profile, only=stages, variants=list(variants), out=str(point_dir),
                   overrides={**(overrides or {}), **point}, echo=lambda s: echo("  " + s))
        atomic_write_text(status, json.dumps({"point": point, "variants": list(variants), "done": True}, indent=1))
    return aggregate(base / folder, points, variants[0])


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


def aggregate(sweep_dir: Path, points: Sequence[Mapping[str, Any]], variant: str) -> pd.DataFrame:
    """One row per grid point with the headline metrics of `variant`; summary.csv/.md/.png."""
    from avere_utils.report.tables import headline_row, markdown_table

    rows = []
    for point in points:
        metrics_dir = sweep_dir / point_name(point) / "metrics"
        rows.append({**{k.rpartition(".")[2]: v for k, v in point.items()}, **headline_row(metrics_dir, variant),
                     **yes_rate_row(metrics_dir, variant)})
    table = pd.DataFrame(rows)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(sweep_dir / "summary.csv", index=False)
    atomic_write_text(sweep_dir / "summary.md", markdown_table(table))
    _plot(table, list(points[0]) if points else [], sweep_dir / "summary.png")
    return table


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


def _plot(table: pd.DataFrame, keys: list[str], path: Path) -> None:
    """One panel per metric on its own y scale, against the swept value (a line over a numeric single
    key; one point per grid point, labelled, otherwise).  EMER scores (1-10) and percentages never
    share an axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k.rpartition(".")[2] for k in keys]
    metrics = [c for c in table.columns if c not in keys and table[c].notna().any()]
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
    for ax, col in zip(axes.flat, metrics):
        ax.plot(x, order[col].to_numpy(dtype=float), marker="o", lw=1.4)
        ax.set_title(col, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        if ticks is not None:
            ax.set_xticks(x)
            ax.set_xticklabels(ticks, rotation=30, fontsize=7)
        elif len(x) <= 8:
            ax.set_xticks(x)
        ax.tick_params(labelsize=7)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("Sweep: each headline metric and Yes-rate against the swept value (own scale per panel)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
