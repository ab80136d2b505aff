"""report_to: tensorboard writes the step log's scalars through accelerate's tracker API."""
from __future__ import annotations

import pytest
from test_trainer import FakeBackend, fake_rows, fake_source, make_params

from avere_utils.training.step_log import read_log
from avere_utils.training.trainer import Trainer, tracker_dir


def _scalars(run: str) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("variant", ["avem_dpo", "naive_dpo"])
def test_tensorboard_event_file_has_every_step_and_term(tmp_path, variant):
    params = make_params(tmp_path, variant=variant, max_steps=3, per_device_train_batch_size=2, report_to="tensorboard")
    Trainer(params, backend=FakeBackend(), pairs=fake_source(fake_rows(12))).train()
    steps = [r["step"] for r in read_log(params.log_file)]
    scalars = _scalars(str(tracker_dir(params) / variant))
    want = {"loss", "loss_y", "rewards/chosen", "rewards/rejected", "margins/response", "lr", "grad_norm"}
    want |= ({"loss_av", "margins/vr", "margins/er", "margins/pmp", "tpd_offset"} if variant == "avem_dpo"
             else {"margins/rejected"})
    assert want <= set(scalars), sorted(want - set(scalars))
    assert "step" not in scalars and "samples" not in scalars
    if variant == "naive_dpo":  # no PMP: the term is absent, not a curve of gaps
        assert "loss_av" not in scalars and "margins/pmp" not in scalars
    for tag in want:
        assert [e.step for e in scalars[tag]] == steps == [1, 2, 3]
    first = read_log(params.log_file)[0]
    assert scalars["loss"][0].value == pytest.approx(first["loss"], rel=1e-6)
    assert scalars["lr"][0].value == pytest.approx(first["lr"], rel=1e-6)


def test_default_writes_no_tracker(tmp_path):
    params = make_params(tmp_path, variant="naive_dpo", max_steps=1, per_device_train_batch_size=2)
    assert params.report_to == "none"
    Trainer(params, backend=FakeBackend(), pairs=fake_source(fake_rows(12))).train()
    assert not tracker_dir(params).exists()
