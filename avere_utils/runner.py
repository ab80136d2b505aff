"""Runs the notebooks of a profile in order with papermill: template + params -> executed copy.

One execution per stage, or one per model variant for the stages listed in run.yaml's
per_train_variant / per_eval_variant.  Executed notebooks go to <run_dir>/notebooks/, wall times to
<run_dir>/run.log (human) and <run_dir>/run_times.json (read by the results notebook).

The executions of one stage share one kernel (`StageKernel`): starting a kernel and importing torch,
transformers and the library costs about 5 s, paid once per stage instead of once per variant.  Between
two executions the kernel's namespace is wiped, so each notebook sees only its own parameters; pass
`reuse_kernels=False` (CLI: `--fresh-kernels`) for one fresh kernel per notebook.

run.yaml's `variant_jobs` (CLI: `--jobs`) runs the variants of a per-variant stage that many at a time in
worker processes, each keeping one kernel for the whole run, so a 2-core machine runs two one-thread
notebooks at once.  A training stage's first variant runs alone before the others: it fills the reference
log-prob cache they read, so no two workers compute (or write) the same entry.  Evaluation variants share
only the decoded-media cache, whose entries are the same whoever writes them.  Every notebook runs the same
code on the same inputs at its own fixed thread count, so the results do not depend on `variant_jobs`.

run.yaml's `num_processes` (CLI: `--set num_processes=N`) > 1 runs each execution of a training stage
(per_train_variant) under `accelerate launch --num_processes N` (`--config_file` from `accelerate_config`):
N copies of `avere_utils.launch` each run the notebook with the same parameters in their own kernel, which
inherits the process group's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); rank 0 writes
the executed notebook where a single-process run would, the others theirs (and their figures) under
notebooks/.launch/<execution>/, beside the launch's spec and log.  The trainer lets only rank 0 write the
adapter, logs and checkpoints.  The global batch is kept: a training stage's `global_batch_size` 0 becomes
per_device_train_batch_size x gradient_accumulation_steps (one process's batch), from which the trainer
derives the accumulation for N processes.  Launched executions run one at a time whatever variant_jobs
says (each takes every GPU); the evaluation stages stay single-process.

One writer per notebook: before the first notebook starts, the run takes the lock of every (stage, variant)
it will execute (`runlock`), so a second run into the same folder that overlaps is refused at once
(`RunFolderBusy`), and runs of disjoint variants still go side by side.  Ctrl-C ends the run with one
line naming the notebook and what a rerun resumes (`RunInterrupted`), and run.log records "interrupted".
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from avere_utils import config, runlock
from avere_utils.paths import REPO_ROOT, atomic_write_text, repo_path

log = logging.getLogger(__name__)
logging.getLogger("papermill").setLevel(logging.WARNING)  # our progress line per notebook says the same
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


class StageFailed(RuntimeError):
    """A notebook cell raised.  The executed notebook (with the traceback in it) is kept."""

    def __init__(self, notebook: Path, cell: int | None, error: str):
        self.notebook, self.cell, self.error = notebook, cell, error
        where = f"cell {cell}" if cell is not None else "before any cell ran"
        super().__init__(f"{notebook}: {where}: {error}")

    def __reduce__(self):  # it crosses from a worker process (variant_jobs > 1)
        return StageFailed, (self.notebook, self.cell, self.error)


class RunInterrupted(RuntimeError):
    """Ctrl-C (SIGINT) during a notebook; the message says what a rerun of the same command resumes."""

    def __reduce__(self):
        return RunInterrupted, (str(self),)


_INTERRUPTED = "interrupted"  # a worker's answer for an execution stopped by Ctrl-C


@dataclass
class Execution:
    stage: str
    variant: str | None
    params: dict[str, Any]
    output: Path
    num_processes: int = 1  # > 1: run under `accelerate launch` (execute_launched)
    accelerate_config: str = ""

    @property
    def label(self) -> str:
        return self.stage + (f" [{self.variant}]" if self.variant else "")


@dataclass
class RunResult:
    run_dir: Path
    times: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(t["seconds"] for t in self.times)


# run.yaml keys a command line may set with --set, beside the stages' keys
RUN_KEYS = ("num_processes", "accelerate_config")


def split_run_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the run.yaml keys of `overrides`, the rest: the stages' keys)."""
    run = {k: v for k, v in overrides.items() if k in RUN_KEYS}
    return run, {k: v for k, v in overrides.items() if k not in RUN_KEYS}


def load_run_config(profile: str, overrides: Mapping[str, Any] | None = None) -> config.RunConfig:
    """params/<profile>/run.yaml with the run keys of `overrides` (--set num_processes=2), validated."""
    run = config.load_run(profile)
    run_over, _ = split_run_overrides(overrides or {})
    if run_over:
        path = config.profile_dir(profile) / "run.yaml"
        run = config.build(config.RunConfig, {**dataclasses.asdict(run), **run_over},
                           f"{path} + overrides {run_over}", resolve=False)
    if run.accelerate_config:
        check_accelerate_config(run.accelerate_config)
    return run


