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
from avere_utils.report import bars, descriptions, discrimination, figures, first_screen, story
from avere_utils.report.first_screen import paper_column_names
from avere_utils.report.params import ResultsParams
from avere_utils.report.tables import (
    EMER_COLUMNS,
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
          f"Mean ± sample sd over this run and the reruns in `{shown_path(P.seeds_dir, P.run_dir)}` "
          f"(`avere-kit seeds`); the reference "
          f"is not retrained by the seeds, so it has one run. Yes-rates: share of EmoReAlM stress items of each "
          f"kind answered Yes (right answer: Yes for relevant, No for spurious and hallucination). EMER scores "
          f"1-10 (higher = fewer such errors). `HO`: the same stress questions in held-out wordings that no "
          f"training text uses (notebook 07). Every verdict below is computed from these numbers.", "",
          "TPD readings (`tpd_form`, docs/method.md): "
          + "; ".join(f"`{v}` trains `tpd_form: {f}`" for f, v in story.FORMS)
          + ". The ablations (-PMP, -ERP, -TPD) use the default form, `literal`; each is compared with every form.", "",
          markdown_table(story.wide_table(table, P.variants), index=True), ""]
    md += _figure_lines(Path(P.run_dir), "01_frames", "What the models see: 8 frames of one clip per benchmark of the "
                        "synthetic world (stage 01): a face whose parts are the emotion's cues, on a background with "
                        "context objects. A stress question asks whether one such cue is shown.")
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
        md += ["![matched_yes_rates](figures/matched_yes_rates.png)", ""]
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
            markdown_table(story.wide_table(table, P.variants, discrimination.FLIP_QUANTITIES), index=True), "",
            *_figure_lines(Path(P.run_dir), "pairs_pmp_inputs",
                           "The counterfactual inputs (stage 02): the clip the preference pairs contrast with the real "
                           "one, the same emotion with the cited cue toggled; the flips above are measured on such clips.")]


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


def shown_path(path: str | Path, run_dir: str | Path) -> str:
    """`path` relative to the run folder (the run's name for the run folder itself), else to the repository
    root; an absolute path of the machine never reaches the report."""
    p, run = Path(path).resolve(), Path(run_dir).resolve()
    if p == run:
        return "."
    for base, prefix in ((run, ""), (REPO_ROOT.resolve(), "")):
        try:
            return prefix + p.relative_to(base).as_posix()
        except ValueError:
            continue
    return p.name


def strip_machine_paths(text: str, run_dir: str | Path) -> str:
    """The run folder's absolute path (resolved and as given) -> relative to it; the repository root -> `.`."""
    run = Path(run_dir)
    for a in sorted({str(run.resolve()), str(run.absolute())}, key=len, reverse=True):
        text = text.replace(a + "/", "").replace(a, ".")
    return text.replace(str(REPO_ROOT.resolve()) + "/", "").replace(str(REPO_ROOT.resolve()), ".")


def _figure_lines(run_dir: Path, name: str, caption: str) -> list[str]:
    f = run_dir / "figures" / f"{name}.png"
    return [caption, "", f"![{name}](figures/{name}.png)", ""] if f.is_file() else []


CONFUSION_BENCHES = ("dfew", "ravdess", "mer2023")


def appendix_figures(run_dir: Path, fig_dir: Path, variants: Sequence[str], rep: Report) -> list[str]:
    """The per-variant figures of the evaluation notebooks: the confusion matrices as one grid, the others
    linked."""
    md = []
    rows = [[fig_dir / f"confusion-{b}-{v}.png" for v in variants] for b in CONFUSION_BENCHES]
    f = figures.png_grid(rows, fig_dir / "confusion_grid.png", list(CONFUSION_BENCHES), list(variants))
    if f:
        rep.figures["confusion_grid"] = f
        md += ["Confusion matrices (rows: benchmark, columns: variant; stage 05, scoring mode of its notebook):", "",
               "![confusion_grid](figures/confusion_grid.png)", ""]
    links = []
    for prefix, what in (("classification-modes", "classification per scoring mode"),
                         ("emorealm-stress-kinds", "EmoReAlM stress kinds per mode"), ("emorealm", "EmoReAlM tasks"),
                         ("emer", "EMER scores"), ("margins", "reward margins")):
        found = [v for v in variants if (fig_dir / f"{prefix}-{v}.png").is_file()]
        if found:
            links.append(f"- {what}: " + ", ".join(f"[{v}](figures/{prefix}-{v}.png)" for v in found))
    if links:
        md += ["Per-variant figures of the notebooks:", "", *links, ""]
    return md


