"""Publish a run folder as a committed one (outputs/golden): the files a reader needs, no machine paths.

    python -m avere_utils.publish RUN DEST [--max-image-kb 300] [--html]

Copies from RUN into DEST (emptied first, except what `--keep` names):
  metrics/, predictions/ (the scored EmoReAlM files `emorealm-<variant>.jsonl`, `emorealm_heldout-*`,
  `media_sensitivity-*` and the judged EMER files `emer-*.judged.jsonl`), manifests/emorealm*.jsonl (to
  recompute every AUC), train_logs/, figures/, report.md, run.log, run_times.json, checksums.json, the same
  metrics and predictions of seeds/*/ and reference_seeds/*/, and the executed notebooks (notebooks/*.ipynb).

Every text file is rewritten without the absolute paths of the machine that built it: the run folder's
path becomes relative to the run (`predictions/x.jsonl`; in notebooks and logs the run's name relative to
the repository, e.g. `outputs/tiny`), the repository root becomes `.`.  A notebook's PNG outputs over
`--max-image-kb` are downscaled (Pillow) or, failing that, replaced by a note; no file over MAX_FILE_BYTES
is copied (each is named).  Prints the total size and any absolute path left (exit 1 if one is).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Iterable

from avere_utils.paths import REPO_ROOT, repo_path

MAX_FILE_BYTES = 1_000_000  # tests/meta/test_repo_hygiene.py's limit for a committed file
MAX_IMAGE_KB = 300  # a notebook's PNG output above this is downscaled
PREDICTION_PATTERNS = ("emorealm-*.jsonl", "emorealm_heldout-*.jsonl", "media_sensitivity-*.jsonl", "emer-*.judged.jsonl")
RUN_FILES = ("report.md", "run.log", "run_times.json", "checksums.json")
# an absolute path of a machine: /tmp/..., /home/..., /work/..., /root/..., /Users/... (not a URL's path)
MACHINE_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|home|work|root|Users|private|mnt|scratch|data)/[\w.+-]+")
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".log", ".csv", ".txt", ".ipynb", ".yaml", ".html"}


BUILD_DIR = re.compile(r'"(/[^"\\]+?)/(?:predictions|world|models|manifests|pairs|metrics)/')


def build_dirs(run: Path) -> set[str]:
    """The absolute folders the run was built in, as its metrics and manifests name them (a run folder
    moved or copied since, a world shared from another run): each one's `predictions/`, `world/` ... are
    this run's."""
    found: set[str] = set()
    for f in [*sorted((run / "metrics").glob("*.json")), *sorted((run / "manifests").glob("emorealm*.jsonl"))]:
        found.update(BUILD_DIR.findall(f.read_text(errors="replace")[:200_000]))
    return {d for d in found if MACHINE_PATH.match(d)}


def relativizer(run: Path, run_name: str | None = None, also: Iterable[str] = ()):
    """A function text -> text without `run`'s absolute path (as given and resolved, and each of `also`:
    where it was built) and the repository's.  `run_name=None`: paths inside the run become relative to it
    (metrics, logs); else the run folder is named `run_name` (notebooks, where `run_dir = ...` should stay
    readable)."""
    runs = sorted({str(run.absolute()), str(run.resolve()), *also}, key=len, reverse=True)
    root = str(REPO_ROOT.resolve())

    def fix(text: str) -> str:
        for a in runs:
            if run_name is None:
                text = text.replace(a + "/", "").replace(a, ".")
            else:
                text = text.replace(a, run_name)
        return text.replace(root + "/", "").replace(root, ".")
    return fix


def default_run_name(run: Path) -> str:
    try:
        return run.resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return run.name