def check_accelerate_config(path: str) -> dict[str, Any]:
    """The accelerate config file's settings; a ConfigError when it is missing, not one machine, or DeepSpeed
    (the trainer averages the LoRA gradients itself and refuses a DeepSpeed launch: docs/training.md)."""
    file = repo_path(path)
    what = f"run.yaml key 'accelerate_config' ({path})"
    if not file.is_file():
        raise config.ConfigError(f"{what}: no such file (configs/accelerate/ holds ddp.yaml and cpu2.yaml)")
    try:
        data = config.load_yaml(file)
    except config.ConfigError as err:
        raise config.ConfigError(f"{what}: {err}") from None
    if str(data.get("distributed_type", "")).upper() == "DEEPSPEED":
        raise config.ConfigError(f"{what}: a DeepSpeed config; the trainer refuses DeepSpeed (LoRA-only training "
                                 "gains nothing from ZeRO-2; docs/training.md, 'Multi-process and multi-GPU'): "
                                 "use configs/accelerate/ddp.yaml")
    if int(data.get("num_machines", 1) or 1) != 1:
        raise config.ConfigError(f"{what}: num_machines {data['num_machines']}; the runner launches on one machine")
    return data


def keep_global_batch(params: dict[str, Any], num_processes: int, where: str) -> None:
    """A training stage launched on `num_processes` processes keeps one process's global batch: its
    global_batch_size 0 becomes per_device_train_batch_size x gradient_accumulation_steps, from which the
    trainer derives the accumulation for the processes.  A batch the layout cannot reach is a ConfigError
    naming the three numbers (the trainer's own check, here before anything runs)."""
    keys = ("global_batch_size", "per_device_train_batch_size", "gradient_accumulation_steps")
    if not all(k in params for k in keys):
        return
    if params["global_batch_size"] == 0:
        params["global_batch_size"] = params["per_device_train_batch_size"] * params["gradient_accumulation_steps"]
    from avere_utils.training.params import derive_grad_accum

    try:
        derive_grad_accum(params["global_batch_size"], params["per_device_train_batch_size"], num_processes)
    except config.ConfigError as err:
        raise config.ConfigError(f"{where}: num_processes {num_processes}: {err}") from None


