"""The `python -m` entry points read a profile as `avere-kit` does (fast: arguments only, nothing trained)."""
from __future__ import annotations

import dataclasses

import pytest

from avere_utils import config
from avere_utils.training import __main__ as training_main


def test_training_module_reads_the_profile_like_avere_kit():
    args = training_main.parse_args(["--profile", "tiny", "--variant", "no_tpd", "--set", "max_steps=3"])
    got = training_main.params_from_args(args)
    want = config.load_stage("tiny", "04_avem_dpo_training", {"variant": "no_tpd", "max_steps": 3})
    assert dataclasses.asdict(got) == dataclasses.asdict(want)
    assert (got.variant, got.max_steps) == ("no_tpd", 3)


def test_training_module_still_reads_a_stage_file_and_refuses_an_old_name(tmp_path):
    args = training_main.parse_args(["--params", "params/tiny/04_avem_dpo_training.yaml", "--set", "max_steps=2"])
    assert training_main.params_from_args(args).max_steps == 2
    args = training_main.parse_args(["--profile", "tiny", "--set", "grad_accum_steps=2"])
    with pytest.raises(config.ConfigError, match="gradient_accumulation_steps"):
        training_main.params_from_args(args)


def test_both_modules_take_params_dir(tmp_path):
    from avere_utils.evaluation import __main__ as evaluation_main

    missing = str(tmp_path / "nowhere")
    with pytest.raises(config.ConfigError, match="not a folder"):
        evaluation_main.main(["07_zero_shot_emorealm", "--params-dir", missing])
    with pytest.raises(config.ConfigError, match="not a folder"):
        training_main.params_from_args(training_main.parse_args(["--params-dir", missing]))