def settings_lines(metrics: dict, run_dir: Path) -> list[str]:
    """Each benchmark's protocol, scoring mode, size, coverage and judge, whole, as JSON (one per benchmark:
    the settings are the same for every variant)."""
    md, seen = ["## Settings", ""], set()
    for (bench, _), m in sorted(metrics.items()):
        proto = {k: m.get(k) for k in ("protocol", "scoring_mode", "n_items", "coverage", "judge", "conditions")
                 if m.get(k) not in (None, {}, [])}
        if bench in seen or not proto:
            continue
        seen.add(bench)
        md += [f"`{bench}`:", "", "```json", strip_machine_paths(json.dumps(proto, indent=1, default=str), run_dir),
               "```", ""]
    return md


def build_report(P: ResultsParams) -> Report:
    """report.md, section by section: the first screen (summary, story figure, claims), the bars per TPD form,
    the story and its detail, the descriptions, training, then the appendix (paper-shaped tables per mode,
    ablation, error rates, MCQ reading, seeds, figures, the paper's numbers, settings, wall times)."""
    run_dir = Path(P.run_dir)
    metrics = load_metrics(run_dir / "metrics")
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rep = Report()
    present = {v for (_, v) in metrics}
    rep.missing = [v for v in P.variants if v not in present]
    variants = [v for v in P.variants if v in present]
    md = first_screen_section(P, rep, fig_dir)
    md += bars_per_form_section(rep.tables["bars"])
    md += story_section(P, rep, fig_dir)
    md += descriptions_section(P, rep, [v for v in variants if v != P.baseline])
    md += training_section(P, rep, fig_dir)
    md += mode_tables_section(P, rep, metrics, variants)
    md += ablation_section(P, rep, metrics)
    md += error_rates_section(rep, metrics, variants)
    reading_md, reading = mcq_reading_section(metrics, variants, P.baseline)
    if reading is not None:
        rep.tables["mcq_reading"] = reading
        md += reading_md
    md += seeds_section(P, rep)
    md += figures_section(P, rep, fig_dir, variants)
    md += paper_section()
    md += settings_lines(metrics, run_dir)
    md += wall_times_section(rep, run_dir)
    rep.markdown = strip_machine_paths("\n".join(md), run_dir)
    atomic_write_text(P.report_file, rep.markdown)
    return rep


