"""The model side of the lmms-eval plugin, without lmms-eval: its requests answered by the kit's backend.

lmms-eval hands a model every request of one type at once (`Instance.args`):

    generate_until  (context, generation_kwargs, doc_to_visual, doc_id, task, split)   -> text
    loglikelihood   (context, continuation, doc_to_visual, doc_id, task, split)         -> (value, is_greedy)
                    (context, continuation)  text only (e.g. a mutual-information baseline)

`KitModel` groups them per task and per document, turns each document into the kit's `Item` (its id, its
video and audio paths from `doc_to_visual`) and runs them through the kit's own prediction runner
(`evaluation.predict.run_predictions`): the same ordering of items (by clip, then id), the same batches
(`batch_size` of the profile's params), the same decoded clips (read from the stage's feature cache, which the
plugin never writes: `KitModel.new_media_fn`), the same decoding and the same candidate scoring as notebooks
05 / 07.  So for the kit's exported tasks, on a run whose stages 05 / 07 ran, the answers, and therefore the
figures, are the notebooks' answers.

Likelihoods are returned as lmms-eval's models return them, a loss: the negative summed log-likelihood of
the continuation (`loglikelihood="logprob"` returns the log-likelihood itself, lm-eval-harness's reading).
`is_greedy` is not computed (always False): the backend scores whole continuations, it does not decode them.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from avere_utils.records import Item, Media

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".aac", ".opus")
LL_CONVENTIONS = ("loss", "logprob")
# model arguments that select a stage parameter of the profile (07_zero_shot_emorealm's EvalParams keys)
PARAM_ARGS = ("run_dir", "device", "n_frames", "frame_size", "sample_rate", "cache_dir", "torch_threads",
              "pack_candidates", "use_cache", "seed", "max_new_tokens", "temperature")
PARAMS_STAGE = "07_zero_shot_emorealm"
MISS_MARK = "avere_omni: feature cache:"  # starts the warning on clips decoded here (bench/lmms_check.py reads it)


def read_only_media_loader(settings: Any, cache_dir: str | os.PathLike | None, misses: dict[str, int],
                           keep: int = 64) -> Callable[[Item], Media]:
    """`predict.media_loader` with the feature cache only read: a clip not in it (or every clip, without a
    cache) is decoded by this process's PyAV and not stored; `misses[video or audio path]` counts the clips
    decoded here."""
    from avere_utils.cache import FeatureCache
    from avere_utils.evaluation.predict import media_loader

    class ReadOnlyCache(FeatureCache):
        def __init__(self, folder: Path | None):
            self.cache_dir, self.hits, self.misses = folder, 0, 0  # no mkdir: nothing is written

        def get_or_compute(self, video_path: str | None, audio_path: str | None, settings: Any,
                           compute: Callable[[], Media]) -> Media:
            if self.cache_dir is not None and self.path_for(self.key(video_path, audio_path, settings)).is_file():
                return super().get_or_compute(video_path, audio_path, settings, compute)
            self.misses += 1
            misses[str(video_path or audio_path)] = misses.get(str(video_path or audio_path), 0) + 1
            return compute()

    return media_loader(settings, keep=keep, cache=ReadOnlyCache(Path(cache_dir) if cache_dir else None))


class PluginError(ValueError):
    """A request or a model argument the plugin cannot serve (the message says which and why)."""


@dataclass
class Request:
    """One lmms-eval request, unpacked."""

    index: int
    kind: str  # "generate_until" | "loglikelihood"
    context: str
    task: str | None = None
    split: str | None = None
    doc_id: int | None = None
    doc_to_visual: Callable[[Any], Any] | None = None
    gen_kwargs: dict[str, Any] | None = None
    continuation: str | None = None


def parse_request(inst: Any, index: int) -> Request:
    """An `Instance` (or anything with `request_type` and `args`) as a Request."""
    kind = getattr(inst, "request_type", None)
    args = tuple(getattr(inst, "args", None) or getattr(inst, "arguments", ()))
    if kind == "generate_until":
        if len(args) != 6:
            raise PluginError(f"generate_until request #{index}: expected 6 arguments (context, generation_kwargs, "
                              f"doc_to_visual, doc_id, task, split), got {len(args)}")
        ctx, gen, d2v, doc_id, task, split = args
        return Request(index, kind, ctx, task, split, doc_id, d2v, dict(gen or {}))
    if kind == "loglikelihood":
        if len(args) == 2:
            return Request(index, kind, args[0], continuation=args[1])
        if len(args) != 6:
            raise PluginError(f"loglikelihood request #{index}: expected (context, continuation[, doc_to_visual, "
                              f"doc_id, task, split]), got {len(args)} arguments")
        ctx, cont, d2v, doc_id, task, split = args
        return Request(index, kind, ctx, task, split, doc_id, d2v, continuation=cont)
    raise PluginError(f"request #{index}: type {kind!r} is not served by avere_omni (generate_until, loglikelihood)")


def split_visuals(visuals: Any, where: str) -> tuple[str | None, str | None]:
    """(video path, audio path) from what a task's doc_to_visual returned: a video file (read with its own
    audio track) and/or an audio file.  Anything else (images, decoded arrays) is an error naming it."""
    if visuals is None:
        return None, None
    if isinstance(visuals, (str, os.PathLike)):
        visuals = [visuals]
    video = audio = None
    for v in visuals:
        if not isinstance(v, (str, os.PathLike)):
            raise PluginError(f"{where}: avere_omni reads media by path (video {', '.join(VIDEO_EXTENSIONS)}; audio "
                              f"{', '.join(AUDIO_EXTENSIONS)}), got a {type(v).__name__}")
        p = os.fspath(v)
        ext = os.path.splitext(p)[1].lower()
        if ext in VIDEO_EXTENSIONS and video is None:
            video = p
        elif ext in AUDIO_EXTENSIONS and audio is None:
            audio = p
        else:
            raise PluginError(f"{where}: {p} is not one video and one audio file (video {', '.join(VIDEO_EXTENSIONS)}; "
                              f"audio {', '.join(AUDIO_EXTENSIONS)})")
    return video, audio


def truncate_at(text: str, until: Sequence[str] | str | None) -> str:
    """The answer up to the first stop string (lmms-eval's `until`); the kit's exported tasks have none."""
    if isinstance(until, str):
        until = [until]
    cut = len(text)
    for s in until or ():
        if s and s in text:
            cut = min(cut, text.index(s))
    return text[:cut]


class KitModel:
    """The kit's backend behind lmms-eval's two request types.

    profile / params_dir: the protocol settings (params/<profile>/07_zero_shot_emorealm.yaml: media decoding,
    batch_size, decoding, feature cache, device, torch threads).  The model: `variant` (the profile's reference
    checkpoint, plus the variant's adapter unless "reference"), or `pretrained` (a thinker-only or full
    Qwen2.5-Omni folder) with an optional LoRA `adapter` folder.  Other keyword arguments override the
    params' keys of the same name (PARAM_ARGS); `eval_batch_size` the params' batch_size.
    `backend` / `media_fn`: an already loaded backend and media loader (tests).
    """

    def __init__(self, *, profile: str = "tiny", params_dir: str | None = None, variant: str | None = None,
                 pretrained: str | None = None, adapter: str | None = None, eval_batch_size: int | None = None,
                 loglikelihood: str = "loss", backend: Any = None, media_fn: Callable[[Item], Media] | None = None,
                 **param_overrides: Any):
        from avere_utils import config

        unknown = sorted(set(param_overrides) - set(PARAM_ARGS))
        if unknown:
            raise PluginError(f"avere_omni: unknown model argument(s) {unknown}; known: profile, params_dir, variant, "
                              f"pretrained, adapter, eval_batch_size, loglikelihood, {', '.join(PARAM_ARGS)}")
        if loglikelihood not in LL_CONVENTIONS:
            raise PluginError(f"avere_omni: loglikelihood must be one of {list(LL_CONVENTIONS)}, got {loglikelihood!r}")
        if params_dir:
            config.set_params_dir(params_dir)
        overrides = {k: v for k, v in param_overrides.items() if v is not None}
        if pretrained:
            overrides["reference_dir"] = str(pretrained)
        if adapter:
            overrides["adapter_dir"] = str(adapter)
            overrides["variant"] = variant or Path(str(adapter)).name
            if overrides["variant"] == "reference":
                raise PluginError("avere_omni: an adapter was given with variant 'reference' (which means no adapter)")
        else:
            overrides["variant"] = variant or "reference"
        if eval_batch_size is not None:
            overrides["batch_size"] = int(eval_batch_size)
        self.params = config.load_stage(profile, PARAMS_STAGE, overrides)
        self.ll_convention = loglikelihood
        if backend is None:
            from avere_utils.evaluation import common

            backend = common.open_backend(self.params)
        self.backend = backend
        if hasattr(self.params, "pack_candidates"):
            self.backend.pack_candidates = self.params.pack_candidates
        self._media_fn = media_fn
        self.cache_misses: dict[str, int] = {}
        self.media_settings = None
        if media_fn is None:
            from avere_utils.evaluation import common

            self.media_settings = common.media_settings(self.params, backend)

    # --- media ------------------------------------------------------------------------------------------
    def new_media_fn(self, misses: dict[str, int] | None = None) -> Callable[[Item], Media]:
        """A fresh loader per task, as each evaluation stage makes one: the checkpoint's decoding settings with
        the params' overrides, the params' feature cache read (the notebooks' decoded clips), one Media object
        per clip while it is recent (`predict.media_loader`'s reuse).  A request without media gets an empty
        Media (a text-only prompt).

        The cache is only read (`ReadOnlyCache`): lmms-eval 0.7.3 needs PyAV < 16, whose FFmpeg scales frames a
        little differently from the kit's pinned PyAV (on the tiny run, every clip's frames: mean 0.6 / 255 per
        pixel, at most 24), and the cache key names files and settings but not the decoder, so an entry written
        here would be read by a later notebook run as its own.  Clips missing from the cache are decoded here
        and counted in `misses` (clip -> times decoded)."""
        if self._media_fn is not None:
            load = self._media_fn
        else:
            load = read_only_media_loader(self.media_settings, self.params.cache_dir, {} if misses is None else misses)

        def media_fn(item: Item) -> Media:
            if item.video is None and item.audio is None:
                return Media()
            return load(item)

        return media_fn

    # --- documents -> items ---------------------------------------------------------------------------
    @staticmethod
    def _doc(task_dict: Mapping[str, Any], req: Request) -> Any:
        try:
            return task_dict[req.task][req.split][req.doc_id]
        except (KeyError, IndexError, TypeError):
            return None

    def _items(self, reqs: Sequence[Request], task_dict: Mapping[str, Any], key_of: Callable[[Request], Any]
               ) -> tuple[list[Item], dict[Any, str], dict[str, str]]:
        """One Item per distinct key (the same document asked twice - lmms-eval's padding - is predicted once).
        Ids are the documents' own `id` where they have one, so that items sort as the kit sorts them."""
        items: list[Item] = []
        id_of: dict[Any, str] = {}
        prompt_of: dict[str, str] = {}
        for r in reqs:
            key = key_of(r)
            if key in id_of:
                continue
            doc = self._doc(task_dict, r)
            base = str(doc["id"]) if isinstance(doc, Mapping) and doc.get("id") is not None else str(r.doc_id)
            iid, n = base, 1
            while iid in prompt_of:
                iid, n = f"{base}#{n}", n + 1
            where = f"task {r.task} document {r.doc_id}"
            visuals = r.doc_to_visual(doc) if (r.doc_to_visual is not None and doc is not None) else None
            video, audio = split_visuals(visuals, where)
            items.append(Item(id=iid, dataset=str(r.task or "text"), split=str(r.split or "test"), video=video,
                              audio=audio))
            id_of[key] = iid
            prompt_of[iid] = r.context
        return items, id_of, prompt_of

    @staticmethod
    def _by(reqs: Sequence[Request], key: Callable[[Request], Any]) -> dict[Any, list[Request]]:
        out: dict[Any, list[Request]] = {}
        for r in reqs:
            out.setdefault(key(r), []).append(r)
        return out

    def _decoding(self, gen: Mapping[str, Any]) -> Any:
        from avere_utils.evaluation.predict import Decoding

        p = self.params
        temperature = float(gen.get("temperature", p.temperature) or 0.0)
        if gen.get("do_sample") is False:
            temperature = 0.0
        return Decoding(max_new_tokens=int(gen.get("max_new_tokens", p.max_new_tokens)), temperature=temperature,
                        seed=p.seed, use_cache=p.use_cache)

    def _run(self, items: Sequence[Item], task: Any, decoding: Any, desc: str) -> dict[str, dict[str, Any]]:
        """The kit's prediction runner into a scratch file (one process: lmms-eval has already split the
        documents between ranks)."""
        from avere_utils.evaluation.predict import run_predictions

        settings = {"harness": "lmms-eval", "media": str(self.media_settings)}
        misses: dict[str, int] = {}
        with tempfile.TemporaryDirectory(prefix="avere-lmms-") as tmp:
            run = run_predictions(self.backend, items, Path(tmp) / "predictions.jsonl", task, decoding,
                                  settings=settings, media_fn=self.new_media_fn(misses), batch_size=self.params.batch_size,
                                  shard=(0, 1), desc=desc)
        for clip, n in misses.items():
            self.cache_misses[clip] = self.cache_misses.get(clip, 0) + n
        if misses:
            log.warning("%s %d clips decoded here, not read from the feature cache %s (%s): the kit's stages, with "
                        "their own PyAV, may decode them a little differently", MISS_MARK, len(misses),
                        self.params.cache_dir, desc)
        return run.records

    # --- the two request types ------------------------------------------------------------------------
    def generate_until(self, requests: Sequence[Any], task_dict: Mapping[str, Any]) -> list[str]:
        from avere_utils.evaluation.predict import PredictionTask

        reqs = [parse_request(r, i) for i, r in enumerate(requests)]
        out: list[str | None] = [None] * len(reqs)
        groups = self._by(reqs, lambda r: (r.task, json.dumps(r.gen_kwargs, sort_keys=True, default=str)))
        for (task, _), group in groups.items():
            key_of = lambda r: (r.split, r.doc_id, r.context)
            items, id_of, prompt_of = self._items(group, task_dict, key_of)
            records = self._run(items, PredictionTask(prompt_for=lambda it, p=prompt_of: p[it.id], generate=True),
                                self._decoding(group[0].gen_kwargs or {}), desc=f"lmms-eval {task}")
            until = (group[0].gen_kwargs or {}).get("until")
            for r in group:
                rec = records.get(id_of[key_of(r)]) or {}
                text = rec.get("generation")
                if text is None:
                    log.warning("task %s document %s: no answer (%s); answered with an empty string", task, r.doc_id,
                                rec.get("error", "no record"))
                    text = ""
                out[r.index] = truncate_at(text, until)
        return [t if t is not None else "" for t in out]

    def loglikelihood(self, requests: Sequence[Any], task_dict: Mapping[str, Any]) -> list[tuple[float, bool]]:
        from avere_utils.evaluation.predict import PredictionTask

        reqs = [parse_request(r, i) for i, r in enumerate(requests)]
        out: list[tuple[float, bool] | None] = [None] * len(reqs)
        sign = -1.0 if self.ll_convention == "loss" else 1.0
        for task, group in self._by(reqs, lambda r: r.task).items():
            key_of = lambda r: (r.split, r.doc_id, r.context)
            items, id_of, prompt_of = self._items(group, task_dict, key_of)
            candidates: dict[str, list[str]] = {it.id: [] for it in items}
            for r in group:
                cands = candidates[id_of[key_of(r)]]
                if r.continuation not in cands:
                    cands.append(r.continuation)
            records = self._run(items, PredictionTask(prompt_for=lambda it, p=prompt_of: p[it.id], generate=False,
                                                      candidates_for=lambda it, c=candidates: c[it.id]),
                                self._decoding({}), desc=f"lmms-eval {task or 'text'} (likelihood)")
            for r in group:
                iid = id_of[key_of(r)]
                scores = (records.get(iid) or {}).get("scores")
                if not scores:
                    raise PluginError(f"task {task} document {r.doc_id}: no likelihoods "
                                      f"({(records.get(iid) or {}).get('error', 'no record')})")
                out[r.index] = (sign * float(scores[candidates[iid].index(r.continuation)]), False)
        return [o if o is not None else (0.0, False) for o in out]
