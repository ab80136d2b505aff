"""Weight files: who they are (by content) and whether they are whole (named errors, not deserializer noise).

Identity by content.  A run folder copied with `cp -r`, restored from a backup or moved gets new
modification times and a new absolute path; neither changes what its weights compute.  So prediction
fingerprints and checkpoint signatures use `content_stamp(folder)`: (relative name, size, sha256) of every
file.  Hashing costs about 2 s per GB on this kind of CPU, nothing at the tiny size but ~30 s for a 7B
checkpoint's ~15 GB, so the hash of each file is recorded in the folder's sidecar `.avere_sha256.json`
together with the size and mtime it was computed for: the kit's own saves (adapters, checkpoints) record it
at save time, any other folder (a downloaded or stage-03 checkpoint) on its first use.  A recorded hash is
read back while size and mtime still match; after a copy it is computed once more and recorded again.

Whole files.  A safetensors file declares its tensors' byte ranges in its header, so a truncated one is
caught by reading that header (no data read).  `load_guard` turns any error of a load into a `WeightsError`
that names the file and says which stage rebuilds it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

SIDECAR = ".avere_sha256.json"
_CHUNK = 1 << 22


class WeightsError(RuntimeError):
    """A weight file that cannot be used: the message names it and says what to do."""

    def __init__(self, path: str | os.PathLike, detail: str, remedy: str = ""):
        self.path, self.detail = Path(path), detail
        super().__init__(f"{path} is corrupt or truncated ({detail}). {remedy or remedy_for(path)}".strip())

    def __reduce__(self):
        return _rebuild_weights_error, (str(self.path), self.detail, str(self))


def _rebuild_weights_error(path: str, detail: str, message: str) -> WeightsError:
    err = WeightsError(path, detail)
    err.args = (message,)
    return err


def remedy_for(path: str | os.PathLike) -> str:
    """What rebuilds a weight file, from where it sits in the run folder layout."""
    p = Path(path)
    parts = p.parts
    if "checkpoints" in parts:
        i = len(parts) - 1 - parts[::-1].index("checkpoints")
        step = Path(*parts[:i + 3]) if len(parts) > i + 2 else p
        return (f"Delete {step} (training resumes from the previous checkpoint, or starts over) and rerun "
                f"stage 04 (04_avem_dpo_training).")
    if "models" in parts:
        i = len(parts) - 1 - parts[::-1].index("models")
        if len(parts) > i + 1:
            name = parts[i + 1]
            folder = Path(*parts[:i + 2])
            if name == "reference":
                return f"Delete {folder} and rerun stage 03 (avere-kit run --only 03_reference_model)."
            return (f"Delete {folder} and rerun stage 04 for variant {name} "
                    f"(avere-kit run --only 04_avem_dpo_training --variants {name}).")
    return "Replace it with an intact copy."


# --- whole files ------------------------------------------------------------------------------------
def check_safetensors(path: str | os.PathLike) -> None:
    """Raise WeightsError unless the file's header parses and its size is what the header declares."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{size} bytes, shorter than a header")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError(f"the header declares {n} bytes, the file has {size - 8} after it")
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise WeightsError(path, f"unreadable safetensors header: {e}") from None
    if 8 + n + end != size:
        raise WeightsError(path, f"{size} bytes, the header declares {8 + n + end}")


def check_folder(folder: str | os.PathLike) -> None:
    """Header-check every safetensors file of a weights folder (cheap: headers only)."""
    root = Path(folder)
    if root.is_dir():
        for f in sorted(root.rglob("*.safetensors")):
            check_safetensors(f)


@contextlib.contextmanager
def load_guard(*targets: str | os.PathLike) -> Iterator[None]:
    """Check the targets (files or folders) before a load and name the file when the load still fails.
    A missing file is left to the caller's own error (it says which stage writes it)."""
    for t in targets:
        if Path(t).is_dir():
            check_folder(t)
        elif Path(t).suffix == ".safetensors" and Path(t).is_file():
            check_safetensors(t)
    try:
        yield
    except (WeightsError, FileNotFoundError):
        raise
    except Exception as e:
        files = [f for t in targets for f in ([Path(t)] if Path(t).is_file() else
                 sorted(p for p in Path(t).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES))]
        name = files[0] if len(files) == 1 else Path(targets[0]) if targets else Path("?")
        raise WeightsError(name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


# --- identity by content ----------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != SIDECAR and not p.name.startswith(".tmp"))


def _read_sidecar(root: Path) -> dict[str, dict]:
    try:
        data = json.loads((root / SIDECAR).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def folder_digests(folder: str | os.PathLike, *, record: bool = True) -> dict[str, tuple[int, str]]:
    """relative name -> (size, sha256) of every file of a folder.  A hash recorded in the sidecar is used
    while the file's size and mtime are those it was recorded for; the others are computed and (when
    `record` and the folder is writable) recorded."""
    root = Path(folder)
    known = _read_sidecar(root)
    out: dict[str, tuple[int, str]] = {}
    fresh: dict[str, dict] = {}
    changed = False
    for f in _files(root):
        name = f.relative_to(root).as_posix()
        st = f.stat()
        rec = known.get(name)
        if not (isinstance(rec, dict) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
                and isinstance(rec.get("sha256"), str)):
            rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(f)}
            changed = True
        fresh[name] = rec
        out[name] = (st.st_size, rec["sha256"])
    if record and (changed or set(known) != set(fresh)):
        _write_sidecar(root, fresh)
    return out


def _write_sidecar(root: Path, entries: dict[str, dict]) -> None:
    tmp = root / f".tmp{os.getpid()}{SIDECAR}"
    try:
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(tmp, root / SIDECAR)
    except OSError as e:  # a read-only folder: the hashes are computed again next time, nothing is wrong
        log.debug("%s: hashes not recorded (%s)", root, e)
        with contextlib.suppress(OSError):
            tmp.unlink()


def record_digests(folder: str | os.PathLike) -> None:
    """Hash every file of a folder just written by the kit and record it (its sidecar)."""
    if Path(folder).is_dir():
        folder_digests(folder, record=True)


# written beside the weights but not part of what they compute (the summary holds wall times)
NOT_WEIGHTS = ("training_summary.json", "README.md")


def content_stamp(folder: str | os.PathLike | None) -> list[tuple[str, int, str]]:
    """(relative name, size, sha256) of the files of a weights folder, or [] for none; a folder that does
    not exist is stamped as such (its name, -1, '')."""
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        return [(root.name, -1, "")]
    return [(name, size, sha) for name, (size, sha) in sorted(folder_digests(root).items())
            if Path(name).name not in NOT_WEIGHTS]


def verify_recorded(folder: str | os.PathLike) -> None:
    """Raise WeightsError for a file whose content no longer matches the hash recorded for it at save time
    (size and mtime unchanged: a flipped byte, not a new file).  Used on checkpoints before resuming."""
    root = Path(folder)
    for name, rec in _read_sidecar(root).items():
        f = root / name
        if not f.is_file():
            raise WeightsError(f, "missing: the checkpoint recorded it")
        st = f.stat()
        if isinstance(rec, dict) and rec.get("size") != st.st_size:
            raise WeightsError(f, f"{st.st_size} bytes, {rec.get('size')} were recorded at save time")
        if isinstance(rec, dict) and rec.get("mtime_ns") == st.st_mtime_ns and file_sha256(f) != rec.get("sha256"):
            raise WeightsError(f, "its content differs from the hash recorded at save time")