def first_screen_section(P: ResultsParams, rep: Report, fig_dir: Path) -> list[str]:
    """The title, the summary, the story figure and the claims table; the bars' checks go to
    rep.tables["bars"]."""
    run_dir = Path(P.run_dir)
    values = bars.all_values(run_dir, P.seeds_dir, P.variants, P.story_mode, P.baseline)
    bar_table = bars.bars_table(values, P.variants)
    checks = bars.evaluate(run_dir, P.seeds_dir, P.variants, P.story_mode, P.baseline)
    rep.tables["bars"] = checks
    full = next((v for _, v in bars.trained_forms(bar_table)), "avem_dpo") if not bar_table.empty else "avem_dpo"
    md: list[str] = [f"# AVERE kit report: `{run_dir.name}`", "",
                     f"Produced by `08_results_and_ablations` from this run folder's `metrics/` and `predictions/` "
                     f"(commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); story mode "
                     f"`{P.story_mode}`. The paper's own numbers are labelled `paper`.", "",
                     "## Summary", ""]
    if bar_table.empty:
        md += ["No stress-item readings in this run (stages 07 and its predictions missing).", ""]
    else:
        md += [*first_screen.summary_lines(bar_table, checks, P.variants, P.baseline, full), ""]
    f = figures.story_figure(bar_table, fig_dir / "story_auc_flip.png", P.variants, P.baseline) \
        if not bar_table.empty else None
    if f:
        rep.figures["story_auc_flip"] = f
        md += ["![story_auc_flip](figures/story_auc_flip.png)", ""]
    if not bar_table.empty:
        claims = first_screen.claims_table(bar_table, checks, full)
        rep.tables["claims"] = claims
        md += [f"## The paper's claims and the kit's bars (`{full}`, mode `{P.story_mode}`)", "",
               markdown_table(claims), "",
               "`paper`: real data and a 7B model, scored by the released code: compare directions, not sizes. "
               "The bars for every TPD form and every reference seed follow below.", ""]
    if rep.missing:
        md += [f"Variants without metrics (not shown): {', '.join(rep.missing)}.", ""]
    return md


def bars_per_form_section(checks: pd.DataFrame) -> list[str]:
    """Each bar's verdict per TPD form, and per reference seed where the run has them."""
    if checks.empty:
        return []
    md = ["## The bars per TPD form", ""]
    for (form, v), part in checks.groupby(["form", "variant"], sort=False):
        md += [f"**`{v}`**" + (f" (`tpd_form: {form}`)" if form else ""), ""]
        seed_cols = [c for c in part.columns if c.startswith("holds seed")]
        for _, r in part.iterrows():
            extra = ""
            if seed_cols:
                per = ", ".join(f"{c[len('holds '):]}: {bars.verdict(r[c])}" for c in seed_cols)
                extra = f"; every reference seed: **{bars.verdict(r['holds every reference seed'])}** ({per})"
            md.append(f"- {r.claim}: {r.measured} -> **{bars.verdict(r.holds)}**{extra}")
        md.append("")
    return md


def training_section(P: ResultsParams, rep: Report, fig_dir: Path) -> list[str]:
    """The per-term losses and reward margins over optimizer steps, from train_logs/."""
    trained = [v for v in P.variants if v != "reference"]
    logs = figures.read_train_logs(Path(P.run_dir) / "train_logs", trained)
    train_md = _drawn(rep, "training_curves", figures.training_curves(logs, fig_dir / "training_curves.png"))
    train_md += _drawn(rep, "margins", figures.margin_curves(logs, fig_dir / "margins.png", trained))
    forms = [v for _, v in story.FORMS if v in P.variants]
    if len(forms) > 1:
        train_md += _drawn(rep, "margins_tpd_forms", figures.margin_curves(logs, fig_dir / "margins_tpd_forms.png", forms))
    if not train_md:
        return []
    return ["## Training", "", "Per-term losses and reward margins over optimizer steps (train_logs/).", "",
            *train_md, ""]


def mode_tables_section(P: ResultsParams, rep: Report, metrics: dict, variants: list[str]) -> list[str]:
    """The appendix's paper-shaped tables (Tables 2 and 3) per scoring mode, and the change over the baseline."""
    md = ["## Appendix: the paper-shaped tables per scoring mode", ""]
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
    return md


def ablation_section(P: ResultsParams, rep: Report, metrics: dict) -> list[str]:
    abl = ablation_table(metrics, P.headline_mode)
    rep.tables["ablation"] = abl
    return [f"## Ablation (this run, mode `{P.headline_mode}`)", "", markdown_table(abl, index=True), ""]


def error_rates_section(rep: Report, metrics: dict, variants: list[str]) -> list[str]:
    rates = error_rate_table(metrics, variants)
    rep.tables["error_rates"] = rates
    if rates.empty or not rates.notna().any().any():
        return []
    return ["## Hallucination and spurious-association rates (this run; lower is better)", "",
            markdown_table(rates, "{:.3f}", index=True), ""]


