from __future__ import annotations

from dataclasses import dataclass

from avere_utils.config import StageParams, param
from avere_utils.protocol import SCORING_MODES


@dataclass
class ResultsParams(StageParams):
    """08_results_and_ablations: tables, figures and report.md from a run's metrics and training logs."""

    variants: list[str] = param(["reference", "avem_dpo", "avem_dpo_policy", "avem_dpo_reversed", "naive_dpo", "vista_dpo",
                                  "no_pmp", "no_erp", "no_tpd"],
                                "the variants whose metrics the tables show, in this order")
    modes: list[str] = param(list(SCORING_MODES), "scoring modes with a table each")
    headline_mode: str = param("strict", "the mode of the ablation table and the seed summary")
    baseline: str = param("reference", "the variant the relative changes and the story checks compare with")
    report_file: str = param("${run_dir}/report.md", "where the report is written")
    seeds_dir: str = param("${run_dir}/seeds", "seeds/<k>/ runs (see `avere-kit seeds`), summarised as mean and "
                                               "spread when present")
    story_mode: str = param("scoring", "the mode whose EmoReAlM Yes-rates and accuracies (and UAR) the story "
                                       "section and figure read")
