"""The resumable prediction runner shared by the three evaluation notebooks.

For each benchmark item it asks the model for a free-text answer (`generate`) and/or the log-likelihood
of each candidate answer (`score_choices`), and appends one JSON record per item to
`predictions/<bench>-<variant>.jsonl`, flushed as soon as its batch is done.  A killed run resumes: items
already in the file are neither recomputed nor written twice.  Every record carries a fingerprint of
the settings and model files that produced it; a file made with other settings or other weights is
never mixed with new answers (it is restarted or refused, param `stale_predictions`).  The model files
enter the fingerprint by content (`weights.content_stamp`), never by mtime or place, so a run folder
copied or moved keeps its predictions.  Only one process writes a file (`run_stage` holds the run
folder's lock, avere_utils.runlock); should a file still hold an id twice, the first record is used and
the count is reported (`n_duplicate_records`), not hidden.

Multi-GPU: under `accelerate launch` each process takes every n-th item, writes its own shard file
(no two processes ever append to the same file, unlike the released script) and the main process merges
the shards once at the end.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tqdm.auto import tqdm

from avere_utils.records import Example, Item, Media

if TYPE_CHECKING:  # the backend module imports torch: only for annotations here
    from avere_utils.models.backend import Backend

log = logging.getLogger(__name__)

MediaFn = Callable[[Item], Media]


class StalePredictionsError(RuntimeError):
    """A predictions file made with other settings or weights, and params say not to restart it."""


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 16
    temperature: float = 0.0
    seed: int = 0
    use_cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": "greedy" if self.temperature == 0 else "sampling", "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "seed": self.seed, "use_cache": self.use_cache}


@dataclass
class PredictionTask:
    """What to compute for each item: a prompt, and optionally the candidate answers to score."""

    prompt_for: Callable[[Item], str]
    generate: bool = True
    candidates_for: Callable[[Item], list[str]] | None = None


@dataclass
class PredictionRun:
    records: dict[str, dict[str, Any]]  # id -> record, for every item that has one
    n_computed: int = 0  # items computed by this call (the rest were reused from the file)
    generate_s: float = 0.0
    scoring_s: float = 0.0
    media_s: float = 0.0
    files: list[str] = field(default_factory=list)
    n_duplicate_records: int = 0  # records of the file whose id an earlier record already has


def fingerprint(settings: dict[str, Any]) -> str:
    """A short stable hash of everything that decides the answers (settings + model file stamps)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_stamp(folder: str | os.PathLike | None) -> list[tuple[str, int, str]]:
    """(name, size, sha256) of the files in a model/adapter folder: retrained weights change the
    fingerprint, a copy or a move (new mtimes, new path) does not.  Large files are hashed once and the
    hash recorded beside them (avere_utils.weights)."""
    from avere_utils.weights import content_stamp

    return content_stamp(folder)


