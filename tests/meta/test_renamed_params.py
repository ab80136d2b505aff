"""The training settings carry Hugging Face `TrainingArguments` names.  The kit's earlier names are refused
wherever they are given (a params YAML, --set on either command line, a notebook's parameters) with an
error naming the new one (config.RENAMED_KEYS); the defaults, and so the training, are unchanged;
checkpoints are `checkpoint-N`, ordered by N; logging_steps thins the step log."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from avere_utils import config, runner
from avere_utils.config import ConfigError, build
from avere_utils.training import checkpoint as ckpt
from avere_utils.training.params import TrainParams, upgrade_keys

STAGE = "04_avem_dpo_training"
OLD = {  # old key -> (a value of the old kind, what the error must name)
    "per_device_batch_size": (2, "per_device_batch_size was renamed per_device_train_batch_size (Hugging Face name)"),
    "grad_accum_steps": (2, "grad_accum_steps was renamed gradient_accumulation_steps (Hugging Face name)"),
    "num_epochs": (1, "num_epochs was renamed num_train_epochs (Hugging Face name)"),
    "lr_scheduler": ("linear", "lr_scheduler was renamed lr_scheduler_type (Hugging Face name)"),
    "mixed_precision": ("bf16", "mixed_precision was renamed bf16 and fp16 (Hugging Face names"),
}


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    for var in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("old", list(OLD))
def test_an_old_key_in_a_params_yaml_names_the_new_one(old, tmp_path, monkeypatch):
    value, message = OLD[old]
    profile = tmp_path / "params" / "mine"
    shutil.copytree(config.PARAMS_DIR / "tiny", profile)
    f = profile / f"{STAGE}.yaml"
    f.write_text(f.read_text() + yaml.safe_dump({old: value}))
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path / "params")
    with pytest.raises(ConfigError) as err:
        config.load_stage("mine", STAGE)
    assert message in str(err.value) and str(f) in str(err.value)
    # the training command line reads the same file
    from avere_utils.training.__main__ import params_from_args, parse_args

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        params_from_args(parse_args(["--params", str(f)]))


@pytest.mark.parametrize("old", list(OLD))
def test_an_old_key_given_with_set_names_the_new_one(old):
    value, message = OLD[old]
    overrides = config.parse_overrides([f"{old}={value}"])
    stages = config.load_run("tiny").stages
    with pytest.raises(ConfigError) as err:  # avere-kit run / sweep / params --set (cli.profile_overrides)
        runner.check_overrides(stages, overrides)
    assert message in str(err.value)
    with pytest.raises(ConfigError) as err:  # STAGE.KEY=VALUE reaches the stage's own check
        targeted = config.parse_overrides([f"{STAGE}.{old}={value}"])
        runner.check_overrides(stages, targeted)
        config.load_stage("tiny", STAGE, runner.overrides_for(STAGE, targeted))
    assert message in str(err.value)
    from avere_utils.training.__main__ import params_from_args, parse_args

    args = parse_args(["--params", str(config.stage_file("tiny", STAGE)), "--set", f"{old}={value}"])
    with pytest.raises(ConfigError) as err:  # python -m avere_utils.training --set (accelerate launch)
        params_from_args(args)
    assert message in str(err.value)


@pytest.mark.parametrize("old", list(OLD))
def test_an_old_key_in_a_notebooks_parameters_names_the_new_one(old):
    value, message = OLD[old]
    namespace = {**config.load_yaml(config.stage_file("tiny", STAGE)), old: value}
    with pytest.raises(ConfigError) as err:  # it would otherwise be dropped without a word
        config.notebook_params(STAGE, namespace)
    assert message in str(err.value) and "notebook" in str(err.value)


def test_an_old_key_of_a_stage_without_the_new_one_is_an_ordinary_unknown_key():
    with pytest.raises(ConfigError, match="unknown key 'grad_accum_steps'"):
        build(config.stage_class("05_zero_shot_classification"), {"grad_accum_steps": 2}, "test")


def test_bf16_and_fp16_together_is_an_error_naming_both():
    with pytest.raises(ConfigError) as err:
        TrainParams(bf16=True, fp16=True)
    assert "'bf16' and 'fp16'" in str(err.value)
    assert TrainParams(bf16=True).accelerate_mixed_precision == "bf16"
    assert TrainParams(fp16=True).accelerate_mixed_precision == "fp16"
    assert TrainParams().accelerate_mixed_precision == "no"
    with pytest.raises(ConfigError, match="key 'bf16' should be bool"):
        build(TrainParams, {"bf16": "bf16"}, "test")


def test_the_defaults_are_the_numbers_they_were():
    tiny = config.load_stage("tiny", STAGE)
    assert (tiny.per_device_train_batch_size, tiny.gradient_accumulation_steps, tiny.num_train_epochs) == (4, 2, 1)
    assert (tiny.lr_scheduler_type, tiny.bf16, tiny.fp16, tiny.logging_steps) == ("linear", False, False, 1)
    assert (tiny.learning_rate, tiny.warmup_ratio, tiny.weight_decay, tiny.max_grad_norm) == (2.5e-4, 0.1, 0.0, 1.0)
    assert (tiny.max_steps, tiny.save_steps, tiny.save_total_limit, tiny.report_to) == (0, 10, 2, "none")
    assert tiny.effective_batch(1) == 8
    paper = config.load_stage("paper", STAGE)
    assert paper.accelerate_mixed_precision == "bf16" and paper.effective_batch(1) == 64
    assert paper.per_device_train_batch_size == 2 and paper.gradient_accumulation_steps == 32
    with pytest.raises(ConfigError, match="logging_steps"):
        TrainParams(logging_steps=0)


def test_a_signature_of_the_earlier_names_reads_as_todays():
    new = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_train_epochs": 1,
           "lr_scheduler_type": "linear", "bf16": True, "fp16": False, "beta": 0.1}
    old = {"per_device_batch_size": 4, "grad_accum_steps": 2, "num_epochs": 1, "lr_scheduler": "linear",
           "mixed_precision": "bf16", "beta": 0.1}
    assert upgrade_keys(old) == new and upgrade_keys(new) == new
    assert upgrade_keys({"mixed_precision": "no"}) == {"bf16": False, "fp16": False}


def _fake_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / ckpt.STATE_FILE).write_text("{}")
    return folder


def test_checkpoints_are_ordered_by_their_step_not_by_their_name(tmp_path):
    for n in (9, 10, 100, 2):
        _fake_checkpoint(tmp_path / f"checkpoint-{n}")
    _fake_checkpoint(tmp_path / "step-000050")  # the earlier naming, read in its place
    (tmp_path / "checkpoint-200").mkdir()  # incomplete (no state file): not a checkpoint
    (tmp_path / ".tmp-checkpoint-300").mkdir()
    names = [p.name for p in ckpt.complete_checkpoints(tmp_path)]
    assert names == ["checkpoint-2", "checkpoint-9", "checkpoint-10", "step-000050", "checkpoint-100"]
    assert ckpt.latest(tmp_path).name == "checkpoint-100"
    assert ckpt.step_dir(tmp_path, 40).name == "checkpoint-40"
    assert ckpt.checkpoint_step(tmp_path / "step-000040") == 40 == ckpt.checkpoint_step(tmp_path / "checkpoint-40")


@pytest.mark.model
def test_a_run_killed_under_the_earlier_names_resumes_and_the_rotation_counts_steps(tmp_path):
    from training.test_trainer import FakeBackend, fake_rows, fake_source, make_params

    from avere_utils import weights
    from avere_utils.training.step_log import read_log
    from avere_utils.training.trainer import Hooks, StopTraining, train

    rows = fake_rows(24)
    over = dict(num_train_epochs=2, per_device_train_batch_size=2, gradient_accumulation_steps=1, save_steps=4,
                save_total_limit=2)
    full = make_params(tmp_path / "full", **over)
    train(full, backend=FakeBackend(), pairs=fake_source(rows))
    assert [p.name for p in ckpt.complete_checkpoints(full.checkpoint_dir)] == ["checkpoint-20", "checkpoint-24"]

    def kill(trainer, step, record):
        if step == 9:
            raise StopTraining

    part = make_params(tmp_path / "part", **over)
    with pytest.raises(StopTraining):
        train(part, backend=FakeBackend(), pairs=fake_source(rows), hooks=Hooks(on_step_end=kill))
    # make the checkpoints what the kit wrote before the renames: step-NNNNNN, the old key names
    for found in ckpt.complete_checkpoints(part.checkpoint_dir):
        state = json.loads((found / ckpt.STATE_FILE).read_text())
        sig = state["signature"]
        sig["mixed_precision"] = "bf16" if sig.pop("bf16") else "fp16" if sig.pop("fp16") else "no"
        for old, (new, _) in config.RENAMED_KEYS.items():
            if len(new) == 1:
                sig[old] = sig.pop(new[0])
        (found / ckpt.STATE_FILE).write_text(json.dumps(state))
        weights.record_digests(found)
        found.rename(found.with_name(f"step-{ckpt.checkpoint_step(found):06d}"))
    assert [p.name for p in ckpt.complete_checkpoints(part.checkpoint_dir)] == ["step-000004", "step-000008"]
    res = train(part, backend=FakeBackend(), pairs=fake_source(rows))
    assert res.resumed_from_step == 8
    assert [p.name for p in ckpt.complete_checkpoints(part.checkpoint_dir)] == ["checkpoint-20", "checkpoint-24"]
    assert (Path(full.output_dir) / "adapter.pt").read_bytes() == (Path(part.output_dir) / "adapter.pt").read_bytes()
    assert [r["loss"] for r in read_log(full.log_file)] == [r["loss"] for r in read_log(part.log_file)]


@pytest.mark.model
def test_logging_steps_thins_the_step_log_and_keeps_the_last_step(tmp_path):
    from training.test_trainer import FakeBackend, fake_rows, fake_source, make_params

    from avere_utils.training.step_log import read_log
    from avere_utils.training.trainer import train

    rows = fake_rows(24)
    every = train(make_params(tmp_path / "a", max_steps=5), backend=FakeBackend(), pairs=fake_source(rows))
    thin = train(make_params(tmp_path / "b", max_steps=5, logging_steps=2), backend=FakeBackend(),
                 pairs=fake_source(rows))
    assert [r["step"] for r in read_log(every.log_file)] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in read_log(thin.log_file)] == [2, 4, 5]
    assert len(thin.history) == 5  # every step is still computed and returned; only the log is thinner
    by_step = {r["step"]: r["loss"] for r in read_log(every.log_file)}
    assert all(by_step[r["step"]] == r["loss"] for r in read_log(thin.log_file))  # same training
