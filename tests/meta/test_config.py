"""Typed params: unknown keys, wrong types, missing files, ${ref} resolution, profile files load."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from avere_utils import config
from avere_utils.config import ConfigError, StageParams, build
from avere_utils.paths import REPO_ROOT


@dataclass
class DemoParams(StageParams):
    beta: float = 0.1
    steps: int = 10
    use_pmp: bool = True
    names: list[str] = field(default_factory=lambda: ["a"])
    optional_path: str | None = None
    pairs_dir: str = "${run_dir}/pairs"
    output_dir: str = "${run_dir}/models/${variant}"
    variant: str = "avem_dpo"
    mode: Literal["a", "b"] = "a"
    modes: list[Literal["a", "b"]] = field(default_factory=lambda: ["a"])


def test_unknown_key_names_key_file_and_known_keys():
    with pytest.raises(ConfigError) as e:
        build(DemoParams, {"betaa": 0.2}, "params/x.yaml")
    msg = str(e.value)
    assert "'betaa'" in msg and "params/x.yaml" in msg and "beta" in msg


@pytest.mark.parametrize("key,value,expected", [
    ("beta", "0.1", "float"), ("steps", 1.5, "int"), ("steps", True, "int"), ("use_pmp", "yes", "bool"),
    ("names", "a", "list"), ("names", [1], "list"),
])
def test_wrong_type_names_key_and_expected_type(key, value, expected):
    with pytest.raises(ConfigError) as e:
        build(DemoParams, {key: value}, "f.yaml")
    assert repr(key) in str(e.value) and expected in str(e.value) and "f.yaml" in str(e.value)


@pytest.mark.parametrize("key,value,bad", [("mode", "c", "'c'"), ("mode", 1, "1"), ("modes", ["a", "z"], "'z'")])
def test_choice_outside_its_literal_names_key_value_and_choices(key, value, bad):
    with pytest.raises(ConfigError, match=rf"f\.yaml: key '{key}' must be one of \['a', 'b'\], got {bad}$"):
        build(DemoParams, {key: value}, "f.yaml")
    assert build(DemoParams, {key: "b" if key == "mode" else ["b", "a"]}, "f.yaml")


def test_int_is_accepted_for_float_and_none_for_optional():
    p = build(DemoParams, {"beta": 1, "optional_path": None}, "f.yaml")
    assert p.beta == 1.0 and isinstance(p.beta, float) and p.optional_path is None


def test_references_resolve_and_paths_become_absolute():
    p = build(DemoParams, {"run_dir": "outputs/x", "variant": "no_tpd"}, "f.yaml")
    assert p.pairs_dir == str(REPO_ROOT / "outputs/x/pairs")
    assert p.output_dir == str(REPO_ROOT / "outputs/x/models/no_tpd")
    assert p.run_dir == str(REPO_ROOT / "outputs/x")
    absolute = build(DemoParams, {"run_dir": "/tmp/abs"}, "f.yaml")
    assert absolute.pairs_dir == "/tmp/abs/pairs"


def test_unknown_and_circular_references_are_errors():
    with pytest.raises(ConfigError, match="nope"):
        build(DemoParams, {"pairs_dir": "${nope}/pairs"}, "f.yaml")
    with pytest.raises(ConfigError, match="circular"):
        build(DemoParams, {"pairs_dir": "${output_dir}", "output_dir": "${pairs_dir}"}, "f.yaml")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load_yaml(tmp_path / "absent.yaml")


def test_non_mapping_yaml_is_an_error(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load_yaml(f)


def test_format_params_shows_every_key():
    text = config.format_params(DemoParams())
    assert all(k in text for k in ("beta", "steps", "pairs_dir", "run_dir"))


@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_every_profile_file_loads_with_its_schema(profile):
    run = config.load_run(profile)
    assert run.stages == list(config.STAGES)
    for stage in run.stages:
        params = config.load_stage(profile, stage)
        assert params.profile == profile


def test_override_is_validated_like_the_file():
    with pytest.raises(ConfigError, match="seed"):
        config.load_stage("tiny", "01_data_preparation", {"seed": "zero"})


def test_torch_threads_is_applied_by_load_stage_and_rejected_when_negative():
    import torch

    before = torch.get_num_threads()
    try:
        P = config.load_stage("tiny", "05_zero_shot_classification", {"torch_threads": 1})
        assert P.torch_threads == 1 and torch.get_num_threads() == 1
        with pytest.raises(config.ConfigError, match="torch_threads"):
            config.apply_runtime(type(P)(torch_threads=-1))
    finally:
        torch.set_num_threads(before)
