"""The reference model of a run: built and warm-started (tiny) or linked from a local base (paper).

Notebook 03 calls these; later stages only need the folder (`RunLayout.reference_model()`), which
`load_backend` loads like any checkpoint.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from avere_utils.datasets.common import read_manifest as read_items  # noqa: F401  (notebook 03 reads it here)
from avere_utils.emotions import find_cues
from avere_utils.models.loading import load_backend
from avere_utils.models.processor import PROCESSOR_FILE, ProcessorSettings
from avere_utils.models.sft import SFTConfig, run_sft, tokenizer_corpus
from avere_utils.models.sft_workers import Shard, sft_workers
from avere_utils.models.tiny import build_tiny_checkpoint, resolve_size
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT, choice_answer, qa_prompt
from avere_utils.records import Example, Item, Media

log = logging.getLogger(__name__)


def load_clip_media(items: Sequence[Item], media_settings: Any, cache_dir: str | Path | None, *,
                    show: bool = True) -> dict[str, Media]:
    """Decoded Media per item id (one object per clip, so that the backend encodes each clip once)."""
    from avere_utils.media import load_media

    cache = _feature_cache(cache_dir)
    return {it.id: load_media(it.video, it.audio, media_settings, cache)
            for it in tqdm(items, desc="decoding clips", unit="clip", disable=not show)}


def _feature_cache(cache_dir: str | Path | None) -> Any:
    from avere_utils.cache import FeatureCache

    return FeatureCache(cache_dir) if cache_dir else None


def build_tiny_reference(p: Any) -> tuple[Any, list[dict[str, Any]], list[Item], dict[str, Media]]:
    """Tiny profile: tokenizer + tiny thinker from the world's texts, SFT warm start, saved to reference_dir.
    With `sft_workers` > 1 the SFT runs data-parallel in that many processes (models/sft_workers.py).

    Returns (backend, SFT history, training items, their media)."""
    manifests = Path(p.manifests_dir)
    corpus = tokenizer_corpus(sorted(manifests.glob("*.jsonl")), p.pairs_dir)
    init_dir = Path(p.reference_dir).parent / "reference_init"
    size = resolve_size(p.model_size)
    size["media"].update(n_frames=p.n_frames, frame_size=p.frame_size)
    build_tiny_checkpoint(init_dir, corpus, size=size, seed=p.seed)
    _write_processor_settings(init_dir, p)
    if _uses_contrasts(p):  # rendered here, once, before the SFT workers read them
        from avere_utils.synth.contrasts import stress_contrasts

        _, skipped = stress_contrasts(_training_items(p), p.data_root, render=True, truth_share=p.sft_counterfactual_truth_share)
        log.info("SFT stress contrasts: questions without one, by reason: %s", skipped)
    with sft_workers(p.sft_workers, _sft_from_init, (p, str(init_dir)), device=p.device,
                     threads=p.torch_threads) as shard:
        backend, history, items, media = _sft_from_init(shard, p, str(init_dir))
    out = Path(p.reference_dir)
    fresh, stale = out.with_name(out.name + ".new"), out.with_name(out.name + ".old")
    for d in (fresh, stale):
        if d.exists():
            shutil.rmtree(d)
    backend.save_pretrained(str(fresh))
    # swap folders so that a reader never finds a half-written reference
    if out.exists():
        os.replace(out, stale)
    os.replace(fresh, out)
    for d in (stale, init_dir):
        if d.exists():
            shutil.rmtree(d)
    log.info("reference model saved to %s", out)
    return backend, history, items, media


def _sft_from_init(shard: Shard, p: Any, init_dir: str) -> tuple[Any, list[dict[str, Any]], list[Item], dict[str, Media]]:
    """Both SFT phases from the initial checkpoint, as SFT worker `shard` (every worker runs this)."""
    items = _training_items(p)
    backend = load_backend(init_dir, device=p.device, dtype=p.dtype)
    media = load_clip_media(items, backend.media_settings, p.cache_dir, show=shard.is_main)
    contrasts = None
    if _uses_contrasts(p):
        from avere_utils.synth.contrasts import stress_contrasts

        contrasts, _ = stress_contrasts(items, p.data_root, render=False, truth_share=p.sft_counterfactual_truth_share)
        media.update(load_contrast_media(contrasts, backend.media_settings, p.cache_dir, show=shard.is_main))
    cfg = SFTConfig(epochs=p.sft_epochs, batch_size=p.sft_batch_size, lr=p.sft_lr, weight_decay=p.sft_weight_decay,
                    warmup_ratio=p.sft_warmup_ratio, max_steps=p.sft_max_steps, seed=p.seed,
                    perception_weight=p.sft_perception_weight, length_groups=p.sft_length_groups)
    log_file = p.train_log_file if shard.is_main else None
    history = run_sft(backend, items, media.__getitem__, cfg, log_file, tasks=p.sft_tasks,
                      qa_per_clip=p.sft_qa_per_clip, label_repeats=p.sft_label_repeats,
                      presence_per_clip=p.sft_presence_per_clip, letters_per_clip=p.sft_letters_per_clip,
                      shard=shard, contrasts=contrasts, counterfactual_per_clip=p.sft_counterfactual_per_clip)
    if p.sft_presence_phase_steps:
        history += presence_phase(backend, items, media.__getitem__, p, history, log_file=log_file, shard=shard,
                                  contrasts=contrasts)
    for c in (contrasts or {}).values():  # the notebook's later cells look at the training clips only
        for x in c:
            media.pop(x.cf_id, None)
    return backend, history, items, media


def _training_items(p: Any) -> list[Item]:
    items = read_items(Path(p.manifests_dir) / "train_source.jsonl")
    return items[: p.sft_max_items] if p.sft_max_items else items


def _uses_contrasts(p: Any) -> bool:
    return "counterfactual" in p.sft_tasks or (p.sft_presence_phase_steps > 0
                                               and "counterfactual" in p.sft_presence_phase_tasks)


def load_contrast_media(contrasts: dict[str, list[Any]], media_settings: Any, cache_dir: str | Path | None, *,
                        show: bool = True) -> dict[str, Media]:
    """Decoded Media of the counterfactual clips of the SFT's stress contrasts, by counterfactual clip id."""
    from avere_utils.media import load_media

    cache = _feature_cache(cache_dir)
    todo = {c.cf_id: c for cs in contrasts.values() for c in cs}
    return {cid: load_media(c.cf_video or None, c.cf_audio, media_settings, cache)
            for cid, c in tqdm(todo.items(), desc="decoding counterfactual clips", unit="clip", disable=not show)}


