"""Typed parameters.

Each notebook has one dataclass of parameters (registered in STAGES) and one YAML per profile under
params/<profile>/<stage>.yaml.  The YAML, papermill's injected cell and the notebook's own `parameters`
cell all hold the same flat keys; `load_stage` / `notebook_params` turn them into a validated object:

* an unknown key, or a value of the wrong type, is an error naming the key, the source and the type;
* strings may reference other keys of the same stage as `${key}` (e.g. `${run_dir}/pairs`);
* keys ending in a path suffix (_dir, _root, _path, _file) become absolute, relative to the repo root.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import os
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import yaml

from avere_utils.paths import REPO_ROOT, check_output_path, repo_path

PARAMS_DIR = REPO_ROOT / "params"
PATH_SUFFIXES = ("_dir", "_root", "_path", "_file")
# nbval (make nbval) sets it so that the notebooks, run at their tiny defaults, write into a fresh folder
RUN_DIR_ENV = "AVERE_RUN_DIR"

# notebook (stage) name -> "module:Class" of its parameters (or the class itself)
STAGES: dict[str, str | type] = {
    "01_data_preparation": "avere_utils.datasets.params:DataPrepParams",
    "02_pair_construction": "avere_utils.pairs.params:PairParams",
    "03_reference_model": "avere_utils.models.params:ReferenceParams",
    "04_avem_dpo_training": "avere_utils.training.params:TrainParams",
    "05_zero_shot_classification": "avere_utils.evaluation.params:ClassificationParams",
    "06_zero_shot_emer": "avere_utils.evaluation.params:EmerParams",
    "07_zero_shot_emorealm": "avere_utils.evaluation.params:EmoRealmParams",
    "08_results_and_ablations": "avere_utils.report.params:ResultsParams",
}


class ConfigError(ValueError):
    """A parameter file or override that does not fit its schema."""


# Keys naming the environment variable that holds an API key.  The value must be a variable NAME: papermill
# writes every parameter into the executed notebook, so a pasted key would end up in outputs/.
API_KEY_ENV_SUFFIX = "_api_key_env"
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


def check_env_name(value: str, what: str) -> str:
    """`value` must look like an environment variable name (upper case, digits, underscores) or be empty
    (no key: a local server).  The value itself is never echoed: it might be a pasted secret."""
    if value and not ENV_NAME.match(value):
        raise ConfigError(f"{what} must be the NAME of an environment variable (e.g. OPENAI_API_KEY), and its "
                          f"value ({len(value)} characters, not shown) is not one; never put a key in params")
    return value


# --- one definition per setting: its default and its help --------------------------------------------
def param(default: Any, help: str, **kw: Any) -> Any:
    """A stage parameter: the default and the help text that `avere-kit params` prints, side by side.

    A list or dict default is copied for each instance (a dataclass may not share one mutable default)."""
    metadata = {**kw.pop("metadata", {}), "help": help}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


def param_help(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def default_of(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (a fresh copy for list/dict defaults), so that a
    library config can take its defaults from the stage parameters instead of repeating them."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    raise KeyError(f"{cls.__name__} has no field {name!r} with a default")


# --- renamed keys: old name -> (the new name or names, why) ------------------------------------------
# An old name is refused wherever it is given (a params YAML, --set, a notebook's parameters) with an error
# naming the new one, so that an old file never runs with its value silently dropped.  The check applies
# to a stage that has every new name (elsewhere the old name is an ordinary unknown key).
RENAMED_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "per_device_batch_size": (("per_device_train_batch_size",), "Hugging Face name"),
    "grad_accum_steps": (("gradient_accumulation_steps",), "Hugging Face name"),
    "num_epochs": (("num_train_epochs",), "Hugging Face name"),
    "lr_scheduler": (("lr_scheduler_type",), "Hugging Face name"),
    "mixed_precision": (("bf16", "fp16"), "Hugging Face names: 'bf16' -> bf16: true, 'fp16' -> fp16: true, "
                                          "'no' -> both false"),
}


def check_renamed(keys: Iterable[str], known: Collection[str], source: str) -> None:
    """A ConfigError for the first key of `keys` that was renamed to key(s) of `known`, naming the new one."""
    for key in keys:
        new, why = RENAMED_KEYS.get(key, ((), ""))
        if new and key not in known and all(n in known for n in new):
            raise ConfigError(f"{source}: {key} was renamed {' and '.join(new)} ({why})")


def close_matches(key: str, known: Sequence[str]) -> str:
    """' (did you mean a, b?)' for a mistyped key, or '' when nothing is close."""
    near = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


@dataclass
class StageParams:
    """Keys every stage has.  Subclasses add their own (all with defaults equal to the tiny profile)."""

    profile: str = param("tiny", "the profile these values belong to (each params/<profile>/*.yaml names it)")
    run_dir: str = param("outputs/tiny", "the run folder every stage reads from and writes into")
    data_root: str = param("${run_dir}/world", "the folder holding the datasets (tiny: the generated synthetic world)")
    seed: int = param(0, "seed of every random choice of the stage (sampling, initialisation, shuffling)")
    device: str = param("auto", "torch device: auto (cuda when available, else cpu), or any torch name (cpu, cuda, cuda:1)")
    torch_threads: int = param(1, "CPU threads of torch's kernels (0: torch's default, one per core). One thread is "
                                  "bit-identical on any core count and keeps its speed on a busy machine: measured "
                                  "on 2 cores, an SFT step takes 0.31 s at 1 thread with or without a CPU-bound "
                                  "process beside it, 0.21 s at 2 threads on a quiet machine but 0.83 s beside one")

    def path(self, key: str) -> Path:
        return repo_path(getattr(self, key))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunConfig:
    """params/<profile>/run.yaml: which notebooks run, in which order, for which model variants."""

    run_dir: str = "outputs/tiny"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    train_variants: list[str] = field(default_factory=list)
    eval_variants: list[str] = field(default_factory=list)
    per_train_variant: list[str] = field(default_factory=lambda: ["04_avem_dpo_training"])
    per_eval_variant: list[str] = field(default_factory=lambda: [
        "05_zero_shot_classification", "06_zero_shot_emer", "07_zero_shot_emorealm"])
    variant_jobs: int = param(1, "executions of a per-variant stage run at once, in worker processes with a kernel "
                                 "each (a training stage's first runs alone: it fills the reference log-prob "
                                 "cache); results do not depend on it")
    num_processes: int = param(1, "processes of each per-variant training execution (stage 04): > 1 runs its "
                                  "notebook under `accelerate launch --num_processes N`, one copy per process "
                                  "(one per GPU; CPU: gloo); the global batch is kept (docs/training.md); "
                                  "the evaluation stages stay single-process; --set num_processes=N")
    accelerate_config: str = param("", "an accelerate config file for that launch (e.g. configs/accelerate/ddp.yaml; "
                                       "'' = accelerate's defaults); used only when num_processes > 1, whose "
                                       "value wins over the file's; a DeepSpeed config is refused")

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ConfigError(f"RunConfig: key 'num_processes' must be >= 1, got {self.num_processes}")


def stage_class(stage: str) -> type:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}{close_matches(stage, list(STAGES))}; "
                          f"stages are: {', '.join(STAGES)}")
    target = STAGES[stage]
    if isinstance(target, type):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# --- type checking -----------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:  # a choice: the type of its values (the help lists them)
        return " | ".join(sorted({type(a).__name__ for a in typing.get_args(tp)}))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _NotAllowed(TypeError):
    """A value outside a Literal's choices: `build` names the key, the value and the choices."""

    def __init__(self, value: Any, allowed: tuple[Any, ...]):
        super().__init__()
        self.value, self.allowed = value, allowed


