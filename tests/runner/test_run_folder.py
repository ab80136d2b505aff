"""A run folder is safe (issue 23), the parts that need no pipeline run: the run-folder lock, duplicate
records counted, weight files named when damaged, identity by content (a copied folder is the same model,
a changed one is not), checkpoint signatures without absolute paths, resume past a damaged checkpoint,
and the parameter ranges.  The end-to-end cases (two runs at once, Ctrl-C, a truncated checkpoint or
adapter of a real run, `cp -r`) are in tests/runner/test_faults.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avere_utils import runlock, weights
from avere_utils.config import ConfigError


# --- the lock ---------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with runlock.RunLock(tmp_path, "07_x-reference", what="07_x [reference]"):
        with pytest.raises(runlock.RunFolderBusy) as err:
            runlock.RunLock(tmp_path, "07_x-reference").acquire()  # another open file: flock refuses it
        msg = str(err.value)
        assert str(tmp_path) in msg and f"pid {os.getpid()}" in msg and "07_x-reference" in msg
        assert "pytest" in msg or sys.argv[0] in msg  # the holder's command line
        runlock.RunLock(tmp_path, "07_x-avem_dpo").acquire().release()  # another variant: free
    with runlock.RunLock(tmp_path, "07_x-reference"):  # released: taken again, no warning needed
        pass
    assert (tmp_path / ".locks" / "07_x-reference.lock").read_text() == ""  # a clean release leaves no holder


def test_all_or_none_of_a_runs_locks(tmp_path):
    with runlock.RunLock(tmp_path, "b"):
        with pytest.raises(runlock.RunFolderBusy):
            with runlock.hold(tmp_path, [("a", "a"), ("b", "b")]):
                pass
        runlock.RunLock(tmp_path, "a").acquire().release()  # "a" was given back when "b" was refused


def test_the_lock_of_a_dead_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    code = ("import sys, time; from avere_utils import runlock; runlock.RunLock(sys.argv[1], 'train-x').acquire(); "
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(runlock.RunFolderBusy, match=f"pid {proc.pid}"):
            runlock.RunLock(tmp_path, "train-x").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with caplog.at_level("WARNING"), runlock.RunLock(tmp_path, "train-x"):
        assert f"pid {proc.pid}" in caplog.text and "no longer running" in caplog.text


def test_run_stage_holds_its_lock(tmp_path):
    from avere_utils.config import build
    from avere_utils.evaluation import stage
    from avere_utils.evaluation.params import ClassificationParams

    params = build(ClassificationParams, {"run_dir": str(tmp_path), "variant": "reference"}, "test")
    with runlock.RunLock(tmp_path, runlock.lock_name("eval", "dfew", "reference")):
        with pytest.raises(runlock.RunFolderBusy, match="dfew evaluation of reference"):
            stage.run_stage(params, "dfew", backend=None, scorer=None)


# --- duplicates are counted -------------------------------------------------------------------------
def test_duplicate_records_are_counted_not_hidden(tmp_path):
    from avere_utils.evaluation.predict import Decoding, PredictionTask, run_predictions
    from avere_utils.evaluation.testing import FakeBackend, fake_media_fn
    from avere_utils.records import Item

    items = [Item(id=f"c{i}", dataset="dfew", split="test", video=f"/v/{i}.mp4", label="anger") for i in range(4)]
    task = PredictionTask(prompt_for=lambda it: "Describe.", generate=True)
    out = tmp_path / "dfew-x.jsonl"

    def run(backend):
        return run_predictions(backend, items, out, task, Decoding(max_new_tokens=2), settings={"v": 1},
                               media_fn=fake_media_fn(items), batch_size=2, shard=(0, 1))

    assert run(FakeBackend(items)).n_duplicate_records == 0
    with open(out, "a") as f:  # what a second writer did before the lock: every record again
        f.write(out.read_text())
    again = FakeBackend(items)
    res = run(again)
    assert res.n_duplicate_records == 4 and len(res.records) == 4 and again.generated == []


# --- weight files -----------------------------------------------------------------------------------
def _safetensors(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.arange(256, dtype=torch.float32)}, str(path))
    return path


def test_a_truncated_safetensors_file_is_named_with_what_to_do(tmp_path):
    f = _safetensors(tmp_path / "run" / "models" / "no_tpd" / "adapter_model.safetensors")
    weights.check_safetensors(f)
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
    with pytest.raises(weights.WeightsError) as err:
        weights.check_safetensors(f)
    msg = str(err.value)
    assert msg.startswith(f"{f} is corrupt or truncated")
    assert "rerun stage 04 for variant no_tpd" in msg and "--variants no_tpd" in msg
    f.write_bytes(data[:5])
    with pytest.raises(weights.WeightsError, match="shorter than a header"):
        weights.check_folder(f.parent)
    with pytest.raises(weights.WeightsError, match="rerun stage 03"):
        weights.check_safetensors(_truncated(tmp_path / "run" / "models" / "reference" / "m.safetensors"))
    with pytest.raises(weights.WeightsError, match="checkpoint-20 .training resumes from the previous"):
        weights.check_safetensors(_truncated(tmp_path / "run" / "checkpoints" / "v" / "checkpoint-20" / "adapter" /
                                             "adapter_model.safetensors"))


def _truncated(path: Path) -> Path:
    f = _safetensors(path)
    f.write_bytes(f.read_bytes()[:-10])
    return f


def test_a_load_error_names_the_file(tmp_path):
    f = _safetensors(tmp_path / "models" / "v" / "adapter_model.safetensors")
    with pytest.raises(weights.WeightsError, match="adapter_model.safetensors is corrupt.*KeyError"):
        with weights.load_guard(f.parent):
            raise KeyError("base_model.model.x")


# --- identity by content ----------------------------------------------------------------------------
def test_content_stamp_ignores_place_and_mtime_and_sees_content(tmp_path, monkeypatch):
    a = tmp_path / "a"
    _safetensors(a / "adapter_model.safetensors")
    (a / "adapter_config.json").write_text("{}")
    (a / "training_summary.json").write_text('{"seconds": 1.0}')
    stamp = weights.content_stamp(a)
    assert [n for n, _, _ in stamp] == ["adapter_config.json", "adapter_model.safetensors"]
    time.sleep(0.01)
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b, copy_function=shutil.copy)  # like cp -r: new mtimes
    (b / "training_summary.json").write_text('{"seconds": 2.0}')  # wall time: not the weights
    assert weights.content_stamp(b) == stamp

    calls = []
    real = weights.file_sha256
    monkeypatch.setattr(weights, "file_sha256", lambda p: calls.append(p) or real(p))
    assert weights.content_stamp(b) == stamp and calls == []  # recorded hashes read back, nothing rehashed
    data = bytearray((b / "adapter_model.safetensors").read_bytes())
    data[-1] ^= 1  # same size, other content
    (b / "adapter_model.safetensors").write_bytes(bytes(data))
    assert weights.content_stamp(b) != stamp


def test_prediction_fingerprints_and_signatures_hold_no_place(tmp_path):
    from avere_utils.config import build
    from avere_utils.evaluation import common
    from avere_utils.evaluation.params import ClassificationParams
    from avere_utils.training.params import TrainParams
    from avere_utils.training.trainer import run_signature

    def both(run):
        ev = build(ClassificationParams, {"run_dir": str(run), "variant": "reference"}, "test")
        tr = build(TrainParams, {"run_dir": str(run), "data_root": "/shared/data"}, "test")
        return common.run_settings(ev, {"n_frames": 2}), run_signature(tr, [{"id": "p0"}], "fp")

    s1, sig1 = both(tmp_path / "one")
    s2, sig2 = both(tmp_path / "moved" / "two")
    assert s1 == s2 and sig1 == sig2
    assert sig1["output_dir"] == "<run>/models/avem_dpo" and sig1["data_root"] == "/shared/data"
    assert str(tmp_path) not in json.dumps([s1, sig1])


# --- resume past a damaged checkpoint ---------------------------------------------------------------
def test_resume_skips_a_damaged_newest_checkpoint_and_a_moved_run_redoes_nothing(tmp_path, caplog):
    import torch
    from training.test_trainer import FakeBackend, fake_rows, fake_source, make_params

    from avere_utils.training.step_log import read_log
    from avere_utils.training.trainer import Hooks, StopTraining, train

    rows = fake_rows(24)
    over = dict(num_train_epochs=2, per_device_train_batch_size=4, gradient_accumulation_steps=1, save_steps=2,
                save_total_limit=2)
    full = make_params(tmp_path / "full", **over)
    train(full, backend=FakeBackend(), pairs=fake_source(rows))

    def kill(trainer, step, record):
        if step == 5:  # checkpoints 2 and 4 kept
            raise StopTraining

    part = make_params(tmp_path / "part", **over)
    with pytest.raises(StopTraining):
        train(part, backend=FakeBackend(), pairs=fake_source(rows), hooks=Hooks(on_step_end=kill))
    newest = Path(part.checkpoint_dir) / "checkpoint-4" / "adapter" / "adapter.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        res = train(part, backend=FakeBackend(), pairs=fake_source(rows))
    assert res.resumed_from_step == 2
    assert "skipping checkpoint checkpoint-4" in caplog.text and str(newest) in caplog.text
    assert (Path(full.output_dir) / "adapter.pt").read_bytes() == (Path(part.output_dir) / "adapter.pt").read_bytes()
    assert [r["step"] for r in read_log(part.log_file)] == list(range(1, res.steps + 1))

    # the finished run folder copied elsewhere (new mtimes, new path): nothing is trained again
    moved = tmp_path / "moved" / "run"
    shutil.copytree(Path(part.run_dir), moved, copy_function=shutil.copy)
    again = train(make_params(moved.parent, **over), backend=FakeBackend(), pairs=fake_source(rows))
    assert again.resumed_from_step == res.steps and again.history == []
    assert torch.equal(torch.load(Path(part.output_dir) / "adapter.pt")["B"],
                       torch.load(moved / "models" / "avem_dpo" / "adapter.pt")["B"])


# --- parameters refused before any work -------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("max_steps", -3), ("max_samples", -1), ("save_steps", -1),
                                       ("lora_dropout", 1.5), ("lora_dropout", -0.1)])
def test_out_of_range_training_params_are_refused(key, value):
    from avere_utils.config import build
    from avere_utils.training.params import TrainParams

    with pytest.raises(ConfigError, match=key):
        build(TrainParams, {key: value}, "test")
