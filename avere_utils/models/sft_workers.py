"""Data-parallel SFT on CPU: `sft_workers` processes share each batch and sum their gradients.

Why: the tiny reference's SFT is the longest stage of `make reproduce`, and at one torch thread it
leaves the other core of a 2-core machine idle.  Two torch threads in one process would not do: how a
multi-threaded kernel splits its float reductions depends on the thread count, so the reference would
depend on the machine.  Here every process runs at the stage's `torch_threads`, takes its share of a
batch's length groups (group k goes to worker k mod sft_workers), and gloo sums the gradients.  A sum
over two workers is a + b on both sides, and IEEE addition is commutative, so both copies of the model
stay bit-identical step after step (more than two workers are allowed, but only two are tested here; the
digest check below would catch copies that drift apart).  So the reference is the same on a quiet or a
loaded machine, with one core or many (slower with fewer cores than workers, never different).  A
different `sft_workers` changes the float order of the sums, so, like the seed, it is part of what a
reference is built from.

Worker 0 is the caller (the notebook's kernel); workers 1.. are spawned processes that run the same
training function on the same plan and write nothing.  A worker that fails writes its traceback to a
temporary file, and worker 0's error carries that traceback.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import multiprocessing as mp
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

log = logging.getLogger(__name__)

# A guard, not a bound on the work: a worker waits this long for the others (at start-up, where the
# spawned workers first import torch, and at every gradient sum) before the stage fails loudly.
WAIT_S = 600


class Shard:
    """This process's place among the SFT workers; with world 1 every method is the identity."""

    def __init__(self, rank: int = 0, world: int = 1, store: str | None = None):
        if not 0 <= rank < world:
            raise ValueError(f"Shard: rank {rank} is not in 0..{world - 1}")
        if world > 1 and not store:
            raise ValueError("Shard: more than one worker needs a rendezvous file (store)")
        self.rank, self.world, self.store = rank, world, store
        self._joined = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, parts: Sequence[Sequence[int]]) -> list[list[int]]:
        """This worker's length groups of a batch: group k belongs to worker k mod world."""
        return [list(part) for k, part in enumerate(parts) if k % self.world == self.rank]

    def _join(self) -> None:
        # joined at the first sum, not at start-up: worker 0 builds its model and decodes its clips
        # while the spawned workers import torch
        if self.world > 1 and not self._joined:
            import torch.distributed as dist

            dist.init_process_group("gloo", init_method=f"file://{self.store}", rank=self.rank,
                                    world_size=self.world, timeout=datetime.timedelta(seconds=WAIT_S))
            self._joined = True

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over the workers, in place (every worker gets the same bits)."""
        if self.world > 1:
            import torch.distributed as dist

            self._join()
            dist.all_reduce(t)
        return t

    def sum_grads_(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the parameters' gradients over the workers in one message (`training.loop.reduce_gradients_`:
        a parameter this worker did not reach counts as a zero gradient)."""
        if self.world == 1:
            return
        from avere_utils.training.loop import reduce_gradients_

        reduce_gradients_(params, self.sum_)

    def check_same(self, params: Sequence[torch.nn.Parameter], what: str) -> None:
        """Fail loudly unless every worker holds bit-identical parameters (a guard on the claim above)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        self._join()
        h = hashlib.sha256()
        for p in params:
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        digests: list[Any] = [None] * self.world
        dist.all_gather_object(digests, h.hexdigest())
        if len(set(digests)) != 1:
            raise RuntimeError(f"SFT workers disagree after {what}: parameter digests {digests}")

    def close(self) -> None:
        if self._joined:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._joined = False


def _worker_entry(fn: Callable[..., Any], rank: int, world: int, store: str, args: tuple, error_file: str,
                  threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    shard = Shard(rank, world, store)
    try:
        fn(shard, *args)
    except BaseException:
        Path(error_file).write_text(traceback.format_exc())
        raise
    finally:
        shard.close()


@contextlib.contextmanager
def sft_workers(world: int, fn: Callable[..., Any], args: tuple, *, device: str = "cpu",
                threads: int = 1) -> Iterator[Shard]:
    """Start workers 1..world-1, each running fn(shard, *args) in a spawned process, and yield worker 0's
    Shard for the caller to run fn's work itself.  On leaving, wait for the workers and raise (with their
    tracebacks) if one failed; if the caller failed, stop them."""
    if world < 1:
        raise ValueError(f"sft_workers must be >= 1, got {world}")
    if world == 1:
        yield Shard()
        return
    from avere_utils.models.loading import resolve_device

    if resolve_device(device).type != "cpu":  # gloo sums CPU tensors; one GPU is fast enough alone
        log.warning("sft_workers %d applies to CPU training; on %s the SFT runs in one process", world, device)
        yield Shard()
        return
    tmp = Path(tempfile.mkdtemp(prefix="avere-sft-"))
    store = str(tmp / "rendezvous")
    ctx = mp.get_context("spawn")  # a fresh interpreter: no forked copy of the kernel's state or threads
    errors = [tmp / f"worker{r}.err" for r in range(world)]
    procs = [ctx.Process(target=_worker_entry, args=(fn, r, world, store, args, str(errors[r]), threads),
                         name=f"sft-worker-{r}", daemon=True) for r in range(1, world)]
    for proc in procs:
        proc.start()
    shard = Shard(0, world, store)
    ok = False
    try:
        yield shard
        ok = True
    finally:
        shard.close()
        for proc in procs:
            if not ok:
                proc.terminate()
            proc.join(WAIT_S)
        failed = {proc.name: proc.exitcode for proc in procs if proc.exitcode != 0}
        messages = [e.read_text() for e in errors if e.is_file()]
        shutil.rmtree(tmp, ignore_errors=True)
        if ok and failed:
            raise RuntimeError(f"SFT worker(s) failed {failed}:\n" + "\n".join(messages))
        if not ok and messages:
            log.error("SFT worker tracebacks:\n%s", "\n".join(messages))