def _check(value: Any, tp: Any) -> Any:
    """Return value coerced to tp where lossless (int -> float), else raise TypeError (_NotAllowed for a
    value outside a Literal's choices, also inside a list or dict).  Choices are typed Literal[...]."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            if arg is type(None):
                continue
            try:
                return _check(value, arg)
            except TypeError:
                pass
        raise TypeError
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise _NotAllowed(value, typing.get_args(tp))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        return [_check(v, arg) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_check(k, kt): _check(v, vt) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(values: dict[str, Any], source: str) -> dict[str, Any]:
    out = dict(values)
    for _ in range(10):  # references may chain (a -> b -> c); 10 levels is plenty
        changed = False
        for k, v in out.items():
            if not isinstance(v, str) or "${" not in v:
                continue

            def sub(m: re.Match[str], k: str = k) -> str:
                ref = m.group(1)
                if ref not in out:
                    raise ConfigError(f"{source}: key {k!r} references ${{{ref}}}, which is not a key of this stage")
                return str(out[ref])

            new = _REF.sub(sub, v)
            changed |= new != v
            out[k] = new
        if not changed:
            break
    for k, v in out.items():
        if isinstance(v, str) and _REF.search(v):
            raise ConfigError(f"{source}: key {k!r} has a circular reference: {v!r}")
    return out


def build(cls: type, raw: Mapping[str, Any], source: str, *, resolve: bool = True) -> Any:
    """Validate raw values against the dataclass `cls`; missing keys take the dataclass default."""
    known = {f.name: f for f in fields(cls)}
    check_renamed(raw, known, source)
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} for {cls.__name__}"
                          f"{close_matches(unknown[0], list(known))}; known keys: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            values[name] = _check(value, hints[name])
        except _NotAllowed as err:
            raise ConfigError(f"{source}: key {name!r} must be one of {list(err.allowed)}, got {err.value!r}") from None
        except TypeError:
            shown = "(not shown)" if name.endswith(API_KEY_ENV_SUFFIX) else repr(value)
            raise ConfigError(f"{source}: key {name!r} should be {_type_name(hints[name])}, "
                              f"got {type(value).__name__} {shown}") from None
        if name.endswith(API_KEY_ENV_SUFFIX):
            check_env_name(values[name], f"{source}: key {name!r}")
        if name.endswith(PATH_SUFFIXES) and isinstance(values[name], str):
            try:
                check_output_path(values[name], f"{source}: key {name!r} =")
            except ValueError as err:
                raise ConfigError(str(err)) from None
    obj = cls(**values)
    if not resolve:
        return obj
    resolved = _interpolate(dataclasses.asdict(obj), source)
    for k, v in resolved.items():
        if isinstance(v, str) and k.endswith(PATH_SUFFIXES) and v:
            resolved[k] = str(repo_path(v))
    return cls(**resolved)


# --- KEY=VALUE on every command line ---------------------------------------------------------------
def add_set_argument(parser: Any, help: str = "override a parameter (STAGE.KEY=VALUE to target one stage); "
                                              "values are YAML, e.g. --set gamma_tpd=0.1 \"datasets=[dfew,emorealm]\"") -> None:
    """The one `--set` syntax of every command line: `--set a=1 b=2`, repeatable (`--set a=1 --set b=2`)."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=help)


