"""avere_utils/publish.py (a run into a committed folder, without machine paths) and avere_utils/verify.py over
every metrics folder of the committed run, seeds included."""
from __future__ import annotations

import base64
import io
import json

from avere_utils import publish, verify
from avere_utils.paths import REPO_ROOT


def _png(size: int) -> str:
    from PIL import Image

    img = Image.effect_noise((size, size), 80).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _fake_run(run, built_at):
    (run / "metrics").mkdir(parents=True)
    (run / "metrics" / "emorealm-avem_dpo.json").write_text(json.dumps(
        {"average_accuracy": 70.0, "predictions_file": f"{built_at}/predictions/emorealm-avem_dpo.jsonl",
         "model": {"path": f"{built_at}/models/reference"}, "by_kind": {"relevant": {"yes_rate": 80.0}}}))
    (run / "predictions").mkdir()
    (run / "predictions" / "emorealm-avem_dpo.jsonl").write_text('{"id": "s0", "scores": [1.0, 0.0]}\n')
    (run / "predictions" / "emer-avem_dpo.judge_batch.jsonl").write_text("{}\n")  # not published
    (run / "run.log").write_text(f"run_dir {built_at}\nrepo {REPO_ROOT.resolve()}/avere_utils\n")
    (run / "seeds" / "seed-1" / "metrics").mkdir(parents=True)
    (run / "seeds" / "seed-1" / "metrics" / "emorealm-avem_dpo.json").write_text(json.dumps(
        {"average_accuracy": 71.0, "predictions_file": f"{built_at}/seeds/seed-1/predictions/x.jsonl"}))
    (run / "notebooks").mkdir()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"papermill": {"output_path": f"{built_at}/notebooks/a.ipynb"}},
          "cells": [{"cell_type": "code", "metadata": {}, "source": [f'run_dir = "{built_at}"\n'], "execution_count": 1,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": [f"wrote {built_at}/run.log\n"]},
                                 {"output_type": "display_data", "metadata": {},
                                  "data": {"image/png": _png(400), "text/plain": ["<Figure>"]}}]}]}
    (run / "notebooks" / "08_results_and_ablations.ipynb").write_text(json.dumps(nb))


def test_publish_removes_machine_paths_and_keeps_images_within_the_budget(tmp_path):
    run, dest = tmp_path / "tiny", tmp_path / "golden"
    built_at = "/tmp/elsewhere/outputs/tiny"  # the run was built in another folder, then moved
    _fake_run(run, built_at)
    s = publish.publish(run, dest, max_image_kb=60, echo=lambda m: None)
    assert s["machine_paths"] == [] and s["too_large"] == [] and s["images_shrunk"] == 1
    m = json.loads((dest / "metrics" / "emorealm-avem_dpo.json").read_text())
    assert m["predictions_file"] == "predictions/emorealm-avem_dpo.jsonl" and m["model"]["path"] == "models/reference"
    assert json.loads((dest / "seeds" / "seed-1" / "metrics" / "emorealm-avem_dpo.json").read_text())[
        "predictions_file"] == "predictions/x.jsonl"  # relative to its own run folder, seeds/seed-1
    assert (dest / "predictions" / "emorealm-avem_dpo.jsonl").is_file()
    assert not (dest / "predictions" / "emer-avem_dpo.judge_batch.jsonl").exists()
    assert "repo avere_utils" in (dest / "run.log").read_text()
    nb = json.loads((dest / "notebooks" / "08_results_and_ablations.ipynb").read_text())
    cell = nb["cells"][0]
    assert cell["source"] == ['run_dir = "tiny"\n'] and cell["outputs"][0]["text"] == ["wrote tiny/run.log\n"]
    png = base64.b64decode(cell["outputs"][1]["data"]["image/png"])
    assert len(png) <= 60 * 1024
    assert publish.machine_paths(dest) == []
    (dest / "x.txt").write_text("see /tmp/other/file")
    assert publish.machine_paths(dest) == ["x.txt: /tmp/other"]


def test_verify_compares_every_metrics_folder_seeds_included(tmp_path):
    golden, new = tmp_path / "golden", tmp_path / "new"
    for root, seed_acc in ((golden, 71.0), (new, 75.0)):
        _fake_run(root, str(root))
        (root / "seeds" / "seed-1" / "metrics" / "emorealm-avem_dpo.json").write_text(
            json.dumps({"average_accuracy": seed_acc}))
    assert verify.metric_folders(golden) == [".", "seeds/seed-1"]
    rows = verify.compare_all(golden, new)
    off = [(r["folder"], r["metric"]) for r in rows if not r["ok"]]
    assert off == [("seeds/seed-1", "average_accuracy")]  # 4 points off, tolerance 3
    assert any(r["metric"] == "scoring yes:relevant" and r["ok"] for r in rows)
    (new / "seeds" / "seed-1" / "metrics" / "emorealm-avem_dpo.json").unlink()
    assert [r["rerun"] for r in verify.compare_all(golden, new) if r["folder"] != "."] == [None]


def test_the_committed_run_holds_no_machine_path_once_published():
    committed = REPO_ROOT / "outputs" / "golden"
    if not (committed / "notebooks").is_dir():
        import pytest

        pytest.skip("outputs/golden predates `make reproduce-golden` (no notebooks/): republish it")
    assert publish.machine_paths(committed) == []
    big = [p for p in committed.rglob("*") if p.is_file() and p.stat().st_size > publish.MAX_FILE_BYTES]
    assert big == []
