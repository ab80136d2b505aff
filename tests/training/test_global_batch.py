"""global_batch_size (training params): the gradient accumulation is derived from it, the number of processes
and the per-device batch; a global batch the layout cannot reach exactly is an error naming the three numbers;
0 (the default, the tiny profile) derives nothing."""
from __future__ import annotations

import dataclasses
import logging

import pytest

from avere_utils import config
from avere_utils.config import ConfigError
from avere_utils.training.params import TrainParams, derive_grad_accum, launched_processes


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    for var in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_64_on_one_process_at_two_per_device_is_32_accumulation_steps(caplog):
    assert derive_grad_accum(64, 2, 1) == 32
    with caplog.at_level(logging.INFO, logger="avere_utils.training.params"):
        p = TrainParams(global_batch_size=64, per_device_train_batch_size=2, gradient_accumulation_steps=4)
    assert p.gradient_accumulation_steps == 32 and p.effective_batch(1) == 64
    assert "effective batch 64 = 2 per device x 1 process(es) x 32 accumulation steps" in caplog.text


def test_the_paper_layout_gives_four_steps_on_eight_processes(monkeypatch):
    assert derive_grad_accum(64, 2, 8) == 4
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert launched_processes() == 8
    assert TrainParams(global_batch_size=64, per_device_train_batch_size=2).gradient_accumulation_steps == 4


def test_an_unreachable_global_batch_names_the_three_numbers():
    with pytest.raises(ConfigError) as e:
        TrainParams(global_batch_size=64, per_device_train_batch_size=3)
    msg = str(e.value)
    assert "global_batch_size 64" in msg and "per_device_train_batch_size 3" in msg and "on 1 process" in msg
    with pytest.raises(ConfigError, match="64.*2.*3 process"):
        derive_grad_accum(64, 2, 3)


def test_zero_derives_nothing_and_the_tiny_profile_is_unchanged():
    p = config.load_stage("tiny", "04_avem_dpo_training")
    assert p.global_batch_size == 0 and p.gradient_accumulation_steps == 2 and p.per_device_train_batch_size == 4
    assert dataclasses.replace(p, gradient_accumulation_steps=5).gradient_accumulation_steps == 5
    with pytest.raises(ConfigError, match="global_batch_size"):
        TrainParams(global_batch_size=-1)


def test_the_paper_profile_asks_for_64():
    p = config.load_stage("paper", "04_avem_dpo_training")
    assert p.global_batch_size == 64 and p.effective_batch(1) == 64 and p.gradient_accumulation_steps == 32
    four = config.load_stage("paper", "04_avem_dpo_training", {"per_device_train_batch_size": 4})
    assert four.gradient_accumulation_steps == 16
    with pytest.raises(ConfigError, match="64.*per_device_train_batch_size 3"):
        config.load_stage("paper", "04_avem_dpo_training", {"per_device_train_batch_size": 3})