def stable_seed(seed: int, key: str) -> int:
    """A per-batch sampling seed that does not depend on how far an earlier run got (resume-stable)."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31 - 1)


# --- the JSONL file ----------------------------------------------------------------------------------
def _repair_tail(path: Path) -> None:
    """A run killed mid-write leaves a partial last line; cut it so the next append starts clean."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    log.warning("%s: dropping a partial last line (%d bytes) left by an interrupted run", path, len(data) - keep)
    with open(path, "r+b") as f:
        f.truncate(keep)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a predictions file (after cutting a partial last line)."""
    path = Path(path)
    if not path.is_file():
        return []
    _repair_tail(path)
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON record ({e}); delete the file to start over") from e
            if "id" not in rec:
                raise ValueError(f"{path}:{lineno}: record without 'id'")
            out.append(rec)
    return out


def _check_fresh(path: Path, fp: str, policy: str) -> None:
    recs = read_records(path)
    stale = sum(r.get("fingerprint") != fp for r in recs)
    if not stale:
        return
    msg = (f"{path}: {stale} of {len(recs)} predictions were made with other settings or model weights "
           f"(fingerprint differs)")
    if policy == "error":
        raise StalePredictionsError(msg + "; delete the file or set stale_predictions: restart")
    log.warning("%s; starting this file over", msg)
    path.unlink()


def _by_id(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out.setdefault(r["id"], r)  # first one wins, never double-counted; duplicate_count reports the rest
    return out


def duplicate_count(records: Sequence[dict[str, Any]]) -> int:
    """Records whose id an earlier record of the same file already has (two writers, a bad merge)."""
    return len(records) - len({r["id"] for r in records})


def shard_file(out_file: Path, index: int, count: int) -> Path:
    return out_file.with_name(f"{out_file.stem}.shard{index}of{count}{out_file.suffix}")


# --- media ------------------------------------------------------------------------------------------
def media_loader(settings: Any, cache_dir: str | os.PathLike | None = None, keep: int = 64,
                 cache: Any = None) -> MediaFn:
    """Item -> Media through `avere_utils.media.load_media` and its feature cache (`cache`, a FeatureCache,
    or one on `cache_dir`).  Recently used clips are kept in memory as the *same* Media object, so questions
    about one clip share one encoding."""
    from avere_utils.cache import FeatureCache
    from avere_utils.media import load_media

    if cache is None and cache_dir:
        cache = FeatureCache(cache_dir)
    recent: OrderedDict[tuple[str | None, str | None], Media] = OrderedDict()

    def load(item: Item) -> Media:
        key = (item.video, item.audio)
        if key in recent:
            recent.move_to_end(key)
            return recent[key]
        media = load_media(item.video, item.audio, settings, cache)
        recent[key] = media
        if len(recent) > keep:
            recent.popitem(last=False)
        return media

    return load


# --- the runner -------------------------------------------------------------------------------------
def process_state() -> Any:
    """accelerate's view of the launch (process index / count / device), shared by the whole process.

    Several CPU processes (torchrun / accelerate launch without GPUs) need `cpu=True` to form a gloo
    group; otherwise accelerate would see one process each and all of them would write the same file."""
    import torch
    from accelerate import PartialState

    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=True) if several and not torch.cuda.is_available() else PartialState()


def _process_layout(shard: tuple[int, int] | None) -> tuple[int, int, Callable[[], None]]:
    if shard is not None:
        return shard[0], shard[1], lambda: None
    state = process_state()
    return state.process_index, state.num_processes, state.wait_for_everyone


def run_predictions(backend: Backend, items: Sequence[Item], out_file: str | os.PathLike, task: PredictionTask,
                    decoding: Decoding, *, settings: dict[str, Any], media_fn: MediaFn, batch_size: int = 8,
                    stale_policy: str = "restart", shard: tuple[int, int] | None = None,
                    desc: str = "predict") -> PredictionRun:
    """Compute what is missing from `out_file` and return the records of all `items`.

    `settings` (prompt, decoding, model stamps, candidates...) is hashed into every record's fingerprint.
    `shard=(index, count)` overrides accelerate's process layout (tests); by default a single process
    writes straight into `out_file` and `count` processes write shards merged by process 0.
    """
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    ids = _unique_ids(items, out_file)
    fp = fingerprint({**settings, "decoding": decoding.to_dict(), "generate": task.generate,
                      "scoring": task.candidates_for is not None})
    index, count, barrier = _process_layout(shard)
    target = out_file if count == 1 else shard_file(out_file, index, count)
    if index == 0:
        _check_fresh(out_file, fp, stale_policy)
    barrier()
    if target != out_file:
        _check_fresh(target, fp, stale_policy)
    todo = _items_to_do(items, out_file, target, index, count)
    run = PredictionRun(records={})
    with open(target, "a") as f:
        for start in tqdm(range(0, len(todo), batch_size), desc=desc, unit="batch", disable=not todo):
            for rec in _predict_batch(backend, todo[start:start + batch_size], task, decoding, fp, media_fn, run,
                                      desc):
                f.write(json.dumps(rec) + "\n")
                f.flush()
                run.n_computed += 1
    barrier()
    if count > 1 and index == 0:
        _merge_shards(out_file, count)
    barrier()
    _collect(run, out_file, ids)
    return run


def _unique_ids(items: Sequence[Item], out_file: Path) -> list[str]:
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"item id {dup!r} appears twice in the items for {out_file.name}")
    return ids


def _items_to_do(items: Sequence[Item], out_file: Path, target: Path, index: int, count: int) -> list[Item]:
    """Process `index` of `count`'s items that neither `out_file` nor its shard `target` holds yet, grouped
    by clip."""
    done = set(_by_id(read_records(out_file))) | set(_by_id(read_records(target)))
    todo = [it for j, it in enumerate(items) if j % count == index and it.id not in done]
    # Consecutive items of one clip share one Media object: encoded once per batch by the backend, and
    # (backend.reuse_prefix) its media block's KV computed once for all the clip's questions in the batch.
    todo.sort(key=lambda it: (it.video or "", it.audio or "", it.id))
    if done:
        log.info("%s: %d items already predicted, %d to go", out_file.name, len(done & {it.id for it in items}),
                 len(todo))
    return todo


def _predict_batch(backend: Backend, batch: Sequence[Item], task: PredictionTask, decoding: Decoding, fp: str,
                   media_fn: MediaFn, run: PredictionRun, desc: str) -> list[dict[str, Any]]:
    """The records of one batch, in batch order (an item whose media is unreadable gets an error record)."""
    t0 = time.perf_counter()
    records: list[dict[str, Any]] = []
    ok: list[tuple[Item, Example, dict[str, Any]]] = []
    for it in batch:
        rec: dict[str, Any] = {"id": it.id, "fingerprint": fp}
        records.append(rec)
        try:
            media = media_fn(it)
        except (OSError, ValueError) as e:  # MediaError is a ValueError: counted, not fatal
            log.warning("%s: media of item %s unreadable, answer counted as missing: %s", desc, it.id, e)
            rec.update(error=f"media: {e}", generation=None, scores=None)
            continue
        ok.append((it, Example(prompt=task.prompt_for(it), media=media), rec))
    run.media_s += time.perf_counter() - t0
    if ok and task.generate:
        _generate(backend, ok, decoding, run)
    if ok and task.candidates_for is not None:
        _score(backend, ok, task, run)
    return records


def _generate(backend: Backend, ok: Sequence[tuple[Item, Example, dict[str, Any]]], decoding: Decoding,
              run: PredictionRun) -> None:
    """Each record's free-text answer, `generation`."""
    t0 = time.perf_counter()
    texts = backend.generate([ex for _, ex, _ in ok], max_new_tokens=decoding.max_new_tokens,
                             temperature=decoding.temperature, seed=stable_seed(decoding.seed, ok[0][0].id),
                             use_cache=decoding.use_cache)
    run.generate_s += time.perf_counter() - t0
    if len(texts) != len(ok):
        raise RuntimeError(f"backend.generate returned {len(texts)} answers for {len(ok)} prompts")
    for (_, _, rec), text in zip(ok, texts):
        rec["generation"] = text