def overrides_for(stage: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that apply to one stage: `stage.key` ones and bare keys the stage has."""
    names = {f.name for f in dataclasses.fields(config.stage_class(stage))}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        target, dot, name = key.rpartition(".")
        if dot and target == stage:
            out[name] = value
        elif not dot and key in names:
            out[key] = value
    return out


def check_overrides(stages: Sequence[str], overrides: Mapping[str, Any]) -> None:
    """Every override must reach at least one stage (or be a run.yaml key of RUN_KEYS): a typo is an error,
    not a silent no-op."""
    for key in overrides:
        if key in RUN_KEYS:
            continue
        target, dot, name = key.rpartition(".")
        if dot:
            if target not in config.STAGES:
                raise config.ConfigError(f"override {key!r}: unknown stage {target!r}"
                                         f"{config.close_matches(target, list(config.STAGES))}")
            continue
        known = sorted({f.name for s in stages for f in dataclasses.fields(config.stage_class(s))})
        config.check_renamed([key], known, f"override {key!r}")
        if key not in known:
            raise config.ConfigError(f"override {key!r} matches no parameter of the stages {', '.join(stages)}"
                                     f"{config.close_matches(key, known)}")


def plan(profile: str, *, only: Sequence[str] | None = None, variants: Sequence[str] | None = None,
         out: str | None = None, overrides: Mapping[str, Any] | None = None,
         notebooks_dir: Path = NOTEBOOKS_DIR) -> tuple[Path, list[Execution]]:
    """Every notebook execution of a run, in order, with validated parameters (nothing runs)."""
    if os.environ.get(config.RUN_DIR_ENV):  # it would send every notebook's outputs to that folder
        raise config.ConfigError(f"${config.RUN_DIR_ENV} is set ({os.environ[config.RUN_DIR_ENV]}): it is for "
                                 f"`make nbval` only; unset it and use --out to choose the run folder")
    run = load_run_config(profile, overrides)
    run_dir = out or run.run_dir
    _, overrides = split_run_overrides(overrides or {})
    stages = list(run.stages)
    if only:
        unknown = [s for s in only if s not in stages]
        if unknown:
            raise config.ConfigError(f"--only {unknown[0]!r} is not a stage of profile {profile!r}: {', '.join(stages)}")
        stages = [s for s in stages if s in only]
    check_overrides(stages, overrides)
    if variants is not None:  # a typo would otherwise run 0 notebooks and exit 0
        known = list(dict.fromkeys(run.train_variants + run.eval_variants))
        unknown = [v for v in variants if v not in known]
        if unknown:
            raise config.ConfigError(f"--variants {', '.join(map(repr, unknown))}: not a variant of profile "
                                     f"{profile!r}; known variants: {', '.join(known)}")

    def pick(names: list[str]) -> list[str]:
        return [v for v in names if variants is None or v in variants]

    execs: list[Execution] = []
    for stage in stages:
        if stage in run.per_train_variant:
            per = pick(run.train_variants)
        elif stage in run.per_eval_variant:
            per = pick(run.eval_variants)
        else:
            per = [None]
        for variant in per:
            ov = {"run_dir": run_dir, **overrides_for(stage, overrides)}
            if variant is not None:
                ov["variant"] = variant
            params = config.raw_stage(profile, stage, ov)
            params["run_dir"] = str(repo_path(params["run_dir"]))
            name = stage + (f"-{variant}" if variant else "") + ".ipynb"
            launched = run.num_processes if stage in run.per_train_variant and run.num_processes > 1 else 1
            if launched > 1:
                keep_global_batch(params, launched, f"{stage} [{variant}]")
            execs.append(Execution(stage, variant, params, repo_path(run_dir) / "notebooks" / name,
                                   launched, run.accelerate_config if launched > 1 else ""))
    for e in execs:
        if not (notebooks_dir / f"{e.stage}.ipynb").is_file():
            raise config.ConfigError(f"notebook {notebooks_dir / (e.stage + '.ipynb')} does not exist")
    return repo_path(run_dir), execs


# Run in the shared kernel before each execution but the first: the previous notebook's variables,
# figures and execution counter go; imported modules stay (that is the point of sharing).
RESET_CODE = """\
get_ipython().run_line_magic("reset", "-f")
import gc as _gc, sys as _sys
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
_gc.collect()
del _gc, _sys
get_ipython().execution_count = 1
"""


class StageKernel:
    """One kernel for the executions of one stage.  papermill starts it on the first execution (with
    the usual arguments) and, since the manager is ours, leaves it running for the next one."""

    def __init__(self, kernel_name: str = "python3", reset_timeout_s: float = 120.0):
        self.kernel_name, self.reset_timeout_s = kernel_name, reset_timeout_s
        self.km: Any = None
        self.used = 0

    def manager(self) -> Any:
        """The kernel manager to hand to papermill; the namespace is wiped if a notebook ran before."""
        if self.km is not None and self.used and not self._reset():
            self.close()  # a dead or stuck kernel: the next execution starts a fresh one
        if self.km is None:
            self.km, self.used = _tracking_manager_class()(kernel_name=self.kernel_name), 0
        self.used += 1
        return self.km

    def release_clients(self) -> None:
        """Stop the channels of the clients papermill opened: it leaves them open on a manager it does
        not own, and each would keep a socket (and warn at exit)."""
        if self.km is not None:
            while self.km.opened_clients:
                kc = self.km.opened_clients.pop()
                try:
                    kc.stop_channels()
                except Exception as err:  # already closed
                    log.debug("stopping a kernel client: %s", err)

    def _reset(self) -> bool:
        from jupyter_client.blocking import BlockingKernelClient

        if not self.km.has_kernel:
            return False
        kc = BlockingKernelClient()
        kc.load_connection_info(self.km.get_connection_info())
        kc.start_channels()
        try:
            reply = kc.execute_interactive(RESET_CODE, store_history=False, silent=False,
                                           timeout=self.reset_timeout_s, output_hook=lambda msg: None)
            ok = reply["content"]["status"] == "ok"
        except Exception as err:  # timeout, dead kernel: not fatal, a new kernel takes over
            log.warning("could not reset the shared kernel (%s); starting a fresh one", err)
            ok = False
        finally:
            kc.stop_channels()
        return ok

    def close(self) -> None:
        if self.km is None:
            return
        self.release_clients()
        from jupyter_core.utils import run_sync

        try:
            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=False)
        except Exception as err:  # the kernel may already be gone; nothing is left to clean up then
            log.debug("shutting down the shared kernel: %s", err)
        self.km = None


def _tracking_manager_class() -> type:
    """An AsyncKernelManager that remembers the clients it hands out (see StageKernel.release_clients)."""
    from jupyter_client.manager import AsyncKernelManager

    class TrackingKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.opened_clients: list[Any] = []

        def client(self, **kwargs: Any) -> Any:
            kc = super().client(**kwargs)
            self.opened_clients.append(kc)
            return kc

    return TrackingKernelManager


def execute(e: Execution, notebooks_dir: Path = NOTEBOOKS_DIR, kernel: StageKernel | None = None) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    e.output.parent.mkdir(parents=True, exist_ok=True)
    shared = {"km": kernel.manager()} if kernel is not None else {}
    try:
        # the kernel's own start-up chatter (e.g. its TCP transport warning) would bury the progress lines, and
        # after Ctrl-C its "Exception in message handler" (a reply to a closed socket) is noise: a cell's own
        # error reaches the notebook and StageFailed either way
        papermill.execute_notebook(str(notebooks_dir / f"{e.stage}.ipynb"), str(e.output), parameters=e.params,
                                   kernel_name="python3", cwd=str(notebooks_dir), progress_bar=False,
                                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"], **shared)
    except PapermillExecutionError as err:
        raise StageFailed(e.output, err.cell_index, f"{err.ename}: {err.evalue}") from None
    except Exception as err:  # kernel died, timeout, ...: still name the notebook
        raise StageFailed(e.output, None, f"{type(err).__name__}: {err}") from None
    finally:
        if kernel is not None:
            kernel.release_clients()


# --- one execution under `accelerate launch` -------------------------------------------------------------
LAUNCH_DIR = ".launch"  # <run_dir>/notebooks/.launch/<execution>/: spec.json, launch.log, the other ranks' copies
STOP_WAIT_S = 60.0  # after Ctrl-C, how long the launcher gets to stop its processes (and their kernels)


def launch_dir(e: Execution) -> Path:
    return e.output.parent / LAUNCH_DIR / e.output.stem


def free_port() -> int:
    """A TCP port free now on this machine, for the processes' rendezvous (two launches never share one)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(num_processes: int, accelerate_config: str, spec: Path, port: int) -> list[str]:
    """`accelerate launch [--config_file F] --num_processes N --main_process_port P -m avere_utils.launch SPEC`.
    Without a config file the launch is accelerate's multi-GPU one (torchrun), which on a machine without a
    GPU runs N CPU processes on gloo (`--cpu` would start one process: docs/training.md)."""
    exe = Path(sys.executable).with_name("accelerate")
    cmd = [str(exe), "launch"] if exe.is_file() else [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", str(repo_path(accelerate_config))]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + ["--num_processes", str(num_processes), "--main_process_port", str(port),
                  "-m", "avere_utils.launch", str(spec)]


def launch_failure(e: Execution, work: Path, rc: int) -> StageFailed:
    """The failure of a launch: the first failed cell of any rank (avere_utils.launch records each; the
    ranks that fail after it fail in a collective the first one left), else the tail of the launch log."""
    errors = []
    for f in work.glob("error-rank*.json"):
        with contextlib.suppress(OSError, ValueError):
            errors.append(json.loads(f.read_text()))
    if errors:
        err = min(errors, key=lambda r: (r.get("time", 0.0), r["rank"]))
        others = f" (then rank(s) {', '.join(str(r['rank']) for r in errors if r is not err)})" if len(errors) > 1 else ""
        return StageFailed(Path(err["notebook"]), err.get("cell"), f"rank {err['rank']}{others}: {err['error']}")
    tail = ""
    with contextlib.suppress(OSError):
        tail = " | ".join((work / "launch.log").read_text(errors="replace").strip().splitlines()[-5:])
    return StageFailed(e.output, None, f"accelerate launch exited with {rc} (log {work / 'launch.log'}): {tail}")


def execute_launched(e: Execution, notebooks_dir: Path = NOTEBOOKS_DIR) -> None:
    """Run `e` under `accelerate launch` with e.num_processes processes (avere_utils.launch in each); the
    launch's output goes to launch_dir(e)/launch.log.  Ctrl-C stops the launch (accelerate stops its
    processes, each of which stops its kernel) before KeyboardInterrupt goes on."""
    work = launch_dir(e)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    e.output.parent.mkdir(parents=True, exist_ok=True)
    spec = work / "spec.json"
    spec.write_text(json.dumps({"stage": e.stage, "variant": e.variant, "parameters": e.params,
                                "output": str(e.output), "notebooks_dir": str(notebooks_dir), "work": str(work)},
                               indent=1, default=str))
    cmd = launch_command(e.num_processes, e.accelerate_config, spec, free_port())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(work / "launch.log", "w") as logf:
        logf.write("$ " + " ".join(cmd) + "\n")
        logf.flush()
        # its own session: the terminal's Ctrl-C reaches the runner alone, which then stops the launch in order
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=str(notebooks_dir), env=env,
                                start_new_session=True)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            _stop_launch(proc)
            raise
    if rc != 0:
        raise launch_failure(e, work, rc)


