"""`make lmms-check`: the kit's benchmarks run through lmms-eval give the kit's own figures.

    python bench/lmms_check.py [--run outputs/tiny] [--variant avem_dpo] [--out outputs/lmms-check] [--micro]

Run with the Python of an environment that has lmms-eval and the kit (the Makefile builds one).  Steps:

1. the run: `--run` (default outputs/tiny, from `make reproduce`) with its reference checkpoint, the adapter of
   `--variant`, and notebooks 05 / 07's metrics of both; without a reference checkpoint there (a fresh clone),
   or with `--micro`, a micro run is built under OUT/micro-run instead: a small synthetic world (stage 01's
   code), a randomly initialised micro checkpoint and a LoRA adapter with non-zero weights, and the kit's own
   metrics of both computed with the stage functions of notebooks 05 / 07.  Its figures mean nothing; the
   check is that lmms-eval reproduces them;
2. `avere-kit export-lmms-eval` of the profile into OUT/tasks (the run's manifests); lmms-eval gets the run's
   data root as $AVERE_DATA_ROOT (a task folder names its data root only when the two share a folder below /).
   The run is only read: the plugin reads the clips notebooks 05 / 07 decoded from the run's feature cache and
   writes nothing there (this venv's PyAV < 16 scales frames a little differently from the kit's; a clip it
   had to decode itself is counted in the report, `clips_decoded_by_plugin`);
3. lmms-eval (`python -m lmms_eval --model avere_omni`) on every exported task (generation and likelihood)
   for the reference and the adapter, into OUT/lmms/<model> emptied of earlier results first; a run that
   logs "Error during evaluation" (lmms-eval 0.7 then exits 0) or writes no results file fails the check;
4. every figure lmms-eval reports (paper, strict and scoring modes: EmoReAlM average and per task, Yes/No F1,
   failure rates; DFEW / RAVDESS UAR, WAR, F1) against the kit's metrics file of the same model, exactly, and
   the answers behind them against the kit's predictions file.  OUT/report.json; exit 1 on any difference.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCHMARKS = ("emorealm", "dfew", "ravdess")
MICRO_SIZES = {
    "n_train_source": 14, "n_dfew_test_per_class": 2, "n_dfew_train_per_class": 1, "n_ravdess_actors": 1,
    "n_mer2023": 5, "n_mer2023_worried": 1, "n_emer": 2, "n_emorealm_per_task": 4,
    "datasets": ["dfew", "ravdess", "emorealm"],
}
MICRO_ADAPTER = "micro_lora"


def log(msg: str) -> None:
    print(f"[lmms-check] {msg}", flush=True)


# --- the run ------------------------------------------------------------------------------------------------
def stage_params(profile: str, stage: str, run: Path, variant: str) -> Any:
    from avere_utils import config

    return config.load_stage(profile, stage, {"run_dir": str(run), "variant": variant})


def kit_metrics(profile: str, run: Path, variant: str, benchmarks: list[str]) -> None:
    """Notebooks 05 / 07's evaluation (the stage functions, every mode) of one model of the run."""
    from avere_utils.evaluation import classification, common, emorealm

    backend = None
    for bench in benchmarks:
        stage = "07_zero_shot_emorealm" if bench == "emorealm" else "05_zero_shot_classification"
        P = stage_params(profile, stage, run, variant)
        backend = backend or common.open_backend(P)
        if bench == "emorealm":
            emorealm.evaluate(P, backend)
        else:
            classification.evaluate_benchmark(P, bench, backend)


# the settings of stages 05 / 07 that shape the prompts, the decoded clips or the answers
PROTOCOL_KEYS = ("n_frames", "frame_size", "sample_rate", "batch_size", "max_new_tokens", "temperature", "seed",
                 "use_cache", "pack_candidates", "max_items")
PROTOCOL_KEYS_OF = {"07_zero_shot_emorealm": ("prompt_template", "choice_answer_template", "tasks"),
                    "05_zero_shot_classification": ("prompt", "label_answer_template")}


