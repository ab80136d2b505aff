"""Every default has one value: a library config (the synthetic world, SFT, the loss) and the stage
parameter it is built from must agree, and a profile YAML that repeats a default must say why.

The library configs have defaults so that they can be used on their own (tests, scripts).  SFTConfig takes
them from ReferenceParams (config.default_of); LossConfig (imported by training/params.py, so it cannot import
it back) and WorldConfig keep their own, and this test makes a copy that drifts impossible to land."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from avere_utils import config
from avere_utils.datasets.params import DataPrepParams
from avere_utils.models.params import ReferenceParams
from avere_utils.models.sft import SFTConfig
from avere_utils.synth.spec import WorldConfig
from avere_utils.training.loss import LossConfig
from avere_utils.training.params import TrainParams

# (library config, stage params, stage key of a library field)
PAIRS = [
    (WorldConfig, DataPrepParams, lambda k: {"workers": "world_workers"}.get(k, k)),
    (SFTConfig, ReferenceParams, lambda k: "sft_" + k),
    (LossConfig, TrainParams, lambda k: k),
]


def defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize("lib, stage, key", PAIRS, ids=lambda x: getattr(x, "__name__", ""))
def test_library_defaults_equal_their_stage_parameters(lib, stage, key):
    lib_d, stage_d = defaults(lib), defaults(stage)
    shared = {k: key(k) for k in lib_d if key(k) in stage_d}
    assert len(shared) >= 5, f"{lib.__name__}: the mapping to {stage.__name__} found almost nothing"
    drift = {k: (lib_d[k], stage_d[s]) for k, s in shared.items() if lib_d[k] != stage_d[s]}
    assert not drift, f"{lib.__name__} defaults differ from {stage.__name__}: {drift}"


def yaml_lines(path):
    """key -> whether its line carries a comment (top-level keys of a flat stage YAML)."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            k = line.split(":", 1)[0].strip()
            out[k] = "#" in line.split(":", 1)[1]
    return out


@pytest.mark.parametrize("profile", ["paper"])
def test_a_profile_repeats_a_default_only_with_a_comment_saying_why(profile):
    """The paper profile is a set of deltas from the defaults (= the tiny profile); a key at its default value
    is listed only with a comment (e.g. "the paper's value too")."""
    silent = []
    for stage in config.STAGES:
        path = config.stage_file(profile, stage)
        raw = yaml.safe_load(path.read_text()) or {}
        stage_d = defaults(config.stage_class(stage))
        commented = yaml_lines(path)
        for k, v in raw.items():
            if k in stage_d and v == stage_d[k] and not commented.get(k, False) and k not in ("profile",):
                silent.append(f"{path.name}:{k}")
    assert not silent, f"keys at their default with no comment saying why: {silent}"