def shrink_png(data: bytes, max_kb: int) -> bytes | None:
    """The PNG downscaled until it fits `max_kb` (None when Pillow is missing or it cannot fit)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    img = Image.open(io.BytesIO(data))
    for scale in (0.75, 0.5, 0.35, 0.25):
        small = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_kb * 1024:
            return buf.getvalue()
    return None


def clean_notebook(nb: dict, fix, max_image_kb: int) -> tuple[dict, int, int]:
    """The notebook with paths fixed in every source and text output and its large PNGs shrunk; returns
    (notebook, images shrunk, images dropped)."""
    shrunk = dropped = 0
    for cell in nb.get("cells", []):
        if isinstance(cell.get("source"), list):
            cell["source"] = [fix(s) for s in cell["source"]]
        elif isinstance(cell.get("source"), str):
            cell["source"] = fix(cell["source"])
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = [fix(t) for t in out["text"]] if isinstance(out["text"], list) else fix(out["text"])
            if "traceback" in out:
                out["traceback"] = [fix(t) for t in out["traceback"]]
            data = out.get("data") or {}
            for mime in list(data):
                if mime == "image/png":
                    raw = base64.b64decode("".join(data[mime]) if isinstance(data[mime], list) else data[mime])
                    if len(raw) > max_image_kb * 1024:
                        small = shrink_png(raw, max_image_kb)
                        if small is None:
                            del data[mime]
                            data.setdefault("text/plain", f"[figure over {max_image_kb} kB left out when published]")
                            dropped += 1
                        else:
                            data[mime] = base64.b64encode(small).decode()
                            shrunk += 1
                elif mime.startswith("text/") or mime == "application/json":
                    v = data[mime]
                    data[mime] = [fix(t) for t in v] if isinstance(v, list) else (fix(v) if isinstance(v, str) else v)
    for key in ("papermill",):
        meta = nb.get("metadata", {}).get(key)
        if isinstance(meta, dict):
            nb["metadata"][key] = json.loads(fix(json.dumps(meta)))
    for cell in nb.get("cells", []):
        pm = cell.get("metadata", {}).get("papermill")
        if isinstance(pm, dict):
            cell["metadata"]["papermill"] = json.loads(fix(json.dumps(pm)))
    return nb, shrunk, dropped


def _files(run: Path) -> Iterable[tuple[Path, Path]]:
    """(source, path relative to the destination) of everything published from one run folder."""
    for sub, patterns in (("metrics", ("*.json",)), ("predictions", PREDICTION_PATTERNS),
                          ("manifests", ("emorealm.jsonl", "emorealm_heldout.jsonl")),
                          ("train_logs", ("*.jsonl", "*.json")), ("figures", ("*.png",))):
        for pat in patterns:
            for f in sorted((run / sub).glob(pat)):
                if f.is_file():
                    yield f, Path(sub) / f.name
    for name in RUN_FILES:
        if (run / name).is_file():
            yield run / name, Path(name)


def publish(run: str | Path, dest: str | Path, *, max_image_kb: int = MAX_IMAGE_KB, html: bool = False,
            echo=print) -> dict:
    """Copy `run` into `dest` (see the module's docstring); returns a summary (files, bytes, left out)."""
    run, dest = Path(run), Path(dest)
    if not run.is_dir():
        raise FileNotFoundError(f"no run folder {run}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    name = default_run_name(run)
    summary = {"files": 0, "bytes": 0, "too_large": [], "images_shrunk": 0, "images_dropped": 0, "notebook_bytes": 0}

    def kept(out: Path, rel: Path) -> int:
        """The size of a written file, counted; 0 (and the file removed, named) when it is over the limit."""
        size = out.stat().st_size
        if size > MAX_FILE_BYTES:
            out.unlink()
            summary["too_large"].append(f"{rel} ({size} bytes)")
            return 0
        summary["files"] += 1
        summary["bytes"] += size
        return size

    def put(src: Path, rel: Path, fix) -> None:
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix in TEXT_SUFFIXES:
            out.write_text(fix(src.read_text()))
        else:
            shutil.copyfile(src, out)
        kept(out, rel)

    built = build_dirs(run)
    fix_run = relativizer(run, also=built)
    for src, rel in _files(run):
        put(src, rel, fix_run)
    for group in ("seeds", "reference_seeds"):
        for sub in sorted(p for p in (run / group).glob("*") if p.is_dir()):
            fix_sub = relativizer(sub, also=build_dirs(sub))
            for src, rel in _files(sub):
                if rel.parts[0] in ("metrics", "predictions") or rel.name == "checksums.json":
                    put(src, Path(group) / sub.name / rel, lambda t, a=fix_sub: fix_run(a(t)))
        for f in sorted((run / group).glob("summary.*")) if (run / group).is_dir() else []:
            put(f, Path(group) / f.name, fix_run)
    fix_nb = relativizer(run, name, also=built)
    for nb_file in sorted((run / "notebooks").glob("*.ipynb")):
        nb, shrunk, dropped = clean_notebook(json.loads(nb_file.read_text()), fix_nb, max_image_kb)
        summary["images_shrunk"] += shrunk
        summary["images_dropped"] += dropped
        out = dest / "notebooks" / nb_file.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        size = kept(out, Path("notebooks") / nb_file.name)
        if not size:
            continue
        summary["notebook_bytes"] += size
        if html:
            summary["bytes"] += to_html(out)
    left = machine_paths(dest)
    summary["machine_paths"] = left
    echo(f"published {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB ({summary['notebook_bytes'] / 1e6:.1f} MB "
         f"of notebooks; {summary['images_shrunk']} images downscaled, {summary['images_dropped']} left out) "
         f"from {name} into {dest}")
    for t in summary["too_large"]:
        echo(f"left out, over {MAX_FILE_BYTES} bytes: {t}")
    for p in left[:20]:
        echo(f"absolute path left: {p}")
    return summary


def to_html(notebook: Path) -> int:
    """An HTML copy beside the notebook (nbconvert); its size in bytes (0 when nbconvert is missing)."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return 0
    body, _ = HTMLExporter().from_filename(str(notebook))
    out = notebook.with_suffix(".html")
    out.write_text(body)
    if out.stat().st_size > MAX_FILE_BYTES:
        out.unlink()
        return 0
    return out.stat().st_size


def machine_paths(folder: str | Path) -> list[str]:
    """'file: path' for every absolute machine path left in a folder's text files."""
    out = []
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and f.suffix in TEXT_SUFFIXES:
            for m in sorted(set(MACHINE_PATH.findall(f.read_text(errors="replace")))):
                out.append(f"{f.relative_to(folder)}: {m}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the run folder, e.g. outputs/tiny")
    p.add_argument("dest", help="the committed folder, e.g. outputs/golden (replaced)")
    p.add_argument("--max-image-kb", type=int, default=MAX_IMAGE_KB)
    p.add_argument("--html", action="store_true", help="an HTML copy of each notebook too (nbconvert)")
    args = p.parse_args(argv)
    s = publish(repo_path(args.run), repo_path(args.dest), max_image_kb=args.max_image_kb, html=args.html)
    return 1 if s["machine_paths"] else 0


if __name__ == "__main__":
    sys.exit(main())
