"""`avere-kit preflight`: every problem of a paper run named at once, with fakes on the CPU.

A micro Qwen2.5-Omni thinker saved in the real sharded layout (config.json, two shards and
model.safetensors.index.json, tokenizer files, processor settings), a small synthetic world in the real
datasets' layouts, and an injected CUDA probe.  The broken tree misses one shard and one clip, names a wrong
architecture and leaves a key variable unset: one run names all of them and exits non-zero."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from avere_utils import cli, preflight
from avere_utils.preflight import PROBLEM, CudaInfo

SMALL = dict(n_train_source=14, n_dfew_test_per_class=2, n_dfew_train_per_class=1, n_ravdess_actors=1,
             n_mer2023=10, n_mer2023_worried=2, n_emer=7, n_emorealm_per_task=4, clip_seconds=1.0, video_size=64,
             world_workers=1)
SECRET = "sk-preflight-9f3c2e7a1b"
PROMPT = "Compare.\nReference: {reference}\nPrediction: {prediction}\nReply in JSON."


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from avere_utils.config import build
    from avere_utils.datasets.params import DataPrepParams
    from avere_utils.datasets.prepare import prepare_data

    d = tmp_path_factory.mktemp("pf-world")
    prepare_data(build(DataPrepParams, {"run_dir": str(d / "run"), "data_root": str(d / "world"), **SMALL}, "t"))
    (d / "world" / "judge_prompt.txt").write_text(PROMPT)
    return d / "world"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The micro thinker in the sharded layout of a real checkpoint (two shards + index)."""
    from safetensors.torch import load_file, save_file

    from avere_utils.models.tiny import build_tiny_checkpoint

    out = build_tiny_checkpoint(tmp_path_factory.mktemp("pf-model") / "Qwen2.5-Omni-micro", ["happy sad voice"],
                                size="micro")
    tensors = load_file(out / "model.safetensors")
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:]), 1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({k: tensors[k].contiguous() for k in part}, out / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (out / "model.safetensors").unlink()
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                  "weight_map": weight_map}))
    return out


def paper_set(data_root: Path, base: Path) -> list[str]:
    return ["--set", f"data_root={data_root}", f"base_model_path={base}", "expected_counts={}"]


def gpu(count=1, gib=80.0):
    return lambda: CudaInfo(True, count, [gib] * count, ["Fake H100"] * count, "2.13.0", "12.8")


def overrides(data_root, base):
    return {"data_root": str(data_root), "base_model_path": str(base), "expected_counts": {}}


@pytest.mark.model  # builds a micro Qwen2.5-Omni thinker: not in make test-fast
def test_a_complete_paper_tree_passes_with_a_gpu(world, model, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    rep = preflight.preflight("paper", overrides(world, model), out=str(tmp_path / "run"), cuda_probe=gpu())
    text = rep.format()
    assert rep.ok, text
    assert "index complete" in text and "LoRA target modules present" in text and "GEMINI_API_KEY is set" in text
    assert "global batch 64 on 1 process(es): 32 accumulation steps" in text
    assert "stage 02: about 56 LLM requests" in text and "stage 06: 49 judge requests" in text
    assert SECRET not in text
    # eight GPUs: the paper's layout, four accumulation steps; a GPU too small for one step is a problem
    rep8 = preflight.preflight("paper", overrides(world, model), out=str(tmp_path / "run"), cuda_probe=gpu(8))
    assert "global batch 64 on 8 process(es): 4 accumulation steps" in rep8.format()
    small = preflight.preflight("paper", overrides(world, model), out=str(tmp_path / "run"), cuda_probe=gpu(1, 2.0))
    assert [ln.section for ln in small.problems] == ["GPU"] and "more than the 2 GiB" in small.problems[0].text
    # no CUDA at all: named
    none = preflight.preflight("paper", overrides(world, model), out=str(tmp_path / "run"),
                               cuda_probe=lambda: CudaInfo(False, torch_version="2.13.0+cpu"))
    assert [ln.text.split(" (")[0] for ln in none.problems] == ["CUDA is not available"]


@pytest.mark.model  # builds a micro Qwen2.5-Omni thinker: not in make test-fast
def test_a_broken_paper_tree_names_every_problem_at_once(world, model, tmp_path, monkeypatch, capsys):
    data = shutil.copytree(world, tmp_path / "world", symlinks=True)
    clip = sorted((data / "DFEW").rglob("*.mp4"))[0]
    clip.unlink()
    base = shutil.copytree(model, tmp_path / "model")
    (base / "model-00002-of-00002.safetensors").unlink()
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(cfg | {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    code = cli.main(["preflight", "--profile", "paper", "--out", str(tmp_path / "run"), *paper_set(data, base)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out + err and SECRET not in out + err
    summary = out[out.index("preflight: FAILED"):]
    assert "dfew: 1 missing_video" in summary
    assert "1 of 2 shards named in model.safetensors.index.json are missing: model-00002-of-00002.safetensors" in summary
    assert "LlamaForCausalLM" in summary and "not a Qwen2.5-Omni thinker" in summary
    assert "GEMINI_API_KEY is not set" in summary and "OPENAI_API_KEY is not set" not in out
    assert "CUDA is not available" in summary  # this CPU machine


def test_an_empty_model_folder_and_a_missing_judge_prompt_are_named(world, tmp_path, monkeypatch):
    data = tmp_path / "world"
    data.mkdir()
    for d in world.iterdir():  # the same clips, but no judge prompt
        if d.name != "judge_prompt.txt":
            (data / d.name).symlink_to(d)
    (tmp_path / "empty").mkdir()
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rep = preflight.preflight("paper", overrides(data, tmp_path / "empty"), out=str(tmp_path / "run"),
                              cuda_probe=gpu())
    texts = [ln.text for ln in rep.problems]
    assert any("config.json: missing" in t for t in texts)
    assert any("no model.safetensors.index.json nor model.safetensors" in t for t in texts)
    assert any("tokenizer files missing" in t for t in texts)
    assert any("judge_prompt_file" in t and "not found" in t for t in texts)
    assert {t.split(" is not set")[0] for t in texts if " is not set" in t} == {"GEMINI_API_KEY", "OPENAI_API_KEY"}


@pytest.mark.model  # builds a micro Qwen2.5-Omni thinker: not in make test-fast
def test_lora_targets_absent_from_the_weight_index_are_named(model, tmp_path):
    base = shutil.copytree(model, tmp_path / "model")
    index = json.loads((base / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if ".q_proj." not in k}
    (base / "model.safetensors.index.json").write_text(json.dumps(index))
    rep = preflight.PreflightReport("paper", str(tmp_path))
    preflight.check_base_model(rep, base, ["q_proj", "v_proj"])
    assert [ln.text for ln in rep.lines if ln.status == PROBLEM] == [
        "LoRA target modules ['q_proj'] not found among the language model's weights "
        "(found ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'up_proj', 'v_proj'])"]


def test_the_tiny_profile_passes_before_and_after_its_world_exists(world, tmp_path, capsys):
    assert cli.main(["preflight", "--profile", "tiny", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "preflight: OK" in out and "not needed the tiny profile trains and evaluates on the CPU" in out
    assert "not needed the synthetic world is generated by stage 01" in out
    sizes = [f"{k}={v}" for k, v in SMALL.items()]
    assert cli.main(["preflight", "--profile", "tiny", "--out", str(tmp_path / "run"),
                     "--set", f"data_root={world}", *sizes]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ok +dfew: \d+ items, \d+ clips checked", out) and "preflight: OK" in out
