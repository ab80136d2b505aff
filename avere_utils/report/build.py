"""report.md for a run: the paper-shaped tables per scoring mode, gains over the reference, the
ablation table, the paper's reported numbers (separately, labelled), figures, settings and wall times."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from avere_utils.paths import REPO_ROOT, atomic_write_text
from avere_utils.report import descriptions, discrimination, figures, story
from avere_utils.report.params import ResultsParams
from avere_utils.report.tables import (
    PAPER_SCORING_MODE,
    PARTIAL_MARK,
    TABLE2_COLUMNS,
    TABLE3_COLUMNS,
    ablation_table,
    load_metrics,
    markdown_table,
    metric,
    mode_label,
    paper_reported,
    relative_gain,
    table2,
    table3,
    with_emer_coverage,
)


@dataclass
class Report:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    missing: list[str] = field(default_factory=list)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def error_rate_table(metrics: dict, variants: list[str]) -> pd.DataFrame:
    """Every `*_rate` number the evaluation wrote for EmoReAlM and EMER, per variant."""
    rows: dict[str, dict[str, float]] = {}
    for v in variants:
        row: dict[str, float] = {}
        for bench in ("emorealm", "emer"):
            m = metrics.get((bench, v), {})
            for k, val in {**m.get("rates", {}), **m}.items():
                if k.endswith("_rate") and isinstance(val, (int, float)):
                    row[f"{bench}:{k}"] = float(val)
        rows[v] = row
    return pd.DataFrame.from_dict(rows, orient="index")


MCQ_READING_COLUMNS = {"pct_text_is_a_choice": "text is a choice", "pct_text_right": "text right",
                       "pct_text_right_if_choices_ignored": "text right if the choices were ignored",
                       "pct_text_is_a_present_cue": "text is a cue the clip shows",
                       "pct_letter_is_the_texts": "letter is the text's"}


def mcq_reading_section(metrics: dict, variants: Sequence[str], baseline: str) -> tuple[list[str], pd.DataFrame | None]:
    """The generated basic-MCQ answers split into their text and their letter (evaluation/mcq_reading.py)."""
    rows = {v: metrics[("emorealm", v)]["mcq_reading"] for v in variants
            if (metrics.get(("emorealm", v)) or {}).get("mcq_reading")}
    if not rows:
        return [], None
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(MCQ_READING_COLUMNS)).rename(
        columns=MCQ_READING_COLUMNS).dropna(axis=1, how="all")
    md = ["## Does the model read the choices? (EmoReAlM basic audio + video, generated answers)", "",
          "Strict mode reads only the letter of an answer taught as \"a breathy voice (C)\". Here the two halves "
          "are counted apart, in percent of the basic multiple-choice items: is the written text one of the four "
          "choices, and the right one; had the model written one of the clip's present cues at random and not "
          "looked at the choices at all, how often would the text be right (from the clips' cue records); and, "
          "of the answers whose text is a choice, is the letter after it that choice's letter (chance 25). "
          "docs/models.md says what was tried.", "", markdown_table(table, "{:.1f}", index=True), ""]
    r = rows.get(baseline) or {}
    if r.get("pct_text_right_if_choices_ignored") is not None:
        letter = (f"the letter is the text's in {r['pct_letter_is_the_texts']:.1f} % ({r['n_letter_checked']} answers)"
                  if r.get("pct_letter_is_the_texts") is not None else "no answer wrote a choice's text and a letter")
        md += [f"`{baseline}`: the text is right in {r['pct_text_right']:.1f} % of the answers, against "
               f"{r['pct_text_right_if_choices_ignored']:.1f} % for a model that ignores the choices; {letter}.", ""]
    return md, table


def seed_summary(seeds_dir: Path, variants: list[str], mode: str | None,
                 base_metrics: Path | None = None) -> pd.DataFrame | None:
    """Mean and standard deviation of the headline numbers over the base run (its own seed) and the
    reruns under seeds/<point>/metrics (`avere-kit seeds`)."""
    runs = sorted(p for p in seeds_dir.glob("*/metrics") if p.is_dir()) if seeds_dir.is_dir() else []
    if base_metrics is not None and runs:
        runs = [base_metrics, *runs]
    if len(runs) < 2:
        return None
    frames = []
    for r in runs:
        m = load_metrics(r)
        rows = {v: {col: metric(m.get((b, v)), k, mode) for col, b, k in TABLE2_COLUMNS + TABLE3_COLUMNS}
                for v in variants if any(key[1] == v for key in m)}
        frames.append(pd.DataFrame.from_dict(rows, orient="index").assign(seed_run=r.parent.name))
    allruns = pd.concat(frames).rename_axis("variant").reset_index()
    numeric = allruns.drop(columns="seed_run").groupby("variant", sort=False)
    mean, std, n = numeric.mean(), numeric.std(), numeric.count()
    out = mean.copy().astype(object)
    for c in mean.columns:
        out[c] = [("-" if pd.isna(m) else f"{m:.2f} ± {s:.2f} (n={k})" if k > 1 else f"{m:.2f} (n=1)")
                  for m, s, k in zip(mean[c], std[c], n[c])]
    return out.loc[[v for v in variants if v in out.index]]


def story_section(P: ResultsParams, rep: Report, fig_dir: Path) -> list[str]:
    """The story, from this run and its seeds/ reruns: the table (mean ± sd), each
    claim with its verdict, which error each ablation costs most, and the Yes-rate figure."""
    values, table = story.load_story(P.run_dir, P.seeds_dir, P.variants, P.story_mode)
    if table.empty:
        return []
    rep.tables["story"], rep.tables["story_values"] = table, values
    checks = story.story_checks(table, reference=P.baseline)
    rep.tables["story_checks"] = pd.DataFrame(
        [{"group": g, "claim": c.claim, "measured": c.measured, "verdict": c.verdict}
         for g, items in checks.items() for c in items])
    forms = [(f, v) for f, v in story.FORMS if v in set(table["variant"])]
    costs = pd.concat({f"{v} ({f})": story.ablation_costs(table, v) for f, v in forms} or
                      {"avem_dpo": story.ablation_costs(table)}, names=["against"])
    rep.tables["ablation_costs"] = costs
    n_runs = int(table["n"].max())
    md = [f"## The story, measured (mode `{P.story_mode}`, {n_runs} run(s) per trained variant)", "",
          f"Mean ± sample sd over this run and the reruns in `{P.seeds_dir}` (`avere-kit seeds`); the reference "
          f"is not retrained by the seeds, so it has one run. Yes-rates: share of EmoReAlM stress items of each "
          f"kind answered Yes (right answer: Yes for relevant, No for spurious and hallucination). EMER scores "
          f"1-10 (higher = fewer such errors). `HO`: the same stress questions in held-out wordings that no "
          f"training text uses (notebook 07). Every verdict below is computed from these numbers.", "",
          "TPD readings (`tpd_form`, docs/method.md): "
          + "; ".join(f"`{v}` trains `tpd_form: {f}`" for f, v in story.FORMS)
          + ". The ablations (-PMP, -ERP, -TPD) use the default form, `literal`; each is compared with every form.", "",
          markdown_table(story.wide_table(table, P.variants), index=True), ""]
    md += story.markdown_lines(checks)
    if not costs.empty:
        md += ["Which error each ablation costs most, against each form (extra error in points over it: "
               "relevant = wrongly No, spurious / hallucination = wrongly Yes):", "",
               markdown_table(costs, "{:+.1f}", index=True), ""]
    f = figures.story_yes_rates(table, fig_dir / "story_yes_rates.png", P.variants, P.story_mode)
    if f:
        rep.figures["story_yes_rates"] = f
    return md + discrimination_section(P, rep, fig_dir, table)


def discrimination_section(P: ResultsParams, rep: Report, fig_dir: Path, story_table: pd.DataFrame) -> list[str]:
    """The stress answers split into discrimination and a shift to No (report/discrimination.py), from the
    scoring-mode scores in the predictions of this run and its seeds/ reruns."""
    values = discrimination.discrimination_values(P.run_dir, P.seeds_dir, P.variants, P.baseline)
    if values.empty:
        return []
    table = story.story_table(values, P.variants, discrimination.QUANTITIES)
    rep.tables["discrimination"] = table
    forms = [(f, v) for f, v in story.FORMS if v in set(table["variant"])] or [("", "avem_dpo")]
    checks = {f"At the reference's relevant Yes-rate{f' (tpd_form {f}: {v})' if f else ''}":
              discrimination.check_matched(table, v, P.baseline, story.FIX_DROP_MIN, story.HELDOUT_DROP_MIN)
              for f, v in forms}
    rep.tables["discrimination_checks"] = pd.DataFrame(
        [{"group": g, "claim": c.claim, "measured": c.measured, "verdict": c.verdict}
         for g, items in checks.items() for c in items])
    md = ["## Discrimination, apart from the shift to No (answer log-likelihoods)", "",
          "A stress item is answered Yes when log p(Yes) > log p(No). A Yes-rate can fall because the model tells "
          "relevant cues from spurious and hallucinated ones, or because it says No more often to every question. "
          "`AUC rel>spur` / `AUC rel>hal`: the chance (%) that a relevant item's Yes log-odds is above a spurious "
          "(hallucination) item's; no threshold enters, a shift leaves it unchanged, 50 = no discrimination. "
          "`matched Yes ...`: the Yes-rates at the threshold that keeps the variant's relevant Yes-rate at the "
          "reference's. `HO`: the held-out wordings. Mean ± sd over the same runs as the story table.", "",
          markdown_table(story.wide_table(table, P.variants, discrimination.QUANTITIES), index=True), "",
          "Per modality of the asked cue (audio stress items, video stress items):", "",
          markdown_table(story.wide_table(story.story_table(values, P.variants, discrimination.MODALITY_QUANTITIES),
                                          P.variants, discrimination.MODALITY_QUANTITIES), index=True), ""]
    md += story.markdown_lines(checks)
    f = figures.matched_yes_rates(story_table, table, fig_dir / "matched_yes_rates.png", P.variants)
    if f:
        rep.figures["matched_yes_rates"] = f
    return md + media_sensitivity_section(P, rep) + reference_seed_section(P, rep)


def media_sensitivity_section(P: ResultsParams, rep: Report) -> list[str]:
    """Does a stress answer change with the media (evaluation/media_sensitivity.py)?"""
    values = discrimination.media_sensitivity_values(P.run_dir, P.seeds_dir, P.variants)
    if values.empty:
        return []
    table = story.story_table(values, P.variants, discrimination.FLIP_QUANTITIES)
    rep.tables["media_sensitivity"] = table
    return ["## Does the answer come from the media? (media sensitivity)", "",
            "Each stress item scored again on its counterfactual clip (the asked cue toggled: a relevant cue "
            "removed, an absent one added, the context replaced). `flip ...`: the share (%) of answers whose "
            "Yes/No changes from the real to the counterfactual clip; the right answer flips for relevant and "
            "hallucination items and stays No for spurious ones. `Yes text` / `Yes noise`: the Yes-rate over all "
            "stress items without media and with the asked modality replaced by noise. Mean ± sd as above.", "",
            markdown_table(story.wide_table(table, P.variants, discrimination.FLIP_QUANTITIES), index=True), ""]


def reference_seed_section(P: ResultsParams, rep: Report) -> list[str]:
    """The story over references trained with other seeds (`avere-kit reference-seeds`)."""
    values = discrimination.reference_seed_values(P.run_dir, P.variants, P.baseline)
    if values.empty or values["run"].nunique() < 2:
        return []
    table = story.story_table(values, P.variants, discrimination.REFERENCE_SEED_QUANTITIES)
    rep.tables["reference_seeds"] = table
    per_seed = values.pivot_table(index=["run", "variant"], columns="quantity", values="value")
    per_seed = per_seed[[q for q in discrimination.REFERENCE_SEED_QUANTITIES if q in per_seed.columns]]
    return ["## Over reference seeds (the reference itself retrained)", "",
            f"The base run and `reference_seeds/seed-K/` ({values['run'].nunique()} references: stage 03's seed "
            "changes the tiny thinker's initialisation and the SFT's data order; each variant trained once on each). "
            "Mean ± sd over the references:", "",
            markdown_table(story.wide_table(table, P.variants, discrimination.REFERENCE_SEED_QUANTITIES), index=True), "",
            "Per reference seed:", "", markdown_table(per_seed, "{:.1f}", index=True), ""]


def descriptions_section(P: ResultsParams, rep: Report, trained: Sequence[str], n: int = 6) -> list[str]:
    """The reference's EMER description of `n` held-out clips next to each TPD form's, every cited cue
    marked (report/descriptions.py)."""
    forms = [v for _, v in story.FORMS if v in trained]
    shown = [P.baseline, *(forms or trained[:3])]
    comp = descriptions.compare_descriptions(P.run_dir, shown, n)
    if comp.empty:
        return []
    rep.tables["descriptions"] = comp
    return [f"## What the models wrote about {comp['clip'].nunique()} held-out EMER clips", "",
            "Greedy descriptions of test clips no model trained on. Each cited cue is marked from the clip's "
            "cue record: [✓] present and typical of the emotion, [ABSENT] typical but not in the clip (a "
            "hallucination), [context] in the clip but irrelevant (a spurious association), [context, not in "
            "clip] a background or sound the clip does not have (both at once: the training source's context "
            "cited from the text prior), [not in clip] another emotion's cue.", "",
            *descriptions.markdown_lines(comp)]


def build_report(P: ResultsParams) -> Report:
    run_dir = Path(P.run_dir)
    metrics = load_metrics(run_dir / "metrics")
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rep = Report()
    present = {v for (_, v) in metrics}
    rep.missing = [v for v in P.variants if v not in present]
    variants = [v for v in P.variants if v in present]

    md: list[str] = [f"# AVERE kit report: `{run_dir.name}`", "",
                     f"Produced by `08_results_and_ablations` from the metrics in `{run_dir}/metrics` "
                     f"(commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). "
                     f"Every number in the 'this run' tables was computed by this run's code; the paper's "
                     f"numbers are in their own, labelled section.", ""]
    if rep.missing:
        md += [f"Variants without metrics (not shown): {', '.join(rep.missing)}.", ""]

    for mode in P.modes:
        t2, t3 = table2(metrics, variants, mode), table3(metrics, variants, mode)
        rep.tables[f"table2_{mode}"], rep.tables[f"table3_{mode}"] = t2, t3
        md += [f"## This run, scoring mode {mode_label(mode)}", "",
               "Table 2 shape (percent; EMER 1-10, same judge for all modes; EMER cov % = items judged, "
               f"{PARTIAL_MARK} = judged on fewer than all items):", "",
               markdown_table(with_emer_coverage(t2, metrics), index=True), "", "Table 3 shape (EmoReAlM accuracy, percent):", "",
               markdown_table(t3, index=True), ""]
        if P.baseline in t2.index:
            gains = pd.concat([relative_gain(t2, P.baseline), relative_gain(t3, P.baseline)], axis=1)
            rep.tables[f"gain_{mode}"] = gains
            md += [f"Relative change over `{P.baseline}` (percent of the baseline value):", "",
                   markdown_table(gains, "{:+.1f}", index=True), ""]

    abl = ablation_table(metrics, P.headline_mode)
    rep.tables["ablation"] = abl
    md += [f"## Ablation (this run, mode `{P.headline_mode}`)", "", markdown_table(abl, index=True), ""]

    rates = error_rate_table(metrics, variants)
    rep.tables["error_rates"] = rates
    if not rates.empty and rates.notna().any().any():
        md += ["## Hallucination and spurious-association rates (this run; lower is better)", "",
               markdown_table(rates, "{:.3f}", index=True), ""]

    reading_md, reading = mcq_reading_section(metrics, variants, P.baseline)
    if reading is not None:
        rep.tables["mcq_reading"] = reading
        md += reading_md

    seeds = seed_summary(Path(P.seeds_dir), P.variants, P.headline_mode, base_metrics=run_dir / "metrics")
    if seeds is not None:
        rep.tables["seeds"] = seeds
        md += [f"## Mean ± standard deviation over training seeds (mode `{P.headline_mode}`)", "",
               f"This run (seed {P.seed}) and the reruns in `{P.seeds_dir}`: the same data, pairs and reference "
               f"model; DPO training (LoRA init, data order) and evaluation repeated per seed. The reference "
               f"model is not retrained, so it appears once.", "", markdown_table(seeds, index=True), ""]

    md += story_section(P, rep, fig_dir)
    md += descriptions_section(P, rep, [v for v in variants if v != P.baseline])

    head2, head3 = rep.tables.get(f"table2_{P.headline_mode}"), rep.tables.get(f"table3_{P.headline_mode}")
    for name, table, title in (("bars_table2", head2, "Zero-shot benchmarks"), ("bars_table3", head3, "EmoReAlM")):
        if table is not None:
            f = figures.grouped_bars(table, fig_dir / f"{name}.png", f"{title} (mode {P.headline_mode})")
            if f:
                rep.figures[name] = f
    logs = figures.read_train_logs(run_dir / "train_logs", [v for v in P.variants if v != "reference"])
    f = figures.training_curves(logs, fig_dir / "training_curves.png")
    if f:
        rep.figures["training_curves"] = f
    f = figures.margin_curves(logs, fig_dir / "margins.png", [v for v in P.variants if v != "reference"])
    if f:
        rep.figures["margins"] = f
    forms = [v for _, v in story.FORMS if v in P.variants]
    f = figures.margin_curves(logs, fig_dir / "margins_tpd_forms.png", forms) if len(forms) > 1 else None
    if f:
        rep.figures["margins_tpd_forms"] = f
    f = figures.error_rates(rates, fig_dir / "error_rates.png")
    if f:
        rep.figures["error_rates"] = f
    if rep.figures:
        md += ["## Figures", ""] + [f"![{k}](figures/{p.name})" for k, p in rep.figures.items()] + [""]

    md += ["## Reported by the paper (not produced by this kit)", "",
           "Copied from the paper (Tables 2, 3 and the ablation text) for comparison; real models and data, "
           "not the synthetic world. Scored by the released evaluation code: the comparable numbers of this "
           f"kit are those of scoring mode {mode_label(PAPER_SCORING_MODE)}.", ""]
    for key in ("table2", "table3", "ablation"):
        md += [f"Paper {key}:", "", markdown_table(paper_reported(key), index=True), ""]

    md += ["## Settings", ""]
    for (bench, v), m in sorted(metrics.items()):
        if v == (variants[0] if variants else None):
            proto = {k: m.get(k) for k in ("protocol", "scoring_mode", "n_items", "coverage", "judge") if k in m}
            md += [f"- `{bench}`: `{json.dumps(proto, default=str)[:400]}`"]
    md += [""]
    times_file = run_dir / "run_times.json"
    if times_file.is_file():
        times = pd.DataFrame(json.loads(times_file.read_text()))
        per_stage = times.groupby("stage", sort=False)["seconds"].agg(["count", "sum"]).rename(
            columns={"count": "notebooks", "sum": "seconds"})
        rep.tables["wall_times"] = per_stage
        md += ["## Wall times", "", markdown_table(per_stage, "{:.1f}", index=True), "",
               f"Total: {times['seconds'].sum():.1f} s summed over {len(times)} notebook executions. With "
               "`variant_jobs` > 1 (run.yaml) a stage's variants run side by side, so the run's wall time is "
               "less than this sum: `run.log` has it (`total`).", ""]
    rep.markdown = "\n".join(md)
    atomic_write_text(P.report_file, rep.markdown)
    return rep