def _stop_launch(proc: subprocess.Popen) -> None:
    """SIGTERM to accelerate (torchrun): it stops its processes, which stop their kernels; SIGKILL after
    STOP_WAIT_S."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


_WORKER_KERNEL: StageKernel | None = None  # a worker process's kernel, kept across the stages of a run


def _worker_kernel() -> StageKernel:
    global _WORKER_KERNEL
    if _WORKER_KERNEL is None:
        import atexit

        _WORKER_KERNEL = StageKernel()
        atexit.register(_WORKER_KERNEL.close)
    return _WORKER_KERNEL


def _attempt(run: Callable[[], None]) -> tuple[float, StageFailed | str | None]:
    """Run one execution: (seconds, failure), the failure being the StageFailed, _INTERRUPTED after Ctrl-C, or
    None.  The one place where a notebook's failure and Ctrl-C are caught, here and in a worker alike."""
    t0 = time.perf_counter()
    try:
        run()
    except StageFailed as err:
        return time.perf_counter() - t0, err
    except KeyboardInterrupt:  # the terminal's Ctrl-C reaches the workers too; the parent reports it
        _quiet_after_interrupt()
        return time.perf_counter() - t0, _INTERRUPTED
    return time.perf_counter() - t0, None


def _run_in_worker(e: Execution, header: str, notebooks_dir: Path, reuse_kernels: bool
                   ) -> tuple[float, StageFailed | str | None]:
    """Run one execution in a worker process (in its kernel when reuse_kernels): (seconds, failure)."""
    import sys

    sys.stdout.write(f"{header} (started)\n")  # one write: the workers' lines do not interleave
    sys.stdout.flush()
    return _attempt(lambda: execute(e, notebooks_dir, _worker_kernel() if reuse_kernels else None))