def presence_phase(backend: Any, items: Sequence[Item], media_of: Any, p: Any,
                   history: Sequence[dict[str, Any]], *, log_file: str | Path | None, shard: Shard | None = None,
                   contrasts: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """The second SFT phase: every cue-presence question of each clip, with label and QA replay, for
    `sft_presence_phase_steps` steps at `sft_presence_phase_lr` (its own warmup and decay).

    Why a phase of its own: a Yes/No question about a named cue must be bound to that cue's place in the
    frame or the sound, a second-order use of what the encoders see.  Mixed into the main SFT (two such
    questions per clip among the other tasks) the tiny model stays at "always Yes"; a few hundred steps
    of mostly presence questions at a lower learning rate teach it, and the replayed label and QA records
    keep recognition and the QA text prior from being forgotten (measured in docs/models.md)."""
    cfg = SFTConfig(epochs=0, max_steps=p.sft_presence_phase_steps, batch_size=p.sft_batch_size,
                    lr=p.sft_presence_phase_lr, weight_decay=p.sft_weight_decay, warmup_ratio=p.sft_warmup_ratio,
                    seed=p.seed + 1, perception_weight=0.0, length_groups=1)  # little padding (one per SFT worker)
    return run_sft(backend, items, media_of, cfg, log_file,
                   tasks=p.sft_presence_phase_tasks, qa_per_clip=p.sft_qa_per_clip, label_repeats=1,
                   presence_per_clip=0, letters_per_clip=p.sft_letters_per_clip, phase="presence", after=history,
                   shard=shard, presence_balance=p.sft_presence_balance, contrasts=contrasts,
                   counterfactual_per_clip=p.sft_counterfactual_per_clip)


def link_paper_reference(p: Any) -> Path:
    """Paper profile: reference_dir = links to the base model's files + the kit's processor settings."""
    base = Path(p.base_model_path)
    if not base.is_dir() or not (base / "config.json").is_file():
        raise FileNotFoundError(f"base_model_path {base} is not a model folder with config.json "
                                "(download Qwen2.5-Omni-7B there first; nothing is downloaded by the kit)")
    out = Path(p.reference_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        if f.name == PROCESSOR_FILE:
            continue
        link = out / f.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(f.resolve(), link)
    _write_processor_settings(out, p, base=ProcessorSettings.load(base))
    return out


def _write_processor_settings(model_dir: Path, p: Any, base: ProcessorSettings | None = None) -> None:
    s = base or ProcessorSettings.load(model_dir)
    s.long_audio = p.long_audio
    s.audio_in_video = p.audio_in_video
    s.media = {**s.media, "n_frames": p.n_frames, "frame_size": p.frame_size}
    s.save(model_dir)


def generation_table(backend: Any, items: Sequence[Item], media: dict[str, Media], n: int,
                     max_new_tokens: int = 48) -> pd.DataFrame:
    """A few clips: the label, the one-word and detailed answers, and which cited cues the clip really
    shows (present), does not show (absent: hallucinated) or shows but are irrelevant (context)."""
    rows = []
    chosen = list(items)[:n]
    words = backend.generate([Example(CLASSIFICATION_PROMPT, media[it.id]) for it in chosen], max_new_tokens=6)
    details = backend.generate([Example(EMER_PROMPT, media[it.id]) for it in chosen], max_new_tokens=max_new_tokens)
    for it, w, d in zip(chosen, words, details):
        cues = (it.text or {}).get("cues") or {}
        present = set(cues.get("visual", {}).get("present", []) + cues.get("audio", {}).get("present", []))
        absent = set(cues.get("visual", {}).get("absent", []) + cues.get("audio", {}).get("absent", []))
        context = set(cues.get("visual", {}).get("context", []) + cues.get("audio", {}).get("context", []))
        cited = find_cues(d)
        rows.append({"id": it.id, "label": it.label, "audio_emotion": cues.get("audio_emotion"),
                     "one_word": w, "detailed": d,
                     "cited_present": [c for c in cited if c in present],
                     "cited_absent": [c for c in cited if c in absent],
                     "cited_context": [c for c in cited if c in context],
                     "present": sorted(present), "context": sorted(context)})
    return pd.DataFrame(rows)


def background_emotion(item: Item) -> str | None:
    """The emotion whose training-source background this clip shows (synthetic world only), else None."""
    from avere_utils.emotions import SPURIOUS_BACKGROUND

    by_background = {bg: e for e, bg in SPURIOUS_BACKGROUND.items()}
    context = (((item.text or {}).get("cues") or {}).get("visual") or {}).get("context") or []
    return next((by_background[c] for c in context if c in by_background), None)


def heldout_check(backend: Any, items: Sequence[Item], media: dict[str, Media], *, describe: int = 40,
                  max_new_tokens: int = 96) -> tuple[pd.DataFrame, dict[str, float]]:
    """Closed-set recognition (score_choices over EMOTIONS on the classification prompt) on every item,
    and cue citations of detailed answers on the first `describe` items.

    Returns per-item rows and a summary: accuracy, chance; `follows_background`: the share of predictions
    equal to the emotion that the clip's background goes with in the training source (on held-out clips
    the background is independent of the emotion, so a model free of that spurious association follows
    it at about chance, plus the clips where it happens to be right); and the share of detailed answers
    citing a present relevant cue, an absent typical cue (hallucination) or a context cue (spurious)."""
    from avere_utils.emotions import EMOTIONS

    rows = []
    for it in tqdm(items, desc="recognition", unit="clip"):
        scores = backend.score_choices(Example(CLASSIFICATION_PROMPT, media[it.id]), list(EMOTIONS))
        rows.append({"id": it.id, "label": it.label, "pred": EMOTIONS[int(scores.argmax())],
                     "background_emotion": background_emotion(it)})
    df = pd.DataFrame(rows)
    summary = {"n": len(df), "accuracy": float((df.label == df.pred).mean()) if len(df) else float("nan"),
               "chance": 1 / len(EMOTIONS)}
    known = df[df.background_emotion.notna() & (df.background_emotion != df.label)]
    if len(known):  # clips whose background points to another emotion than the true one
        summary["n_misleading_background"] = len(known)
        summary["follows_background"] = float((known.pred == known.background_emotion).mean())
        # what a background-blind model with this accuracy would show if its errors were spread evenly
        summary["follows_background_if_blind"] = (1 - summary["accuracy"]) / (len(EMOTIONS) - 1)
    with_cues = [it for it in items if (it.text or {}).get("cues")][:describe]
    if with_cues:
        table = generation_table(backend, with_cues, media, len(with_cues), max_new_tokens=max_new_tokens)
        summary.update({
            "n_described": len(table),
            "cites_present": float(table.cited_present.map(bool).mean()),
            "cites_absent": float(table.cited_absent.map(bool).mean()),
            "cites_context": float(table.cited_context.map(bool).mean()),
        })
    return df, summary


# --- the cue-presence probe (perception) -------------------------------------------------------------
def balanced_accuracy(truth: Sequence[bool], said_yes: Sequence[bool]) -> float:
    """Mean of the accuracy on the true-Yes items and on the true-No items (nan if either is empty):
    a model that always says Yes scores 0.5, whatever the share of present cues."""
    pos = [s for t, s in zip(truth, said_yes, strict=True) if t]
    neg = [not s for t, s in zip(truth, said_yes, strict=True) if not t]
    if not pos or not neg:
        return float("nan")
    return 0.5 * (sum(pos) / len(pos) + sum(neg) / len(neg))


def probe_summary(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per modality (visual, audio): balanced accuracy, Yes-rate on present and on absent cues, counts."""
    out: dict[str, dict[str, float]] = {}
    for modality, g in rows.groupby("modality", sort=False):
        present, absent = g[g.present], g[~g.present]
        out[str(modality)] = {
            "balanced_accuracy": balanced_accuracy(g.present.tolist(), g.said_yes.tolist()),
            "yes_rate_present": float(present.said_yes.mean()) if len(present) else float("nan"),
            "yes_rate_absent": float(absent.said_yes.mean()) if len(absent) else float("nan"),
            "n_present": int(len(present)), "n_absent": int(len(absent)),
        }
    return out


def presence_probe(backend: Any, items: Sequence[Item], media: dict[str, Media]
                   ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Scoring-mode Yes/No "is cue X there?" over every typical cue of the shown emotion (visual cues of
    the video emotion, audio cues of the audio emotion), present and absent, on each item with a cue
    record; "Yes" when log p("Yes (A)") > log p("No (B)") (the answer form SFT teaches).  One forward per
    clip (its media encoded once)."""
    from avere_utils.synth.text import YES_NO, presence_questions

    rows = []
    for it in tqdm(items, desc="presence probe", unit="clip"):
        record = (it.text or {}).get("cues")
        if not record:
            continue
        qs = presence_questions(record)
        m = media[it.id]
        examples = [Example(qa_prompt(q), m, choice_answer(answer)) for q in qs for answer in YES_NO]
        logp, _ = backend.sequence_logprobs(examples)
        logp = logp.view(len(qs), 2).cpu()
        for q, (yes, no) in zip(qs, logp.tolist()):
            rows.append({"id": it.id, "modality": q["modality"], "cue": q["cue"], "present": q["present"],
                         "margin": yes - no, "said_yes": yes > no})
    if not rows:
        raise ValueError("presence_probe: no item has a cue record (synthetic world only)")
    df = pd.DataFrame(rows)
    return df, probe_summary(df)


def grounded_probe(backend: Any, items: Sequence[Item], media: dict[str, Media]
                   ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """The same question as `presence_probe` as a scored choice among cue lists: per clip and modality,
    the grounded prompt ("Which facial cues of the emotion does the video show?") is scored with every
    non-empty subset of the shown emotion's three typical cues as the answer; the most likely list says,
    for each typical cue, present (in the list) or absent.  Same rows and summary as `presence_probe`."""
    from itertools import combinations

    from avere_utils.synth.text import grounded_answer, grounded_items

    rows = []
    for it in tqdm(items, desc="grounded probe", unit="clip"):
        record = (it.text or {}).get("cues")
        if not record:
            continue
        for g in grounded_items(record):
            subsets = [list(c) for k in range(1, len(g["typical"]) + 1) for c in combinations(g["typical"], k)]
            scores = backend.score_choices(Example(g["prompt"], media[it.id]), [grounded_answer(s) for s in subsets])
            best = subsets[int(scores.argmax())]
            for cue in g["typical"]:
                rows.append({"id": it.id, "modality": g["modality"], "cue": cue, "present": cue in g["present"],
                             "said_yes": cue in best})
    if not rows:
        raise ValueError("grounded_probe: no item has a cue record (synthetic world only)")
    df = pd.DataFrame(rows)
    return df, probe_summary(df)
