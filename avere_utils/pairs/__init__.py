"""Preference pairs for AVEm-DPO: ERP responses (chosen / spurious / hallucinated) and PMP rejected inputs.

Entry points: `build_and_save(PairParams)` (notebook 02), `load_pairs(pairs_dir, split)` and
`load_pair_media(row, settings)` (training), `export_released_json` / `import_released_json` (interop).
"""
from avere_utils.pairs.build import BuildResult, build_and_save, build_pairs, read_items
from avere_utils.pairs.cues import CueRecord, check_sample
from avere_utils.pairs.inputs import load_pair_media
from avere_utils.pairs.interop import export_released_json, import_released_json
from avere_utils.pairs.params import FAMILIES, FAMILY_MODALITY, PairParams
from avere_utils.pairs.store import COLUMNS, CONTRACT_COLUMNS, load_pairs, load_stats, save_pairs
from avere_utils.pairs.templates import feasible_families, template_sample

__all__ = [
    "BuildResult", "build_and_save", "build_pairs", "read_items", "CueRecord", "check_sample",
    "load_pair_media", "export_released_json", "import_released_json", "FAMILIES", "FAMILY_MODALITY",
    "PairParams", "COLUMNS", "CONTRACT_COLUMNS", "load_pairs", "load_stats", "save_pairs",
    "feasible_families", "template_sample",
]