def _quiet_after_interrupt() -> None:
    """After Ctrl-C: a second one must not turn the clean-up (kernel shutdown) into a traceback, and the
    papermill / asyncio tasks cancelled mid-way ("Task exception was never retrieved ... DeadKernelError")
    are the expected consequence, not news."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("asyncio", "papermill", "nbclient", "traitlets"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def resume_hint(e: Execution) -> str:
    """What a rerun of the same command picks up for this execution (read from its run folder)."""
    was = logging.root.manager.disable
    try:
        logging.disable(max(was, logging.INFO))  # building the params again would repeat their log lines here
        p = config.build(config.stage_class(e.stage), dict(e.params), f"{e.label} (plan)")
    except Exception:  # a hint is not worth a second error
        return "a rerun of the same command runs it again"
    finally:
        logging.disable(was)
    if hasattr(p, "checkpoint_dir"):
        from avere_utils.training.checkpoint import complete_checkpoints

        found = complete_checkpoints(repo_path(p.checkpoint_dir))
        if found:
            return f"a rerun of the same command resumes training from {found[-1].name} ({found[-1]})"
        return "a rerun of the same command starts this training over (no checkpoint was written yet)"
    if hasattr(p, "stale_predictions"):
        preds = sorted(repo_path(p.run_dir).glob(f"predictions/*-{e.variant}.jsonl"))
        n = sum(1 for f in preds for line in f.read_bytes().splitlines() if line.strip().endswith(b"}"))
        return f"a rerun of the same command keeps the {n} predictions already written and makes the rest"
    return "a rerun of the same command runs it again"


# --- what a run can reuse -------------------------------------------------------------------------------
# Each finished execution leaves stage_done/<stage>[-<variant>].json: the hash of its params (run folder
# left out) and of its notebook's code cells (prose left out), the keys of the upstream executions it read,
# and its key (a hash of both).  An execution whose key this run computes the same is not run again.
STAGE_DONE = "stage_done"
# what each stage leaves in the run folder for later stages ({v}: the variant); folders are linked, files
# copied, when an execution is reused from another run.  cache/ is shared (its entries are keyed).
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "01_data_preparation": ("world", "manifests", "cache"),
    "02_pair_construction": ("pairs",),
    "03_reference_model": ("models/reference", "train_logs/reference.jsonl"),
    "04_avem_dpo_training": ("models/{v}", "train_logs/{v}.jsonl"),
    "05_zero_shot_classification": (),  # per execution: the benchmarks its params name (stage_outputs)
    "06_zero_shot_emer": ("predictions/emer-{v}.*", "metrics/emer-{v}.json"),
    "07_zero_shot_emorealm": ("predictions/emorealm-{v}.*", "metrics/emorealm-{v}.json"),
    "08_results_and_ablations": ("report.md",),
}


def execution_name(e: Execution) -> str:
    return e.stage + (f"-{e.variant}" if e.variant else "")


def _sha(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


_CODE_HASHES: dict[Path, tuple[int, str]] = {}


def _code_tokens(source: str) -> list[str] | str:
    """A cell's Python tokens without comments and blank lines (a reworded comment is not new code); the
    source itself when it does not tokenize (a cell magic)."""
    import io
    import tokenize

    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return source


def code_hash(notebook: Path) -> str:
    """The hash of a notebook's code cells but its parameters cell, comments left out: editing its prose
    or its comments reuses its runs, editing its code does not."""
    stamp = notebook.stat().st_mtime_ns
    if _CODE_HASHES.get(notebook, (None,))[0] != stamp:
        nb = json.loads(notebook.read_text())
        code = [_code_tokens("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for c in nb["cells"] if c.get("cell_type") == "code"
                and not {"parameters", "injected-parameters"} & set(c.get("metadata", {}).get("tags", []))]
        _CODE_HASHES[notebook] = (stamp, _sha(code))
    return _CODE_HASHES[notebook][1]


def params_hash(e: Execution, run_dir: Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> str:
    here = str(run_dir)

    def norm(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace(here, "${run_dir}")
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v

    params = {k: norm(v) for k, v in e.params.items() if k != "run_dir"}
    keyed: dict[str, Any] = {"params": params, "code": code_hash(notebooks_dir / f"{e.stage}.ipynb")}
    if e.num_processes > 1:  # the sums of N processes differ in their last bits; one process keys as before
        keyed["num_processes"] = e.num_processes
    return _sha(keyed)


def upstream(e: Execution, full: Sequence[Execution]) -> list[Execution]:
    """The executions of earlier stages that `e` reads: those of its variant and those of no variant."""
    order = list(dict.fromkeys(x.stage for x in full))
    mine = order.index(e.stage) if e.stage in order else len(order)
    return [u for u in full if order.index(u.stage) < mine
            and (u.variant is None or e.variant is None or u.variant == e.variant)]


def read_record(run_dir: Path, name: str) -> dict[str, Any]:
    path = run_dir / STAGE_DONE / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_record(run_dir: Path, e: Execution, full: Sequence[Execution], notebooks_dir: Path = NOTEBOOKS_DIR) -> None:
    """After `e` finished: its params hash and the keys its inputs had on disk (an input with no record:
    "absent", so nothing downstream of an unrecorded stage is ever reused)."""
    ph = params_hash(e, run_dir, notebooks_dir)
    inputs = {execution_name(u): read_record(run_dir, execution_name(u)).get("key", "absent")
              for u in upstream(e, full)}
    rec = {"stage": e.stage, "variant": e.variant, "params_hash": ph, "inputs": inputs, "key": _sha([ph, inputs])}
    (run_dir / STAGE_DONE).mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / STAGE_DONE / f"{execution_name(e)}.json", json.dumps(rec, indent=1))


def stage_outputs(e: Execution) -> tuple[str, ...]:
    """STAGE_OUTPUTS of `e`'s stage; for the classification stage, the files of the benchmarks its params
    name (a benchmark it does not run leaves nothing, so it cannot be required for a reuse)."""
    if e.stage != "05_zero_shot_classification":
        return STAGE_OUTPUTS.get(e.stage, ())
    from avere_utils import benchmarks as registry

    benchmarks = e.params.get("benchmarks") or registry.names("label", standalone=True)
    return tuple(f"{d}/{b}-{{v}}{x}" for d, x in (("predictions", ".*"), ("metrics", ".json")) for b in benchmarks)


def _outputs(run_dir: Path, e: Execution) -> list[Path]:
    found: list[Path] = []
    for pattern in stage_outputs(e):
        found += sorted(run_dir.glob(pattern.format(v=e.variant or "")))
    return found


def outputs_present(run_dir: Path, e: Execution) -> bool:
    """Whether a finished execution's executed notebook and named outputs are still there (a folder
    deleted by hand is made again, whatever its record says)."""
    named = [p.format(v=e.variant or "") for p in stage_outputs(e) if "*" not in p and p != "cache"]
    return (run_dir / "notebooks" / f"{execution_name(e)}.ipynb").is_file() and all(
        (run_dir / rel).exists() for rel in named)


def prepare_execution(run_dir: Path, e: Execution) -> None:
    """Before `e` runs: its record goes (a failed execution has none) and so do its outputs linked from
    another run, so that it never writes into that run."""
    (run_dir / STAGE_DONE / f"{execution_name(e)}.json").unlink(missing_ok=True)
    for path in _outputs(run_dir, e):
        if path.is_symlink():
            path.unlink()


# folders copied with the paths into the source run's world rewritten to this run's (linked) world, so that a
# stage rerun here finds every clip under its own data_root (stage 02's released-format copy checks it)
REWRITTEN = ("manifests",)


def _copy_rewritten(path: Path, dst: Path, src: Path, run_dir: Path) -> None:
    world = src / "world"
    prefixes = sorted({str(world), str(world.resolve())}, key=len, reverse=True) if world.exists() else []
    for f in sorted(path.rglob("*")):
        out = dst / f.relative_to(path)
        if f.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        text = f.read_text()
        for prefix in prefixes:
            text = text.replace(prefix + "/", str(run_dir / "world") + "/")
        out.write_text(text)


def link_execution(src: Path, run_dir: Path, e: Execution) -> None:
    """Bring `e`'s outputs, executed notebook and record from run `src`: folders linked (the manifests
    copied, their clip paths pointed at this run's linked world), files copied."""
    import shutil

    for path in _outputs(src, e) + [src / "notebooks" / f"{execution_name(e)}.ipynb",
                                   src / STAGE_DONE / f"{execution_name(e)}.json"]:
        rel = path.relative_to(src)
        dst = run_dir / rel
        if not path.exists() or dst.exists() or dst.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and rel.as_posix() in REWRITTEN:
            _copy_rewritten(path, dst, src, run_dir)
        elif path.is_dir():
            os.symlink(path.resolve(), dst, target_is_directory=True)
        else:
            shutil.copy2(path, dst)


