from __future__ import annotations

from dataclasses import dataclass, field

from avere_utils.config import StageParams


@dataclass
class ResultsParams(StageParams):
    """08_results_and_ablations: tables, figures and report.md from a run's metrics and training logs."""

    variants: list[str] = field(default_factory=lambda: [
        "reference", "avem_dpo", "naive_dpo", "vista_dpo", "no_pmp", "no_erp", "no_tpd"])
    modes: list[str] = field(default_factory=lambda: ["paper", "strict", "scoring"])
    headline_mode: str = "strict"
    baseline: str = "reference"
    report_file: str = "${run_dir}/report.md"
    # seeds/<k>/ runs (see `avere-kit seeds`) are summarised as mean and spread when present
    seeds_dir: str = "${run_dir}/seeds"
    # the mode whose EmoReAlM Yes-rates and accuracies (and UAR) the story section and figure read
    story_mode: str = "scoring"