def seeds_section(P: ResultsParams, rep: Report) -> list[str]:
    """Mean ± sd of the headline numbers over this run and its seeds/ reruns (`seed_summary`)."""
    run_dir = Path(P.run_dir)
    seeds = seed_summary(Path(P.seeds_dir), P.variants, P.headline_mode, base_metrics=run_dir / "metrics")
    if seeds is None:
        return []
    rep.tables["seeds"] = seeds
    return [f"## Mean ± standard deviation over training seeds (mode `{P.headline_mode}`)", "",
            f"This run (seed {P.seed}) and the reruns in `{shown_path(P.seeds_dir, run_dir)}`: the same data, "
            f"pairs and reference model; DPO training (LoRA init, data order) and evaluation repeated per seed. "
            f"The reference model is not retrained, so it appears once.", "", markdown_table(seeds, index=True), ""]


def figures_section(P: ResultsParams, rep: Report, fig_dir: Path, variants: list[str]) -> list[str]:
    """Bars of the headline mode's tables and of the error rates (read from rep.tables), then the
    evaluation notebooks' figures."""
    head2, head3 = rep.tables.get(f"table2_{P.headline_mode}"), rep.tables.get(f"table3_{P.headline_mode}")
    fig_md = []
    if head2 is not None:
        fig_md += _drawn(rep, "bars_table2", figures.table2_bars(
            head2, fig_dir / "bars_table2.png", f"Zero-shot benchmarks (mode {P.headline_mode})", EMER_COLUMNS))
    if head3 is not None:
        fig_md += _drawn(rep, "bars_table3", figures.grouped_bars(
            head3, fig_dir / "bars_table3.png", f"EmoReAlM (mode {P.headline_mode}, percent)"))
    fig_md += _drawn(rep, "error_rates", figures.error_rates(rep.tables["error_rates"], fig_dir / "error_rates.png"))
    return ["## Figures", "", *fig_md, "", *appendix_figures(Path(P.run_dir), fig_dir, variants, rep)]


def _drawn(rep: Report, name: str, f: Path | None) -> list[str]:
    """The image line of figures/<name>.png when it was drawn (`f`), which rep.figures then lists."""
    if not f:
        return []
    rep.figures[name] = f
    return [f"![{name}](figures/{name}.png)"]


def paper_section() -> list[str]:
    """The paper's own Tables 2, 3 and ablation, labelled as such."""
    names = paper_column_names()
    md = ["## Reported by the paper (not produced by this kit)", "",
          "Copied from the paper (Tables 2, 3 and the ablation text) for comparison; real models and data, "
          "not the synthetic world. Columns under the kit's names. Scored by the released evaluation code: the "
          f"comparable numbers of this kit are those of scoring mode {mode_label(PAPER_SCORING_MODE)}.", ""]
    for key in ("table2", "table3", "ablation"):
        md += [f"Paper {key}:", "", markdown_table(paper_reported(key).rename(columns=names), index=True), ""]
    return md


def wall_times_section(rep: Report, run_dir: Path) -> list[str]:
    """Wall time per stage from run_times.json (the runner's)."""
    times_file = run_dir / "run_times.json"
    if not times_file.is_file():
        return []
    times = pd.DataFrame(json.loads(times_file.read_text()))
    per_stage = times.groupby("stage", sort=False)["seconds"].agg(["count", "sum"]).rename(
        columns={"count": "notebooks", "sum": "seconds"})
    rep.tables["wall_times"] = per_stage
    return ["## Wall times", "", markdown_table(per_stage, "{:.1f}", index=True), "",
            f"Total: {times['seconds'].sum():.1f} s summed over {len(times)} notebook executions. With "
            "`variant_jobs` > 1 (run.yaml) a stage's variants run side by side, so the run's wall time is "
            "less than this sum: `run.log` has it (`total`).", ""]