def reuse_pass(run_dir: Path, execs: Sequence[Execution], full: Sequence[Execution],
               params_hashes: Mapping[str, str], src: Path | None, variants: Sequence[str] | None,
               reuse: bool = True) -> tuple[list[Execution], list[tuple[Execution, str]]]:
    """Which planned executions still run, and what is reused: (execution, "reused" in place or the run
    it was linked from).  An execution's key chains its params hash with its upstream executions' keys
    (`full`: the whole profile, in order); that of an execution this run does not plan is the one its record
    holds once brought here, so what runs is keyed on the inputs it really reads.
    With `src`, the executions upstream of the first planned stage are linked from it as they are (a sweep
    point's shared data, pairs and reference), and any other execution of the profile whose key matches
    there comes along too (the reference's evaluations of an ablation)."""
    import shutil

    keys: dict[str, str] = {}

    planned = {execution_name(e) for e in execs}
    order = list(dict.fromkeys(e.stage for e in full))
    first = min((order.index(e.stage) for e in execs), default=len(order))
    todo, reused = [], []
    linked_any = False
    for e in full:
        name = execution_name(e)
        keys[name] = _sha([params_hashes[name], {execution_name(u): keys[execution_name(u)] for u in upstream(e, full)}])
        if name in planned:
            if reuse and read_record(run_dir, name).get("key") == keys[name] and outputs_present(run_dir, e):
                reused.append((e, "reused"))
                continue
            if reuse and src is not None and read_record(src, name).get("key") == keys[name] \
                    and outputs_present(src, e):
                link_execution(src, run_dir, e)
                reused.append((e, str(src)))
                linked_any = True
                continue
            todo.append(e)
        elif src is not None:
            upstream_of_plan = order.index(e.stage) < first and (e.variant is None or variants is None
                                                                 or e.variant in variants)
            if upstream_of_plan or read_record(src, name).get("key") == keys[name]:
                link_execution(src, run_dir, e)
                reused.append((e, str(src)))
                linked_any = True
        if name not in planned:
            keys[name] = read_record(run_dir, name).get("key", keys[name])
    if linked_any and (src / "figures").is_dir():  # the figures of what was brought; a stage run here redraws its own
        for f in (src / "figures").iterdir():
            if f.is_file() and not (run_dir / "figures" / f.name).exists():
                (run_dir / "figures").mkdir(exist_ok=True)
                shutil.copy2(f, run_dir / "figures" / f.name)
    names = {execution_name(e) for e in todo}
    return [e for e in execs if execution_name(e) in names], reused


def stage_groups(execs: Sequence[Execution]) -> list[list[Execution]]:
    """Consecutive executions of the same stage, in plan order."""
    return [list(g) for _, g in itertools.groupby(execs, key=lambda e: e.stage)]