def split_assignment(item: str, what: str = "override") -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{what} {item!r} is not of the form key=value")
    return key.strip(), value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` or `stage.key=value` strings -> {key: value}; values parsed as YAML (0.1 -> float)."""
    out: dict[str, Any] = {}
    for item in items:
        key, value = split_assignment(item)
        out[key] = yaml.safe_load(value)
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """`key=v1,v2,...` strings -> {key: [v1, v2, ...]}, each value parsed as YAML."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, values = split_assignment(item, "grid entry")
        if not values:
            raise ConfigError(f"grid entry {item!r} is not of the form key=v1,v2,...")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {what}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def set_params_dir(folder: str | Path) -> Path:
    """Read profiles from `folder` (e.g. kept outside the repository) instead of params/."""
    global PARAMS_DIR
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"--params-dir {folder}: not a folder")
    PARAMS_DIR = path
    return path


def profile_dir(profile: str) -> Path:
    path = PARAMS_DIR / profile
    if not path.is_dir():
        known = sorted(p.name for p in PARAMS_DIR.iterdir() if p.is_dir()) if PARAMS_DIR.is_dir() else []
        raise ConfigError(f"profile {profile!r} not found in {PARAMS_DIR}; profiles there: {', '.join(known) or 'none'}")
    return path


def stage_file(profile: str, stage: str) -> Path:
    return profile_dir(profile) / f"{stage}.yaml"


def load_stage(profile: str, stage: str, overrides: Mapping[str, Any] | None = None, *, resolve: bool = True):
    """The typed parameters of one notebook for a profile, with optional overrides (e.g. variant)."""
    path = stage_file(profile, stage)
    raw = load_yaml(path)
    obj = build(stage_class(stage), raw, str(path), resolve=False)  # check the file on its own first
    if overrides:
        raw = {**raw, **overrides}
        shown = {k: ("(not shown)" if k.endswith(API_KEY_ENV_SUFFIX) else v) for k, v in overrides.items()}
        obj = build(stage_class(stage), raw, f"{path} + overrides {shown}", resolve=False)
    return apply_runtime(build(stage_class(stage), dataclasses.asdict(obj), str(path), resolve=resolve))


def raw_stage(profile: str, stage: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validated but unresolved values: what papermill injects into a notebook."""
    return dataclasses.asdict(load_stage(profile, stage, overrides, resolve=False))


def apply_runtime(params: Any) -> Any:
    """Settings that act on the process rather than on one call: torch's CPU thread count.  Applied by
    `load_stage` and `notebook_params`, so every notebook and command line runs with its params' value.
    Before torch is imported the thread count goes through OMP_NUM_THREADS (torch reads it at import; a
    command that never needs torch does not pay for importing it)."""
    import sys

    threads = getattr(params, "torch_threads", 0)
    if threads < 0:
        raise ConfigError(f"{type(params).__name__}: key 'torch_threads' must be >= 0, got {threads}")
    if threads:
        torch = sys.modules.get("torch")
        if torch is None:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        elif torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return params


def notebook_params(stage: str, namespace: Mapping[str, Any]):
    """Inside a notebook: `P = notebook_params("04_avem_dpo_training", globals())`."""
    cls = stage_class(stage)
    names = {f.name for f in fields(cls)}
    source = f"notebook {stage} parameters"
    check_renamed(namespace, names, source)  # an old name would otherwise be dropped silently here
    raw = {k: v for k, v in namespace.items() if k in names}
    run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir:  # tests run the notebooks at their defaults, but never into the folder `make reproduce` uses
        raw["run_dir"] = run_dir
        source += f" (run_dir from ${RUN_DIR_ENV})"
    return apply_runtime(build(cls, raw, source))


def load_run(profile: str) -> RunConfig:
    path = profile_dir(profile) / "run.yaml"
    return build(RunConfig, load_yaml(path), str(path), resolve=False)


def format_params(params: Any) -> str:
    """The effective configuration as an aligned two-column table (one call to show it)."""
    d = dataclasses.asdict(params)
    width = max(map(len, d), default=0)
    lines = [f"{type(params).__name__}"] + [f"  {k.ljust(width)}  {v!r}" for k, v in d.items()]
    return "\n".join(lines)


def print_params(params: Any) -> None:
    print(format_params(params))


def describe_stage(profile: str, stage: str, overrides: Mapping[str, Any] | None = None) -> str:
    """Every key of a stage as a table: key, type, its value in this profile (unresolved, as the YAML and
    papermill hold it), where that value comes from (default, the profile's file or --set), and its help."""
    cls = stage_class(stage)
    overrides = dict(overrides or {})
    from_file = load_yaml(stage_file(profile, stage))
    values = raw_stage(profile, stage, overrides)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in fields(cls):
        source = "--set" if f.name in overrides else profile if f.name in from_file else "default"
        rows.append((f.name, _type_name(hints[f.name]), repr(values[f.name]), source, param_help(f)))
    head = ("key", "type", "value", "from", "help")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    widths[2] = min(widths[2], 40)  # a long value (a dict, a prompt) pushes only its own row's help down
    indent = sum(widths) + 2 * 4
    lines = [f"{cls.__name__} ({stage}, profile {profile})"]
    for row in [head, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths)]
        left = "  ".join(cells)
        helps = textwrap.wrap(row[4], width=max(40, 150 - indent)) or [""]
        if len(left) > indent:  # the value overflowed its column: the help starts on the next line
            lines.append(left.rstrip())
            lines.extend(" " * indent + h for h in helps)
        else:
            lines.append(left + "  " + helps[0])
            lines.extend(" " * indent + h for h in helps[1:])
    return "\n".join(line.rstrip() for line in lines)
