"""`make lmms-check`: the kit's benchmarks run through lmms-eval give the kit's own figures.

    python bench/lmms_check.py [--run outputs/tiny] [--variant avem_dpo] [--out outputs/lmms-check] [--micro]

Run with the Python of an environment that has lmms-eval and the kit (the Makefile builds one).  Steps:

1. the run: `--run` (default outputs/tiny, from `make reproduce`) with its reference checkpoint, the adapter of
   `--variant`, and notebooks 05 / 07's metrics of both; without a reference checkpoint there (a fresh clone),
   or with `--micro`, a micro run is built under OUT/micro-run instead: a small synthetic world (stage 01's
   code), a randomly initialised micro checkpoint and a LoRA adapter with non-zero weights, and the kit's own
   metrics of both computed with the stage functions of notebooks 05 / 07.  Its figures mean nothing; the
   check is that lmms-eval reproduces them;
2. `avere-kit export-lmms-eval` of the profile into OUT/tasks (the run's manifests);
3. lmms-eval (`python -m lmms_eval --model avere_omni`) on every exported task (generation and likelihood)
   for the reference and the adapter;
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
def run_lmms_eval(tasks_dir: Path, tasks: list[str], profile: str, run: Path, variant: str, out: Path,
                  limit: int | None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    model_args = f"profile={profile},run_dir={run},variant={variant}"
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "avere_omni", "--model_args", model_args,
           "--tasks", ",".join(tasks), "--include_path", str(tasks_dir), "--output_path", str(out),
           "--log_samples", "--batch_size", "1", "--verbosity", "WARNING"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(out / "hf_datasets"), "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log(f"lmms-eval, {variant}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    (out / "lmms_eval.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"lmms-eval failed for {variant} (exit {proc.returncode}); log: {out / 'lmms_eval.log'}\n"
                         + proc.stderr[-3000:])
    found = sorted(glob.glob(str(out / "**" / "*results*.json"), recursive=True), key=os.path.getmtime)
    if not found:
        raise SystemExit(f"lmms-eval wrote no results file under {out}")
    log(f"lmms-eval, {variant}: {time.perf_counter() - t0:.0f} s -> {found[-1]}")
    return {"results": json.loads(Path(found[-1]).read_text())["results"], "dir": out,
            "seconds": time.perf_counter() - t0}


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
        out[bench] = {"generated": len(gen), "same_text": n_text, "scored": len(ll), "same_choice": n_pick}
    return out


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

    written = lmms_export.export(args.profile, out / "tasks", benchmarks=args.benchmarks,
                                 overrides={"run_dir": str(run)})
    settings = json.loads((out / "tasks" / "avere_tasks.json").read_text())
    report: dict[str, Any] = {"run": str(run), "profile": args.profile, "tasks": written["tasks"], "models": {}}
    ok = True
    for v in ("reference", variant):
        lmms = run_lmms_eval(out / "tasks", written["tasks"], args.profile, run, v, out / "lmms" / v, args.limit)
        rows = compare(run, v, lmms, settings, list(args.benchmarks))
        bad = [r for r in rows if not r["equal"]]
        ok &= not bad
        report["models"][v] = {"figures": rows, "n_figures": len(rows), "n_different": len(bad),
                               "answers": answer_agreement(run, v, lmms, list(args.benchmarks)),
                               "lmms_eval_seconds": round(lmms["seconds"], 1)}
        for r in rows:
            if r["metric"].endswith(("average_accuracy", "_uar")) or not r["equal"]:
                log(f"{v:12s} {r['task']:20s} {r['metric']:34s} kit {r['kit']!s:>20} lmms-eval {r['lmms']!s:>20}"
                    f"  {'ok' if r['equal'] else 'DIFFERENT'}")
        log(f"{v}: {len(rows) - len(bad)} of {len(rows)} figures equal; answers {report['models'][v]['answers']}")
    report["equal"] = ok
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    log(f"{'PASS' if ok else 'FAIL'}: report {out / 'report.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