def run(profile: str, *, only: Sequence[str] | None = None, variants: Sequence[str] | None = None,
        out: str | None = None, overrides: Mapping[str, Any] | None = None,
        notebooks_dir: Path = NOTEBOOKS_DIR, echo: Callable[[str], None] = print,
        reuse_kernels: bool = True, jobs: int | None = None, preflight_check: bool = True,
        from_run: str | Path | None = None, reuse: bool = True) -> RunResult:
    """Execute the plan.  A whole run (or any run with `from_run`) reuses every execution whose
    `stage_done/<name>.json` holds the key this run computes for it (same params, same notebook code, same
    upstream keys): in the run folder itself, or, with `from_run`, in that run, whose outputs are then linked
    (folders) or copied (files).  `reuse=False` (CLI `--no-reuse`) runs everything asked."""
    run_dir, execs = plan(profile, only=only, variants=variants, out=out, overrides=overrides,
                          notebooks_dir=notebooks_dir)
    if preflight_check and only is None:  # a whole run; --only reruns and the tests' partial runs skip it
        from avere_utils import preflight as pf
        report = pf.preflight(profile, overrides, out=str(run_dir))
        echo(report.format())
        if not report.ok:
            raise config.ConfigError(f"preflight found {len(report.problems)} problem(s), listed above; "
                                     "fix them or rerun with --skip-preflight")
    run_config = load_run_config(profile, overrides)
    jobs = run_config.variant_jobs if jobs is None else jobs
    if jobs < 1:
        raise config.ConfigError(f"variant_jobs / --jobs must be >= 1, got {jobs}")
    src = repo_path(from_run) if from_run is not None else None
    if src is not None:
        if not src.is_dir():
            raise config.ConfigError(f"--from {from_run}: no such run folder")
        if src.resolve() == run_dir.resolve():
            raise config.ConfigError(f"--from {from_run} is the run folder itself; give --out a new folder")
    # every execution of the whole profile: a stage's key chains its upstream executions' keys
    try:
        _, full = plan(profile, out=str(run_dir), overrides=overrides, notebooks_dir=notebooks_dir)
    except config.ConfigError:  # an override only the planned stages accept: key those alone
        full = execs
    params_hashes = {execution_name(e): params_hash(e, run_dir, notebooks_dir) for e in full}
    run_dir.mkdir(parents=True, exist_ok=True)
    # every notebook of this run is ours until it ends; an overlapping run is refused before anything runs
    locks = [(runlock.lock_name(e.stage, e.variant), e.label) for e in execs]
    with runlock.hold(run_dir, list(dict.fromkeys(locks))):
        reused: list[tuple[Execution, str]] = []
        if src is not None or (reuse and only is None):
            execs, reused = reuse_pass(run_dir, execs, full, params_hashes, src, variants, reuse)
        try:
            return _run_locked(run_dir, execs, profile, run_config, jobs, notebooks_dir, echo, reuse_kernels,
                               full, reused)
        except RunInterrupted as err:
            echo(f"      {err}")
            raise
        except KeyboardInterrupt:  # between two notebooks: nothing was half done
            _quiet_after_interrupt()
            echo("      interrupted between two notebooks; a rerun of the same command skips nothing already "
                 "finished inside a stage (predictions, checkpoints) and runs the rest")
            raise RunInterrupted("interrupted between two notebooks") from None


def _run_locked(run_dir: Path, execs: list[Execution], profile: str, run_config: Any, jobs: int,
                notebooks_dir: Path, echo: Callable[[str], None], reuse_kernels: bool,
                full: Sequence[Execution] = (), reused: Sequence[tuple[Execution, str]] = ()) -> RunResult:
    """Each stage's executions, in plan order: here one after the other, or the rest of a stage in the
    workers (`_split_group`); each recorded as it ends (`_RunBook`), the first failure or Ctrl-C ending the run."""
    start = time.perf_counter()
    with open(run_dir / "run.log", "a") as logf, _Executors(jobs, reuse_kernels, notebooks_dir) as executors:
        book = _RunBook(run_dir, execs, full or execs, notebooks_dir, logf, echo,
                        _kept_times(run_dir, execs, reused))
        book.opening(profile, jobs, reused)
        for group in stage_groups(execs):
            here, parallel = _split_group(group, jobs, run_config)
            for e in here:
                book.starting(e)
                secs, err = executors.run_here(run_dir, e, new_stage=e is group[0])
                book.record(e, secs, err)
            if parallel:
                executors.run_in_workers(run_dir, parallel, book)
        total = time.perf_counter() - start
        logf.write(f"total\t{total:.1f}s\n")
    echo(f"all {len(execs)} notebooks ran in {total:.1f}s; executed copies in {run_dir / 'notebooks'}")
    return book.result


def _kept_times(run_dir: Path, execs: Sequence[Execution], reused: Sequence[tuple[Execution, str]]
                ) -> list[dict[str, Any]]:
    """The entries of run_times.json this run keeps: --only reruns some stages, so the other stages' timings
    stay; a reused execution keeps the time it took where it ran, marked reused."""
    times_file = run_dir / "run_times.json"
    previous = json.loads(times_file.read_text()) if times_file.is_file() else []
    rerun = {(e.stage, e.variant) for e in execs}
    kept = [t for t in previous if (t["stage"], t.get("variant")) not in rerun]
    for e, how in reused:
        if how != "reused":
            src_times = Path(how) / "run_times.json"
            was = [t for t in (json.loads(src_times.read_text()) if src_times.is_file() else [])
                   if (t["stage"], t.get("variant")) == (e.stage, e.variant)]
            kept = [t for t in kept if (t["stage"], t.get("variant")) != (e.stage, e.variant)]
            kept += [{**t, "reused": True} for t in was[-1:]]
    return kept


def _split_group(group: list[Execution], jobs: int, run_config: Any) -> tuple[list[Execution], list[Execution]]:
    """(run here one after the other, run in the workers).  Here: single stages, every stage when variant_jobs
    is 1, the first variant of a training stage (it fills the log-prob cache the others read), and executions
    under accelerate launch (each takes every GPU)."""
    parallel: list[Execution] = []
    if jobs > 1 and len(group) > 1 and group[0].num_processes == 1:
        parallel = group[1:] if group[0].stage in run_config.per_train_variant else group
    return group[:len(group) - len(parallel)], parallel


