"""One writer per part of a run folder: `<run_dir>/.locks/<name>.lock`, taken with `fcntl.flock`.

Two layers use it, with different names, so neither waits on the other:
  * the runner (`avere-kit run`) takes `<stage>` or `<stage>-<variant>` for every notebook it will run,
    before the first one starts, and holds them until it ends: a second run into the same folder that would
    run any of the same notebooks is refused at once, while runs of other variants go on in parallel;
  * the library entry points that write results (`Trainer.train`: `train-<variant>`; `run_stage`:
    `eval-<benchmark>-<variant>`) take their own, so a notebook executed by hand or by papermill, or
    `python -m avere_utils.training`, is covered too.  Under the runner they are taken by the kernel,
    a different process from the runner holding the stage lock, on another name: no self-deadlock.

The kernel releases a lock when its process dies (flock), so a killed run leaves nothing that blocks the
next one.  The holder writes its pid and command line into the file (for the refusal message) and empties
it on a clean release; a non-empty file whose lock is free was left by a process that died, and taking it
over is logged as a warning naming that process.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

log = logging.getLogger(__name__)
LOCK_DIR = ".locks"


class RunFolderBusy(RuntimeError):
    """Another live process holds a lock of this run folder."""

    def __init__(self, message: str, holder: str = ""):
        super().__init__(message)
        self.holder = holder

    def __reduce__(self):  # may cross from a worker process
        return RunFolderBusy, (str(self), self.holder)


def lock_name(*parts: str | None) -> str:
    """A file-name-safe lock name from stage / benchmark / variant parts (None parts are left out)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in parts if p))


def _describe_holder(text: str) -> str:
    lines = text.strip().splitlines()
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    who = f"pid {fields.get('pid', '?')}"
    if fields.get("host") and fields["host"] != socket.gethostname():
        who += f" on {fields['host']}"
    if fields.get("since"):
        who += f" since {fields['since']}"
    return who + (f" ({fields['cmd']})" if fields.get("cmd") else "")


class RunLock:
    """An exclusive, non-blocking lock on `<run_dir>/.locks/<name>.lock` (use as a context manager)."""

    def __init__(self, run_dir: str | os.PathLike, name: str, *, what: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_DIR / f"{name}.lock"
        self.what = what or name
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # never unlinked: a process opening the old inode while another unlinks it would lock a ghost
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise RunFolderBusy(f"{self.run_dir}: {self.what} is being written by another process, {holder}; "
                                f"wait for it to finish (or stop it), or choose another folder with --out",
                                holder) from None
        left = os.pread(fd, 4096, 0).decode(errors="replace")
        if left.strip():
            log.warning("%s: taking over the lock of %s, left by %s, which is no longer running", self.run_dir,
                        self.what, _describe_holder(left))
        me = (f"pid={os.getpid()}\nhost={socket.gethostname()}\nsince={time.strftime('%Y-%m-%d %H:%M:%S')}\n"
              f"cmd={' '.join(sys.argv)}\n")
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # empty = released cleanly (not a stale holder)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def hold(run_dir: str | os.PathLike, names: Sequence[tuple[str, str]], enabled: bool = True) -> Iterator[None]:
    """Hold every (name, description) lock of `run_dir` for the block; all or none (a refusal releases
    those already taken).  `enabled=False` holds nothing (processes other than the main one)."""
    with contextlib.ExitStack() as stack:
        if enabled:
            for name, what in names:
                stack.enter_context(RunLock(run_dir, name, what=what))
        yield
