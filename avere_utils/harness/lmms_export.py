"""`avere-kit export-lmms-eval --profile P OUT`: the kit's benchmarks as an lmms-eval task folder.

    avere-kit export-lmms-eval --profile tiny lmms_tasks/
    python -m lmms_eval --model avere_omni --model_args profile=tiny,variant=avem_dpo \
        --tasks avere_emorealm,avere_dfew --include_path lmms_tasks/ --output_path lmms_out/

OUT receives, per benchmark, the documents (one JSONL line per item of the profile's manifest, in its order,
after the stage's own item selection: `max_items`, EmoReAlM's `tasks`), a generation task `avere_<benchmark>`
(paper and strict figures) and a likelihood task `avere_<benchmark>_ll` (`multiple_choice`, the scoring-mode
figures), each a YAML file, plus a `utils` module (binds `lmms_tasks.TaskFolder` to the folder),
`avere_tasks.json` (the profile's protocol settings) and a README.  Tags: `avere` (all), `avere_generate`,
`avere_likelihood`.

No absolute path is written: documents name their media relative to the profile's data root, and
`avere_tasks.json` names the data root relative to OUT (`$AVERE_DATA_ROOT` overrides it when the data
moves).  lmms-eval resolves `data_files` relative to the YAML, so the folder can be moved with its data
root or pointed at a new one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from avere_utils import benchmarks
from avere_utils.harness import lmms_tasks as T
from avere_utils.records import Item

log = logging.getLogger(__name__)

DEFAULT_BENCHMARKS: tuple[str, ...] = ("emorealm", "dfew", "ravdess")
# every benchmark answered with a label or a letter (EMER's descriptions need a judge, which lmms-eval lacks)
KNOWN_BENCHMARKS: tuple[str, ...] = (*benchmarks.names("label", standalone=True),
                                     *benchmarks.names("question", standalone=True))
STAGE_OF = {name: benchmarks.get(name).stage for name in KNOWN_BENCHMARKS}  # the stage whose params it is exported with
TASK_PREFIX = "avere"
TAGS = {"generate": [TASK_PREFIX, f"{TASK_PREFIX}_generate"], "likelihood": [TASK_PREFIX, f"{TASK_PREFIX}_likelihood"]}

UTILS_PY = '''"""lmms-eval task functions of the AVERE kit's benchmarks, written by `avere-kit export-lmms-eval`.

Every function is the kit's own (avere_utils.harness.lmms_tasks), bound to this folder: its documents,
its avere_tasks.json (the protocol settings of the profile it was exported from) and its data root.
The figures come from the kit's scorers, the ones `avere-kit score` and notebooks 05 / 07 use.
"""
from avere_utils.harness import lmms_tasks as _kit

_folder = _kit.TaskFolder(__file__)

doc_to_visual = _folder.doc_to_visual
doc_to_text = _folder.doc_to_text
doc_to_target = _folder.doc_to_target
doc_to_choice = _folder.doc_to_choice
doc_to_target_index = _folder.doc_to_target_index
process_results_generate = _folder.process_results_generate
process_results_likelihood = _folder.process_results_likelihood

globals().update(_kit.AGGREGATIONS)  # agg_<mode>_<figure>, one per metric of the YAMLs
'''

README_MD = """# AVERE benchmarks for lmms-eval ({profile} profile)

Written by `avere-kit export-lmms-eval --profile {profile}`; regenerate rather than edit.

```
python -m lmms_eval --model avere_omni --model_args profile={profile},variant=reference \\
    --tasks {tasks} --include_path THIS_FOLDER --output_path OUT --log_samples
```

Tasks: {task_list}.
`avere_<benchmark>` generates answers (figures `paper_*`: the released evaluation rules; `strict_*`: the kit's
parser); `avere_<benchmark>_ll` compares candidate answers by likelihood (`scoring_*`).  Media are read under
the data root `{data_root}` (relative to this folder); `AVERE_DATA_ROOT` overrides it.  Any lmms-eval model that
takes video paths can run the generation tasks; the likelihood tasks expect `loglikelihood` to return a loss
(lower = more likely), as lmms-eval's models do.
"""


class _Function(str):
    """A `!function utils.NAME` reference in an exported YAML."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Function, lambda d, v: d.represent_scalar("!function", f"utils.{v}"))