class _RunBook:
    """What a run records as it goes: one line per execution in run.log, run_times.json (the kept timings,
    then this run's), each finished execution's stage_done/ record, and the progress lines (`echo`)."""

    def __init__(self, run_dir: Path, execs: Sequence[Execution], full: Sequence[Execution], notebooks_dir: Path,
                 logf: Any, echo: Callable[[str], None], kept: list[dict[str, Any]]):
        self.run_dir, self.execs, self.full, self.notebooks_dir = run_dir, execs, full, notebooks_dir
        self.logf, self.echo, self.kept = logf, echo, kept
        self.result = RunResult(run_dir)
        self.times_file = run_dir / "run_times.json"
        width = max((len(e.label) for e in execs), default=0)
        self.header = {id(e): f"[{i:>2}/{len(execs)}] {e.label.ljust(width)} ..." for i, e in enumerate(execs, 1)}

    def opening(self, profile: str, jobs: int, reused: Sequence[tuple[Execution, str]]) -> None:
        """run.log's line for this run, then one per reused execution."""
        n = len(self.execs)
        launched = max((e.num_processes for e in self.execs), default=1)
        self.logf.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} run --profile {profile} ({n} notebooks, "
                        f"variant_jobs {jobs}" + (f", training on {launched} processes" if launched > 1 else "")
                        + (f", {len(reused)} reused" if reused else "") + ")\n")
        for e, how in reused:
            where = "" if how == "reused" else f" from {how}"
            self.logf.write(f"{e.label}\treused\t0.0s\tsame params, notebook code and inputs{where}\n")
            self.echo(f"[ -/{n}] {e.label}: reused (same params, notebook code and inputs{where})")
        if reused:
            self.logf.flush()
            atomic_write_text(self.times_file, json.dumps(self.kept, indent=1))

    def starting(self, e: Execution) -> None:
        self.echo(self.header[id(e)])
        if e.num_processes > 1:
            self.echo(f"      accelerate launch: {e.num_processes} processes; log in {launch_dir(e) / 'launch.log'}")

    def record(self, e: Execution, secs: float, err: StageFailed | str | None, from_worker: bool = False) -> None:
        """Log how `e` ended; a failure is raised again (StageFailed), Ctrl-C as RunInterrupted."""
        if err == _INTERRUPTED:
            hint = resume_hint(e)
            self.logf.write(f"{e.label}\tinterrupted\t{secs:.1f}s\t{hint}\n")
            self.logf.flush()
            raise RunInterrupted(f"interrupted: {e.label} after {secs:.1f}s; {hint}")
        if err is not None:
            self.logf.write(f"{e.label}\tFAILED\t{secs:.1f}s\t{err}\n")
            self.echo(f"      {e.label} FAILED after {secs:.1f}s\n      notebook: {err.notebook}\n"
                      f"      cell:     {err.cell}\n      error:    {err.error}")
            raise err
        self.result.times.append({"stage": e.stage, "variant": e.variant, "seconds": round(secs, 2)})
        write_record(self.run_dir, e, self.full, self.notebooks_dir)
        self.logf.write(f"{e.label}\tok\t{secs:.1f}s\n")
        self.logf.flush()
        atomic_write_text(self.times_file, json.dumps(self.kept + self.result.times, indent=1))
        self.echo(f"      done in {secs:.1f}s" + (f" ({e.label})" if from_worker else ""))


class _Executors:
    """Where the executions run: here (in the stage's kernel, or in a fresh one per notebook, or under
    accelerate launch), or in a pool of `jobs` worker processes.  The kernel and the pool are made when first
    needed and closed when the run ends, however it ends."""

    def __init__(self, jobs: int, reuse_kernels: bool, notebooks_dir: Path):
        self.jobs, self.reuse_kernels, self.notebooks_dir = jobs, reuse_kernels, notebooks_dir
        self.kernel: StageKernel | None = None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "_Executors":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown()
        finally:
            self._close_kernel()

    def _close_kernel(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None

    def _kernel_for(self, e: Execution, new_stage: bool) -> StageKernel | None:
        """One kernel per stage when kernels are reused; none under accelerate launch, where an earlier
        stage's kernel would keep its memory (a model on GPU 0)."""
        if e.num_processes > 1:
            self._close_kernel()
        elif self.reuse_kernels and (self.kernel is None or new_stage):
            self._close_kernel()
            self.kernel = StageKernel()
        return self.kernel if self.reuse_kernels else None

    def run_here(self, run_dir: Path, e: Execution, new_stage: bool) -> tuple[float, StageFailed | str | None]:
        kernel = self._kernel_for(e, new_stage)

        def run() -> None:
            prepare_execution(run_dir, e)
            if e.num_processes > 1:
                execute_launched(e, self.notebooks_dir)
            else:
                execute(e, self.notebooks_dir, kernel)
        return _attempt(run)

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def run_in_workers(self, run_dir: Path, parallel: list[Execution], book: _RunBook) -> None:
        """One task per execution: a worker takes the next when it is free (its kernel stays).  Recorded in
        plan order; Ctrl-C while waiting stops the workers (each stops its own notebook) and is recorded for the
        first execution not yet recorded."""
        pool = self.pool()
        n = len(parallel)
        for e in parallel:
            prepare_execution(run_dir, e)
        ran = pool.map(_run_in_worker, parallel, [book.header[id(e)] for e in parallel], [self.notebooks_dir] * n,
                       [self.reuse_kernels] * n)
        t0 = time.perf_counter()
        done = 0
        try:
            for e, (secs, err) in zip(parallel, ran):  # in plan order
                done += 1
                book.record(e, secs, err, from_worker=True)
        except KeyboardInterrupt:
            _quiet_after_interrupt()
            pool.shutdown(wait=True, cancel_futures=True)  # the workers stop their own notebooks
            book.record(parallel[min(done, n - 1)], time.perf_counter() - t0, _INTERRUPTED)
