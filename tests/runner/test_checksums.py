"""avere_utils.checksums: a run's identity by the sha256 of its reference checkpoint and adapters."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from avere_utils import checksums


def _fake_run(root, ref_bytes=b"ref-weights", adapter_bytes=None):
    adapter_bytes = adapter_bytes or {"naive_dpo": b"a1", "avem_dpo": b"a2"}
    ref = root / "models" / "reference"
    ref.mkdir(parents=True)
    (ref / "model.safetensors").write_bytes(ref_bytes)
    (ref / "config.json").write_text("{}")  # not a weight file
    for name, data in adapter_bytes.items():
        d = root / "models" / name
        (d / "checkpoints" / "checkpoint-1").mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(data)
        (d / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors").write_bytes(b"intermediate")
    (root / "models" / "reference_init").mkdir()
    (root / "models" / "reference_init" / "model.safetensors").write_bytes(b"init")
    return root


def test_write_records_reference_adapters_and_numerics(tmp_path):
    run = _fake_run(tmp_path / "run")
    out = checksums.write(run)
    data = json.loads(out.read_text())
    assert out == run / "checksums.json"
    assert set(data) == {"reference", "adapters", "numerics"}
    assert set(data["adapters"]) == {"naive_dpo", "avem_dpo"}  # reference_init is not an adapter
    assert len(data["reference"]) == 64 and "capability" in data["numerics"]


def test_folder_hash_ignores_mtimes_location_listing_and_checkpoints(tmp_path):
    run = _fake_run(tmp_path / "run")
    ref = checksums.folder_sha256(run / "models" / "reference")
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)
    os.utime(copy / "models" / "reference" / "model.safetensors", (1, 1))
    (copy / "models" / "reference" / "config.json").write_text('{"edited": 1}')
    (copy / "models" / "avem_dpo" / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors").write_bytes(b"x")
    assert checksums.folder_sha256(copy / "models" / "reference") == ref
    assert checksums.compare(copy, run) == []
    (tmp_path / "empty").mkdir()
    assert checksums.folder_sha256(tmp_path / "empty") is None  # no weight files


def test_compare_names_every_difference_and_cli_exits_non_zero(tmp_path, capsys):
    a = _fake_run(tmp_path / "a")
    b = _fake_run(tmp_path / "b", ref_bytes=b"other", adapter_bytes={"naive_dpo": b"a1", "avem_dpo": b"zz",
                                                                       "extra": b"e"})
    checksums.write(a)
    diffs = checksums.compare(b, a / "checksums.json")
    assert [d.split(":")[0] for d in diffs] == ["reference", "adapter avem_dpo", "adapter extra"]
    assert checksums.main(["compare", str(b), str(a)]) == 1
    assert "reference:" in capsys.readouterr().out
    assert checksums.main(["compare", str(a), str(a / "checksums.json")]) == 0
    shutil.rmtree(b / "models" / "extra")
    (b / "models" / "avem_dpo" / "adapter_model.safetensors").unlink()
    assert "adapter avem_dpo: missing" in " ".join(checksums.compare(b, a))


def test_numerics_differences_are_notes_not_failures():
    ref = {"reference": "1" * 64, "adapters": {}, "numerics": {"capability": "AVX2", "cpu_model": "x"}}
    new = {"reference": "2" * 64, "adapters": {}, "numerics": {"capability": "AVX512", "cpu_model": "x"}}
    diffs = checksums.compare_data(new, ref)
    assert diffs[0].startswith("reference:") and any("AVX512" in d and d.startswith("note:") for d in diffs)
    assert checksums.compare_data(dict(ref, numerics=new["numerics"]), ref) == []


def test_write_refuses_a_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reference checkpoint"):
        checksums.write(tmp_path)
    with pytest.raises(FileNotFoundError, match="no run folder"):
        checksums.write(tmp_path / "missing")


def test_cli_says_what_is_missing(tmp_path, capsys):
    assert checksums.main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "neither models/ nor checksums.json" in capsys.readouterr().err


def test_verify_golden_compares_the_checksums_when_the_committed_run_has_them(tmp_path, monkeypatch):
    from avere_utils import verify

    golden, rerun = tmp_path / "golden", _fake_run(tmp_path / "rerun")
    (golden / "metrics").mkdir(parents=True)
    row = {"benchmark": "dfew", "variant": "base", "metric": "uar", "golden": 50.0, "rerun": 50.0,
           "tolerance": 3.0, "ok": True}
    monkeypatch.setattr(verify, "compare", lambda a, b: [row])
    args = ["--skip-run", "--golden", str(golden), "--out", str(rerun)]
    assert verify.main(args) == 0  # no checksums.json committed: metrics only
    checksums.write(rerun)
    shutil.copy(rerun / "checksums.json", golden / "checksums.json")
    assert verify.main(args) == 0
    (rerun / "models" / "reference" / "model.safetensors").write_bytes(b"another reference")
    assert verify.main(args) == 1
    assert verify.main(["--skip-run", "--reference", str(golden), "--out", str(rerun)]) == 1  # the former spelling