def dump_yaml(config: Mapping[str, Any]) -> str:
    text = yaml.dump(dict(config), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    return re.sub(r"!function '(utils\.\w+)'", r"!function \1", text)  # as lmms-eval's own task files write it


def task_name(benchmark: str, output: str) -> str:
    return f"{TASK_PREFIX}_{benchmark}" + ("_ll" if output == "likelihood" else "")


def task_config(benchmark: str, output: str, bench: Mapping[str, Any], generation: Mapping[str, Any]) -> dict[str, Any]:
    """The YAML of one task (the keys of lmms-eval's TaskConfig)."""
    fam = bench["family"]
    modes = T.GENERATE_MODES if output == "generate" else T.LIKELIHOOD_MODES
    cfg: dict[str, Any] = {
        "task": task_name(benchmark, output),
        "tag": TAGS[output],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {T.SPLIT: f"{benchmark}.jsonl"}},
        "test_split": T.SPLIT,
        "output_type": "generate_until" if output == "generate" else "multiple_choice",
        "doc_to_visual": _Function("doc_to_visual"),
        "doc_to_text": _Function("doc_to_text"),
    }
    if output == "generate":
        cfg["doc_to_target"] = _Function("doc_to_target")
        cfg["process_results"] = _Function("process_results_generate")
        # `until: []` - the kit decodes to EOS or max_new_tokens; a stop string would cut answers the
        # released rules read whole
        cfg["generation_kwargs"] = {"max_new_tokens": int(generation["max_new_tokens"]),
                                    "temperature": float(generation["temperature"]),
                                    "do_sample": float(generation["temperature"]) > 0, "until": []}
    else:
        cfg["doc_to_target"] = _Function("doc_to_target_index")
        cfg["doc_to_choice"] = _Function("doc_to_choice")
        cfg["target_delimiter"] = ""  # the candidate is the whole continuation, as the kit scores it
        cfg["process_results"] = _Function("process_results_likelihood")
    cfg["metric_list"] = [
        {"metric": T.metric_name(mode, key), "aggregation": _Function(T.aggregation_name(mode, key)),
         "higher_is_better": key not in T.LOWER_IS_BETTER}
        for mode in modes for key in T.metric_keys(fam, bench.get("has_kinds", False))]
    cfg["metadata"] = {"version": float(T.FORMAT), "avere_profile": bench["profile"]}
    return cfg


# --- items -------------------------------------------------------------------------------------------------
def _stage_params(profile: str, benchmark: str, overrides: Mapping[str, Any]) -> Any:
    from avere_utils import config, runner

    stage = STAGE_OF[benchmark]
    return config.load_stage(profile, stage, runner.overrides_for(stage, overrides))


def _absolute_media(items: Sequence[Item], run_dir: Path) -> list[Item]:
    """Published manifests name clips relative to the run folder; a run's own manifests name them absolutely."""
    def absolute(p: str | None) -> str | None:
        return p if p is None or os.path.isabs(p) else str(run_dir / p)

    return [dataclasses.replace(it, video=absolute(it.video), audio=absolute(it.audio)) for it in items]


def benchmark_items(params: Any, benchmark: str) -> list[Item]:
    """The items the stage would evaluate: its manifest, `max_items`, and the scorer's own selection."""
    from avere_utils.evaluation import common, registry

    items = common.load_items(params, benchmark)
    items = registry.get_scorer(benchmark).prepare(params, list(items))
    return _absolute_media(items, params.path("run_dir"))


def bench_settings(params: Any, benchmark: str, items: Sequence[Item], profile: str) -> dict[str, Any]:
    fam = T.family(benchmark)
    out: dict[str, Any] = {"family": fam, "profile": profile, "n_items": len(items),
                           "generation": {"max_new_tokens": params.max_new_tokens, "temperature": params.temperature}}
    if fam == "emorealm":
        out.update(prompt_template=params.prompt_template, choice_answer_template=params.choice_answer_template,
                   tasks=[t for t in params.tasks if any(it.text["task"] == t for it in items)],
                   has_kinds=any(it.text.get("kind") for it in items))
    else:
        from avere_utils.evaluation.classification import classes_for

        out.update(prompt=params.prompt, label_answer_template=params.label_answer_template,
                   classes=list(classes_for(benchmark)))
    return out


def relative_data_root(root: Path, out: Path) -> str | None:
    """The data root relative to the task folder, or None when the two share no folder but the filesystem's
    root (a path that climbs to / would be this machine's layout under another name): then the folder is
    parameterised by $AVERE_DATA_ROOT alone."""
    if os.path.commonpath([root, out]) == os.path.abspath(os.sep):
        return None
    return Path(os.path.relpath(root, out)).as_posix()