def _score(backend: Backend, ok: Sequence[tuple[Item, Example, dict[str, Any]]], task: PredictionTask,
           run: PredictionRun) -> None:
    """Each record's `candidates` and their log-likelihoods, `scores`."""
    t0 = time.perf_counter()
    cands = [task.candidates_for(it) for it, _, _ in ok]
    # one call per batch: each prompt (and, with prefix reuse, each clip's media block) is run once for all
    # its candidates
    scores = backend.score_choices_batch([ex for _, ex, _ in ok], cands)
    for (_, _, rec), c, sc in zip(ok, cands, scores):
        rec["candidates"] = c
        rec["scores"] = [float(x) for x in sc]
    run.scoring_s += time.perf_counter() - t0


def _collect(run: PredictionRun, out_file: Path, ids: Sequence[str]) -> None:
    """The records of `ids` from the (merged) file into `run`; repeated ids are counted, the first kept."""
    on_disk = read_records(out_file)
    everything = _by_id(on_disk)
    run.n_duplicate_records = duplicate_count(on_disk)
    if run.n_duplicate_records:
        log.warning("%s: %d records repeat an id already in the file (the first of each is used); a second "
                    "writer was at work, or the file was merged by hand", out_file, run.n_duplicate_records)
    run.records = {i: everything[i] for i in ids if i in everything}
    run.files = [str(out_file)]


def _merge_shards(out_file: Path, count: int) -> None:
    """Append every shard's new records to the main file once (main process only), then drop the shards."""
    have = set(_by_id(read_records(out_file)))
    with open(out_file, "a") as f:
        for i in range(count):
            path = shard_file(out_file, i, count)
            for rec in read_records(path):
                if rec["id"] not in have:
                    f.write(json.dumps(rec) + "\n")
                    have.add(rec["id"])
            f.flush()
    for i in range(count):
        shard_file(out_file, i, count).unlink(missing_ok=True)