def notebook_parameters(notebook: Path) -> dict[str, Any] | None:
    """The parameters an executed notebook ran with: its parameters cell, then papermill's injected cell."""
    import ast

    if not notebook.is_file():
        return None
    out: dict[str, Any] = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.get("cell_type") != "code" or not tags & {"parameters", "injected-parameters"}:
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for node in ast.parse(src).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    out[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return out


def protocol_differences(profile: str, run: Path, variant: str, benchmarks: list[str]) -> list[str]:
    """The protocol settings the run's notebooks 05 / 07 ran with that differ from the profile's params today
    (which the export and the plugin read): such a run's answers are not the plugin's to reproduce."""
    diffs = []
    for stage in dict.fromkeys("07_zero_shot_emorealm" if b == "emorealm" else "05_zero_shot_classification"
                               for b in benchmarks):
        ran = notebook_parameters(run / "notebooks" / f"{stage}-{variant}.ipynb")
        if ran is None:
            continue
        now = stage_params(profile, stage, run, variant)
        for key in PROTOCOL_KEYS + PROTOCOL_KEYS_OF[stage]:
            if key in ran and hasattr(now, key):
                mine = getattr(now, key)
                mine = list(mine) if isinstance(mine, tuple) else mine
                if ran[key] != mine:
                    diffs.append(f"{stage}-{variant}: {key} = {ran[key]!r} in the run, {mine!r} in params/{profile}")
    return diffs


def build_micro_run(run: Path, profile: str, benchmarks: list[str]) -> str:
    """A small synthetic world, a random micro checkpoint and a LoRA adapter; the kit's metrics of both."""
    import torch

    from avere_utils import config
    from avere_utils.datasets import read_manifest
    from avere_utils.datasets.prepare import prepare_data
    from avere_utils.models import LoraSettings, load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint
    from avere_utils.protocol import CLASSIFICATION_PROMPT

    t0 = time.perf_counter()
    P01 = config.load_stage(profile, "01_data_preparation", {"run_dir": str(run), **MICRO_SIZES})
    prepare_data(P01)
    corpus = [CLASSIFICATION_PROMPT, "happiness sadness neutral anger surprise disgust fear Yes No"]
    for it in read_manifest(run / "manifests" / "emorealm.jsonl"):
        corpus += [it.text["question"], *it.text["choices"]]
    ref = build_tiny_checkpoint(run / "models" / "reference", corpus, size="micro", seed=0)
    torch.manual_seed(0)
    backend = load_backend(str(ref), lora=LoraSettings(r=4, alpha=16), device="cpu")
    with torch.no_grad():  # as after a few training steps: the adapter changes the answers
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    backend.save_adapter(str(run / "models" / MICRO_ADAPTER))
    del backend
    log(f"micro run built in {time.perf_counter() - t0:.0f} s: {run}")
    for variant in ("reference", MICRO_ADAPTER):
        t1 = time.perf_counter()
        kit_metrics(profile, run, variant, benchmarks)
        log(f"kit metrics of {variant}: {time.perf_counter() - t1:.0f} s")
    return MICRO_ADAPTER


# --- lmms-eval ------------------------------------------------------------------------------------------------
LMMS_OUTPUTS = ("*_results.json", "*results*.json", "*_samples_*.jsonl")


def clear_lmms_outputs(out: Path) -> None:
    """Remove an earlier lmms-eval run's results and samples from `out` (the check's own folder): lmms-eval
    names them by time, and a run that fails writes none, so an old file would be read as this run's."""
    for pattern in LMMS_OUTPUTS:
        for f in out.rglob(pattern):
            if f.is_file():
                f.unlink()


def clips_decoded_by_plugin(log_text: str) -> int:
    """The clips the plugin decoded itself, not read from the run's feature cache (its warnings, one per task)."""
    import re

    from avere_utils.harness.lmms_core import MISS_MARK

    return sum(int(m) for m in re.findall(re.escape(MISS_MARK) + r" (\d+) clips", log_text))


def run_lmms_eval(tasks_dir: Path, tasks: list[str], profile: str, run: Path, variant: str, out: Path,
                  limit: int | None, data_root: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    clear_lmms_outputs(out)
    model_args = f"profile={profile},run_dir={run},variant={variant}"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "avere_omni", "--model_args", model_args,
           "--tasks", ",".join(tasks), "--include_path", str(tasks_dir), "--output_path", str(out),
           "--log_samples", "--batch_size", "1", "--verbosity", "WARNING"]
    if limit:
        cmd += ["--limit", str(limit)]
    # the data root the tasks were exported from: the folder names it only when it shares a folder with it
    env = {**os.environ, "HF_DATASETS_CACHE": str(out / "hf_datasets"), "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "AVERE_DATA_ROOT": data_root}
    log(f"lmms-eval, {variant}: AVERE_DATA_ROOT={data_root} {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    (out / "lmms_eval.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    # lmms-eval 0.7 catches an exception of the evaluation, logs "Error during evaluation" and exits 0
    failed = proc.returncode != 0 or "Error during evaluation" in proc.stdout + proc.stderr
    found = sorted(glob.glob(str(out / "**" / "*results*.json"), recursive=True), key=os.path.getmtime)
    if failed or not found:
        why = f"exit {proc.returncode}" if proc.returncode else ("an error during evaluation" if failed
                                                               else "no results file")
        raise SystemExit(f"lmms-eval failed for {variant} ({why}); log: {out / 'lmms_eval.log'}\n"
                         + (proc.stdout + proc.stderr)[-3000:])
    decoded = clips_decoded_by_plugin(proc.stdout + proc.stderr)
    log(f"lmms-eval, {variant}: {seconds:.0f} s -> {found[-1]}; clips read from the run's feature cache"
        + (f", except {decoded} decoded by this venv's PyAV (answers may differ)" if decoded else ": all"))
    return {"results": json.loads(Path(found[-1]).read_text())["results"], "dir": out, "seconds": seconds,
            "clips_decoded_by_plugin": decoded}


def lmms_answers(out: Path, task: str) -> dict[str, Any]:
    """{item id: generated text or candidate losses} from lmms-eval's logged samples of one task."""
    answers: dict[str, Any] = {}
    for f in glob.glob(str(out / "**" / f"*samples_{task}.jsonl"), recursive=True):
        for line in Path(f).read_text().splitlines():
            if not line.strip():
                continue
            s = json.loads(line)
            # the kit's payload (every metric's value) names the item; lmms-eval logs only doc_id and a hash
            iid = next((v["id"] for v in s.values() if isinstance(v, dict) and "id" in v), None)
            if iid is None and isinstance(s.get("doc"), dict):
                iid = s["doc"].get("id")
            resps = s.get("filtered_resps", s.get("resps"))
            answers[str(iid if iid is not None else s.get("doc_id"))] = resps
    return answers


# --- the comparison ---------------------------------------------------------------------------------------------
def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(run: Path, variant: str, lmms: dict[str, Any], tasks_settings: dict[str, Any],
            benchmarks: list[str]) -> list[dict[str, Any]]:
    from avere_utils.harness import lmms_tasks as T
    from avere_utils.harness.lmms_export import task_name

    rows = []
    for bench in benchmarks:
        kit = json.loads((run / "metrics" / f"{bench}-{variant}.json").read_text())
        b = tasks_settings["benchmarks"][bench]
        for output, modes in (("generate", T.GENERATE_MODES), ("likelihood", T.LIKELIHOOD_MODES)):
            task = task_name(bench, output)
            got = lmms["results"].get(task, {})
            for mode in modes:
                if mode not in kit.get("modes", {}):
                    rows.append({"benchmark": bench, "task": task, "metric": mode, "kit": None, "lmms": None,
                                 "equal": False, "note": f"the kit's metrics file has no {mode} mode"})
                    continue
                for key in T.metric_keys(b["family"], b.get("has_kinds", False)):
                    name = T.metric_name(mode, key)
                    kv = T.figure(kit["modes"][mode], key)
                    lv = got.get(f"{name},none")
                    lv = float(lv) if isinstance(lv, (int, float)) else (math.nan if lv is None else lv)
                    rows.append({"benchmark": bench, "task": task, "metric": name, "kit": kv, "lmms": lv,
                                 "equal": same(kv, lv)})
    return rows


def answer_agreement(run: Path, variant: str, lmms: dict[str, Any], benchmarks: list[str]) -> dict[str, Any]:
    """How many of lmms-eval's answers equal the kit's predictions (text, stripped; chosen candidate)."""
    from avere_utils.harness.lmms_export import task_name
    from avere_utils.harness.lmms_tasks import likelihood_value

    out: dict[str, Any] = {}
    for bench in benchmarks:
        path = run / "predictions" / f"{bench}-{variant}.jsonl"
        if not path.is_file():
            continue
        kit = {}
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                kit.setdefault(r["id"], r)
        gen = lmms_answers(lmms["dir"], task_name(bench, "generate"))
        ll = lmms_answers(lmms["dir"], task_name(bench, "likelihood"))
        def text(resp: Any) -> str:
            while isinstance(resp, list):
                resp = resp[0] if resp else ""
            return str(resp or "").strip()

        n_text = sum(1 for i, resp in gen.items() if i in kit and (kit[i].get("generation") or "").strip() == text(resp))
        n_pick = 0
        for i, resp in ll.items():
            scores = kit.get(i, {}).get("scores")
            losses = [likelihood_value(r) for r in resp]
            if scores and losses and len(scores) == len(losses):
                n_pick += scores.index(max(scores)) == losses.index(min(losses))
        out[bench] = {"kit_items": len(kit), "generated": len(gen), "same_text": n_text, "scored": len(ll),
                      "same_choice": n_pick}
    return out


def answers_equal(answers: dict[str, Any]) -> bool:
    """Every item of the kit's predictions answered by lmms-eval, with the same text and the same choice."""
    return all(a["same_text"] == a["generated"] == a["kit_items"] and a["same_choice"] == a["scored"] == a["kit_items"]
               for a in answers.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--run", default="outputs/tiny", help="a run folder with models/reference and metrics/")
    ap.add_argument("--variant", default="avem_dpo", help="the adapter compared besides the reference")
    ap.add_argument("--out", default="outputs/lmms-check")
    ap.add_argument("--micro", action="store_true", help="build and use a micro run even when --run exists")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    ap.add_argument("--limit", type=int, help="lmms-eval --limit (a quick look; figures then differ from the kit's)")
    args = ap.parse_args(argv)

    from avere_utils.harness import lmms_export
    from avere_utils.paths import repo_path

    out = repo_path(args.out)
    run = repo_path(args.run)
    variant = args.variant
    if args.micro or not (run / "models" / "reference" / "config.json").is_file():
        why = "--micro" if args.micro else f"{run} has no reference checkpoint (make reproduce builds one)"
        log(f"{why}: building a micro run (random weights; the check is that lmms-eval gives the kit's figures)")
        run = out / "micro-run"
        if (run / "models" / "reference" / "config.json").is_file() and all(
                (run / "metrics" / f"{b}-{v}.json").is_file() for b in args.benchmarks for v in ("reference", MICRO_ADAPTER)):
            log(f"reusing {run}")
            variant = MICRO_ADAPTER
        else:
            variant = build_micro_run(run, args.profile, list(args.benchmarks))
    missing = [f"{b}-{v}.json" for b in args.benchmarks for v in ("reference", variant)
               if not (run / "metrics" / f"{b}-{v}.json").is_file()]
    if missing:
        raise SystemExit(f"{run}/metrics lacks {missing}: run notebooks 05 / 07 for these variants first")

    diffs = [d for v in ("reference", variant) for d in protocol_differences(args.profile, run, v, list(args.benchmarks))]
    if diffs:
        raise SystemExit(f"{run} was evaluated with other protocol settings than params/{args.profile} holds today "
                         "(the tasks and the plugin read the profile's):\n  " + "\n  ".join(diffs))
    written = lmms_export.export(args.profile, out / "tasks", benchmarks=args.benchmarks,
                                 overrides={"run_dir": str(run)})
    settings = json.loads((out / "tasks" / "avere_tasks.json").read_text())
    report: dict[str, Any] = {"run": str(run), "profile": args.profile, "tasks": written["tasks"], "models": {}}
    ok = True
    for v in ("reference", variant):
        lmms = run_lmms_eval(out / "tasks", written["tasks"], args.profile, run, v, out / "lmms" / v, args.limit,
                             written["data_root_path"])
        rows = compare(run, v, lmms, settings, list(args.benchmarks))
        bad = [r for r in rows if not r["equal"]]
        answers = answer_agreement(run, v, lmms, list(args.benchmarks))
        ok &= not bad and answers_equal(answers)
        report["models"][v] = {"figures": rows, "n_figures": len(rows), "n_different": len(bad),
                               "answers": answers, "answers_equal": answers_equal(answers),
                               "lmms_eval_seconds": round(lmms["seconds"], 1),
                               "clips_decoded_by_plugin": lmms["clips_decoded_by_plugin"]}
        for r in rows:
            if r["metric"].endswith(("average_accuracy", "_uar")) or not r["equal"]:
                log(f"{v:12s} {r['task']:20s} {r['metric']:34s} kit {r['kit']!s:>20} lmms-eval {r['lmms']!s:>20}"
                    f"  {'ok' if r['equal'] else 'DIFFERENT'}")
        log(f"{v}: {len(rows) - len(bad)} of {len(rows)} figures equal; answers "
            f"{'all equal' if answers_equal(answers) else 'DIFFERENT'} {answers}")
    report["equal"] = ok
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    log(f"{'PASS' if ok else 'FAIL'}: report {out / 'report.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