def _write(path: Path, text: str) -> None:
    from avere_utils.paths import atomic_write_text

    atomic_write_text(path, text)


def export(profile: str, out: str | os.PathLike, *, benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
           overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the task folder `out` for `profile`; returns what was written (tasks, items per benchmark, the data
    root as written into the folder - relative, or None - and as an absolute path of this machine, which a caller
    passes as $AVERE_DATA_ROOT when the folder names none)."""
    from avere_utils.paths import check_output_path

    out = check_output_path(out, "lmms-eval task folder").absolute()
    unknown = [b for b in benchmarks if b not in KNOWN_BENCHMARKS]
    if unknown:
        raise ValueError(f"no lmms-eval export for {unknown}; one of {list(KNOWN_BENCHMARKS)}")
    overrides = dict(overrides or {})
    out.mkdir(parents=True, exist_ok=True)
    data_roots: set[Path] = set()
    settings: dict[str, Any] = {"format": T.FORMAT, "profile": profile, "data_root_env": T.DATA_ROOT_ENV,
                                "benchmarks": {}}
    docs_by_bench: dict[str, list[dict[str, Any]]] = {}
    params_by_bench: dict[str, Any] = {}
    for bench in dict.fromkeys(benchmarks):
        params = _stage_params(profile, bench, overrides)
        items = benchmark_items(params, bench)
        root = params.path("data_root").resolve()
        data_roots.add(root)
        docs_by_bench[bench] = [T.item_to_doc(it, root) for it in items]
        settings["benchmarks"][bench] = bench_settings(params, bench, items, profile)
        params_by_bench[bench] = params
    if len(data_roots) != 1:
        raise ValueError(f"the benchmarks' params name several data roots {sorted(map(str, data_roots))}; "
                         "export them into separate folders")
    data_root = data_roots.pop()
    settings["data_root"] = relative_data_root(data_root, out.resolve())
    if settings["data_root"] is None:
        log.warning("the data root and %s share no folder but /: the folder names none; set $%s to the data root "
                    "before running lmms-eval", out, T.DATA_ROOT_ENV)

    tasks: list[str] = []
    for bench, docs in docs_by_bench.items():
        _write(out / f"{bench}.jsonl", "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        b = settings["benchmarks"][bench]
        for output in ("generate", "likelihood"):
            cfg = task_config(bench, output, b, b["generation"])
            _write(out / f"{cfg['task']}.yaml", dump_yaml(cfg))
            tasks.append(cfg["task"])
    _write(out / T.SETTINGS_FILE, json.dumps(settings, indent=1, ensure_ascii=False) + "\n")
    _write(out / "utils.py", UTILS_PY)
    _write(out / "README.md", README_MD.format(profile=profile, tasks=",".join(t for t in tasks if not t.endswith("_ll")),
                                               task_list=", ".join(f"`{t}`" for t in tasks),
                                               data_root=settings["data_root"] or f"(none: set ${T.DATA_ROOT_ENV})"))
    log.info("wrote %d lmms-eval tasks into %s", len(tasks), out)
    return {"folder": str(out), "tasks": tasks, "n_items": {b: len(d) for b, d in docs_by_bench.items()},
            "data_root": settings["data_root"], "data_root_path": str(data_root)}


# --- the command --------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="the task folder to write (lmms-eval --include_path OUT)")
    p.add_argument("--benchmarks", type=_benchmark_list, default=list(DEFAULT_BENCHMARKS), metavar="B1,B2",
                   help=f"comma-separated, default {','.join(DEFAULT_BENCHMARKS)} (also: mer2023)")


def _benchmark_list(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in KNOWN_BENCHMARKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{value!r}: benchmarks are a comma-separated list of {', '.join(KNOWN_BENCHMARKS)}")
    return names


def run_command(args: argparse.Namespace, overrides: Mapping[str, Any]) -> int:
    try:
        written = export(args.profile, args.out, benchmarks=args.benchmarks, overrides=overrides)
    except (FileNotFoundError, ValueError) as e:
        print(f"avere-kit export-lmms-eval: {e}", file=sys.stderr)
        return 2
    for b, n in written["n_items"].items():
        print(f"{b}: {n} items")
    print(f"tasks: {', '.join(written['tasks'])}")
    root = written["data_root"]
    print(f"wrote {written['folder']} (data root: {root + ', relative to it' if root else 'none, set $' + T.DATA_ROOT_ENV})")
    return 0
