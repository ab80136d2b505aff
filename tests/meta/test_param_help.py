"""Every stage parameter carries its help text next to its default (what `avere-kit params` prints)."""
from __future__ import annotations

import dataclasses

import pytest

from avere_utils import cli, config


@pytest.mark.parametrize("stage", list(config.STAGES))
def test_every_stage_field_has_help(stage):
    cls = config.stage_class(stage)
    missing = [f.name for f in dataclasses.fields(cls) if not config.param_help(f).strip()]
    assert not missing, f"{cls.__name__}: fields without help: {missing}"


def test_param_copies_a_mutable_default_per_instance():
    @dataclasses.dataclass
    class Demo(config.StageParams):
        tags: list[str] = config.param(["a"], "some tags")

    one, two = Demo(), Demo()
    one.tags.append("b")
    assert two.tags == ["a"] and config.default_of(Demo, "tags") == ["a"]
    assert config.param_help({f.name: f for f in dataclasses.fields(Demo)}["tags"]) == "some tags"


def test_params_command_prints_key_type_value_and_help(capsys):
    assert cli.main(["params", "--stage", "04_avem_dpo_training", "--profile", "paper"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["gamma_tpd"])
    assert "float" in row and "gamma_TPD" in row
    lr = next(line for line in out.splitlines() if line.split()[:1] == ["learning_rate"])
    assert str(config.load_stage("paper", "04_avem_dpo_training").learning_rate) in lr  # the profile's value


def test_params_command_rejects_an_unknown_stage(capsys):
    assert cli.main(["params", "--stage", "04_training"]) == 2
    assert "04_avem_dpo_training" in capsys.readouterr().err  # the close match is named


def test_an_unknown_key_names_its_close_matches():
    with pytest.raises(config.ConfigError, match="did you mean gamma_tpd"):
        config.build(config.stage_class("04_avem_dpo_training"), {"gama_tpd": 0.1}, "test")
