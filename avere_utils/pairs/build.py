"""Building the preference pairs: clips -> samples -> checked, deduplicated, split, balanced rows.

Steps (each counted in the stats, nothing dropped silently):
1. read the training-source manifest; a clip whose media files are missing, or (template generator) that
   has no cue record, is a counted skip;
2. split by CLIP into train / validation (no clip in both; PMP donors come from the same split);
3. per clip, `samples_per_clip` samples are planned: the family is the one furthest below its target share
   (`family_weights`) among those the clip can support, preferring families not yet used for this clip
   (modality-disagreement clips take modality_agreement first: they are its only "No" answers); a stress
   sample's question (the cue asked about and the cue each response rests on) is drawn here too, so both
   generators, and an LLM sample's template fallback, answer the same question;
4. the generator writes the three responses (LLM requests run `llm_workers` at a time); every sample is
   checked against the cue record (`cues.check_sample`); invalid ones are counted by reason and kept out;
5. exact duplicates (same clip, prompt, chosen and rejections) are counted and kept out;
6. the PMP rejected input is drawn; `max_pairs` > 0 takes a family-balanced subsample.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm.auto import tqdm

from avere_utils.datasets.common import read_manifest
from avere_utils.emotions import cue_kind, find_cues
from avere_utils.llm_client import ChatClient
from avere_utils.pairs.cues import (
    RESPONSE_KINDS,
    CueRecord,
    check_sample,
    check_sample_without_record,
    cited_cues,
    targeted_modalities,
)
from avere_utils.pairs.inputs import (
    ClipRef,
    CounterfactualInputs,
    RejectedInput,
    RejectedInputPicker,
    media_ok,
    noise_seed,
)
from avere_utils.pairs.interop import export_released_json
from avere_utils.pairs.llm import LLMGenerator
from avere_utils.pairs.params import FAMILIES, FAMILY_MODALITY, PairParams
from avere_utils.pairs.store import save_pairs
from avere_utils.pairs.templates import (
    PROMPTS,
    STRESS_FAMILIES,
    Draft,
    StressAsk,
    feasible_families,
    stress_ask,
    template_sample,
)
from avere_utils.records import Item
from avere_utils.synth.counterfactual import COUNTERFACTUAL_DIR

log = logging.getLogger(__name__)

MAX_INVALID_EXAMPLES = 20
FAMILIES_WITHOUT_CUES: tuple[str, ...] = ("visual_reasoning", "audio_reasoning", "emotion_id")


@dataclass
class Clip:
    item: Item
    record: CueRecord | None
    ref: ClipRef
    split: str = "train"


@dataclass
class BuildResult:
    rows: list[dict[str, str]]
    stats: dict[str, Any] = field(default_factory=dict)


def read_items(manifest_file: str | Path) -> list[Item]:
    """The training-source manifest's Items (the data layer's one reader; a missing file names stage 01)."""
    return read_manifest(manifest_file)


def _clip_seed(seed: int, clip_id: str) -> list[int]:
    return [seed, int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "big")]


def prepare_clips(items: Iterable[Item], generator: str, counts: Counter[str]) -> list[Clip]:
    clips: list[Clip] = []
    seen: set[str] = set()
    for it in items:
        counts["clips_in_manifest"] += 1
        if it.id in seen:
            counts["skipped_duplicate_clip_id"] += 1
            log.warning("clip %s appears twice in the manifest; the second is skipped", it.id)
            continue
        seen.add(it.id)
        why = media_ok(it.video, it.audio)
        if why:
            counts["skipped_missing_media"] += 1
            log.warning("clip %s skipped: %s", it.id, why)
            continue
        raw = (it.text or {}).get("cues")
        record = CueRecord.from_dict(raw, where=f"clip {it.id} cue record") if raw else None
        if record is None and generator == "template":
            counts["skipped_no_cue_record"] += 1
            continue
        ve = record.video_emotion if record else it.label
        ae = record.audio_emotion if record else it.label
        if not ve:
            counts["skipped_no_label"] += 1
            continue
        ref = ClipRef(it.id, str(it.video), str(it.audio or it.video), ve, ae)
        clips.append(Clip(it, record, ref))
    return clips


def split_by_clip(clips: list[Clip], val_fraction: float, seed: int) -> None:
    """Assign each clip to train or validation in place (a seeded shuffle of the sorted clip ids)."""
    ids = sorted(c.ref.clip_id for c in clips)
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = max(1, n_val)
    val = set(np.random.default_rng(seed).permutation(ids)[:n_val].tolist()) if n_val else set()
    for c in clips:
        c.split = "validation" if c.ref.clip_id in val else "train"


class FamilyBalancer:
    """Picks the feasible family furthest below its target share (ties broken at random)."""

    def __init__(self, weights: dict[str, float]):
        total = sum(weights.values())
        self.share = {f: weights.get(f, 0.0) / total for f in FAMILIES}
        self.counts: Counter[str] = Counter()

    def choose(self, candidates: list[str], rng: np.random.Generator) -> str | None:
        cands = [f for f in candidates if self.share[f] > 0]
        if not cands:
            return None
        n = sum(self.counts.values()) + 1
        deficit = {f: self.share[f] * n - self.counts[f] for f in cands}
        best = max(deficit.values())
        top = [f for f in cands if deficit[f] >= best - 1e-9]
        return top[int(rng.integers(len(top)))]

    def add(self, family: str) -> None:
        self.counts[family] += 1


def _claimed_label(clip: Clip, family: str) -> str:
    m = FAMILY_MODALITY[family]
    return clip.ref.audio_emotion if m == "audio" else clip.ref.video_emotion


def balanced_cap(rows: list[dict[str, str]], max_pairs: int, weights: dict[str, float]) -> list[dict[str, str]]:
    """At most max_pairs rows, keeping each family's share close to its weight (order-stable)."""
    if max_pairs <= 0 or len(rows) <= max_pairs:
        return rows
    rank: Counter[str] = Counter()
    keyed = []
    for i, r in enumerate(rows):
        keyed.append(((rank[r["family"]] + 1) / max(weights.get(r["family"], 0.0), 1e-9), i))
        rank[r["family"]] += 1
    keep = sorted(i for _, i in sorted(keyed)[:max_pairs])
    return [rows[i] for i in keep]


def _make_client(params: PairParams) -> ChatClient:
    return ChatClient(params.llm_base_url, params.llm_model, api_key_env=params.llm_api_key_env,
                      cache_dir=params.llm_cache_dir or None, timeout_s=params.llm_timeout_s,
                      max_retries=params.llm_max_retries)


@dataclass
class PlannedSample:
    clip: Clip
    index: int  # the sample's number within its clip
    family: str
    prompt_index: int
    rng: np.random.Generator  # the clip's stream, shared by its samples in order
    stress: StressAsk | None = None  # a stress family's question, the same whichever generator writes it


def plan_samples(clips: list[Clip], params: PairParams, counts: Counter[str]) -> list[PlannedSample]:
    """Which family (and prompt template) each sample of each clip gets, balanced across the run."""
    balancer = FamilyBalancer(params.family_weights)
    plans: list[PlannedSample] = []
    for clip in sorted(clips, key=lambda c: c.ref.clip_id):
        rng = np.random.default_rng(_clip_seed(params.seed, clip.ref.clip_id))
        record = clip.record
        feasible = [f for f in (feasible_families(record) if record else FAMILIES_WITHOUT_CUES)
                    if params.family_weights.get(f, 0) > 0]  # a family of weight 0 is never planned
        if not feasible:
            counts["skipped_no_feasible_family"] += 1
            continue
        used: set[str] = set()
        for s in range(params.samples_per_clip):
            fresh = [f for f in feasible if f not in used] or feasible
            if (record is not None and not record.agree and "modality_agreement" in fresh
                    and params.family_weights.get("modality_agreement", 0) > 0):
                family = "modality_agreement"
            else:
                family = balancer.choose(fresh, rng)
            if family is None:
                continue
            used.add(family)
            balancer.add(family)
            p = int(rng.integers(len(PROMPTS[family])))
            ask = (stress_ask(record, family, rng, p, params.stress_kind_weights, params.stress_responses)
                   if family in STRESS_FAMILIES and record is not None else None)
            plans.append(PlannedSample(clip, s, family, p, rng, ask))
    counts["samples_planned"] = len(plans)
    return plans


def _ask_llm(llm: LLMGenerator, plans: list[PlannedSample], workers: int, progress: bool) -> list[Draft | None]:
    """One request per planned sample, `workers` at a time (order kept; the on-disk cache makes reruns free)."""
    def ask(plan: PlannedSample) -> Draft | None:
        record = plan.clip.record
        if plan.stress is not None and plan.stress.form != "cue_swap":
            return None  # the same-cue and answer-only forms are written by the template (build_pairs), no request
        if plan.stress is not None:
            return llm.generate(plan.stress.prompt, plan.family, record, stress=plan.stress,
                                template=f"p{plan.prompt_index}/{plan.stress.kind}")
        captions = (plan.clip.item.text or {}).get("captions")
        return llm.generate(PROMPTS[plan.family][plan.prompt_index], plan.family, record,
                            label=plan.clip.ref.video_emotion, captions=captions, template=f"p{plan.prompt_index}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(tqdm(pool.map(ask, plans), total=len(plans), desc="LLM samples", unit="sample",
                         disable=not progress))


def build_pairs(params: PairParams, items: Iterable[Item] | None = None, client: ChatClient | None = None,
                progress: bool = True) -> BuildResult:
    """All preference rows for the profile (not yet saved); `items` default to the manifest's."""
    t0 = time.perf_counter()
    counts: Counter[str] = Counter()
    if items is None:
        items = read_items(params.manifest_file)
    clips = prepare_clips(items, params.generator, counts)
    split_by_clip(clips, params.val_fraction, params.seed)
    rejected_inputs = _RejectedInputs(clips, params)
    plans = plan_samples(clips, params, counts)
    llm = None
    llm_drafts: list[Draft | None] = [None] * len(plans)
    if params.generator == "llm":
        llm = LLMGenerator(client or _make_client(params), temperature=params.llm_temperature)
        llm_drafts = _ask_llm(llm, plans, params.llm_workers, progress)
    kept_out = _KeptOut(counts)
    rows: list[dict[str, str]] = []
    # one sample at a time: its draft and then its rejected input take their draws from the clip's stream in turn
    for plan, llm_draft in zip(tqdm(plans, desc="pairs", unit="sample", disable=not progress), llm_drafts):
        draft = _draft(plan, llm_draft, llm is not None, params, counts)
        if draft is None:
            continue
        texts = draft.texts()
        if kept_out.invalid(plan, draft, texts, params) or kept_out.duplicate(plan, draft, texts):
            continue
        rows.append(_pair_row(plan, draft, texts, rejected_inputs.draw(plan, texts)))
    before_cap = len(rows)
    rows = balanced_cap(rows, params.max_pairs, params.family_weights)
    counts["dropped_by_max_pairs"] = before_cap - len(rows)
    rejected_inputs.finish(rows, counts)
    stats = pair_stats(rows, counts, clips)
    stats["invalid_reasons"] = dict(kept_out.invalid_reasons)
    stats["invalid_examples"] = kept_out.invalid_examples
    if llm is not None:
        stats["llm"] = llm.stats()
    stats["build_seconds"] = round(time.perf_counter() - t0, 3)
    log.info("built %d pairs from %d clips (%d invalid, %d duplicates) in %.1f s", len(rows), len(clips),
             counts["invalid"], counts["duplicates_dropped"], stats["build_seconds"])
    return BuildResult(rows, stats)


def _draft(plan: PlannedSample, llm_draft: Draft | None, use_llm: bool, params: PairParams,
           counts: Counter[str]) -> Draft | None:
    """The sample's three responses: the template's, or the LLM's (its failure falls back to the template
    when params allow, else the sample is a counted skip, None)."""
    record = plan.clip.record
    if not use_llm or (plan.stress is not None and plan.stress.form != "cue_swap"):
        return _template_draft(plan, params)
    if llm_draft is not None:
        return llm_draft
    if params.llm_fallback_to_template and record is not None:
        counts["llm_fallback_to_template"] += 1
        return _template_draft(plan, params)
    counts["skipped_llm_failed"] += 1
    return None


def _template_draft(plan: PlannedSample, params: PairParams) -> Draft:
    return template_sample(plan.clip.record, plan.family, plan.rng, params.max_cues_per_response, plan.prompt_index,
                           plan.stress, params.description_rejections)


@dataclass
class _KeptOut:
    """The samples kept out of the pairs, counted in `counts`: invalid ones (by reason, whatever the cue, and
    the first MAX_INVALID_EXAMPLES whole) and exact duplicates (same clip, prompt, chosen and rejections)."""

    counts: Counter[str]
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)
    seen: set[tuple[str, ...]] = field(default_factory=set)

    def invalid(self, plan: PlannedSample, draft: Draft, texts: dict[str, str], params: PairParams) -> bool:
        record, family = plan.clip.record, plan.family
        problems = (check_sample(texts, record, family, draft.prompt, params.stress_responses,
                                 params.description_rejections) if record
                    else check_sample_without_record(texts))
        if not problems:
            return False
        self.counts["invalid"] += 1
        for p in problems:
            self.invalid_reasons[re.sub(r"'[^']*'", "<cue>", p)] += 1
        if len(self.invalid_examples) < MAX_INVALID_EXAMPLES:
            self.invalid_examples.append({"clip_id": plan.clip.ref.clip_id, "family": family, "problems": problems,
                                          **texts})
        return True

    def duplicate(self, plan: PlannedSample, draft: Draft, texts: dict[str, str]) -> bool:
        key = (plan.clip.ref.clip_id, draft.prompt, *(texts[k] for k in RESPONSE_KINDS))
        if key in self.seen:
            self.counts["duplicates_dropped"] += 1
            return True
        self.seen.add(key)
        return False


class _RejectedInputs:
    """Where a sample's PMP rejected input comes from: a donor clip of the same split (or noise), replaced by
    the clip itself re-rendered with the cited cues toggled when a source is `counterfactual`."""

    def __init__(self, clips: list[Clip], params: PairParams):
        self.seed = params.seed
        self.valid_only = params.pmp_valid_only
        self.sources = {"visual": params.pmp_video_source, "audio": params.pmp_audio_source}
        self.none_unchanged = 0
        self.pickers = {s: RejectedInputPicker([c.ref for c in clips if c.split == s], params.pmp_video_source,
                                               params.pmp_audio_source) for s in ("train", "validation")}
        self.counterfactual = (CounterfactualInputs(params.data_root, params.pmp_video_source, params.pmp_audio_source)
                               if "counterfactual" in (params.pmp_video_source, params.pmp_audio_source) else None)

    def draw(self, plan: PlannedSample, texts: dict[str, str]) -> RejectedInput:
        clip, record = plan.clip, plan.clip.record
        if self.valid_only and plan.stress is not None and not answer_can_change(
                plan.stress.kind, self.sources[STRESS_FAMILIES[plan.family]]):
            self.none_unchanged += 1
            return RejectedInput(clip.ref.video, clip.ref.audio)  # no rejected input: no PMP term
        rej = self.pickers[clip.split].pick(clip.ref, FAMILY_MODALITY[plan.family], plan.rng,
                                            noise_seed(self.seed, _sample_id(plan)))
        if self.counterfactual is not None and record is not None:
            rej = self.counterfactual.rejected(clip.ref.clip_id,
                                               counterfactual_cues(record, plan.family, texts, plan.stress), rej)
        return rej

    def finish(self, rows: list[dict[str, str]], counts: Counter[str]) -> None:
        """Count the fallbacks to noise and render the counterfactual clips the kept `rows` use."""
        counts["pmp_fallback_to_noise"] = sum(p.fallbacks_to_noise for p in self.pickers.values())
        if self.valid_only:
            counts["pmp_none_answer_unchanged"] = self.none_unchanged
        if self.counterfactual is not None:
            kept = {r["rejected_clip_id"] for r in rows}
            self.counterfactual.pending = {k: v for k, v in self.counterfactual.pending.items() if k in kept}
            counts["counterfactual_clips_rendered"] = self.counterfactual.render()
            counts.update({f"pmp_{k}": v for k, v in self.counterfactual.counts.items()})


def answer_can_change(kind: str, source: str) -> bool:
    """Whether the PMP rejected input from `source` can make a stress sample's chosen answer wrong, for a
    question about a cue of `kind`.  Only then is "the answer under the real media over the same answer under
    the rejected media" a true preference: a context cue is never a reason (No under any media); an absent
    typical cue is made present only by the counterfactual (another clip, or noise, leaves it absent: No again);
    a present typical cue is absent from the counterfactual, from noise and from another emotion's clip."""
    if kind == "spurious":
        return False
    if kind == "hallucination":
        return source == "counterfactual"
    return source != "same_emotion_clip"  # a clip of the same emotion may show the asked cue too


def _sample_id(plan: PlannedSample) -> str:
    return f"{plan.clip.ref.clip_id}__{plan.index}"


def _pair_row(plan: PlannedSample, draft: Draft, texts: dict[str, str], rej: RejectedInput) -> dict[str, str]:
    """One row of the pairs table (pairs/store.py COLUMNS)."""
    clip, family, record = plan.clip, plan.family, plan.clip.record
    return {
        "id": _sample_id(plan), "clip_id": clip.ref.clip_id, "family": family, "modality": FAMILY_MODALITY[family],
        "prompt": draft.prompt, **texts,
        "video": clip.ref.video, "audio": clip.ref.audio, "video_l": rej.video_l, "audio_l": rej.audio_l,
        "label": _claimed_label(clip, family), "split": clip.split,
        "video_emotion": record.video_emotion if record else "",
        "audio_emotion": record.audio_emotion if record else "",
        "cues": json.dumps(cited_cues(texts)),
        "cue_record": json.dumps(record.to_dict()) if record else "",
        "generator": "llm" if draft.template.endswith("/llm") else "template",
        "template": draft.template,
        "rejected_clip_id": rej.rejected_clip_id, "rejected_clip_video": rej.rejected_clip_video,
        "rejected_clip_audio": rej.rejected_clip_audio,
    }


def pair_stats(rows: list[dict[str, str]], counts: Counter[str], clips: list[Clip]) -> dict[str, Any]:
    by: dict[str, Counter[str]] = defaultdict(Counter)
    lengths: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        for key in ("family", "modality", "split", "label"):
            by[key][r[key]] += 1
        if r["family"] == "modality_agreement":
            by["agreement_answer"]["yes" if r["video_emotion"] == r["audio_emotion"] else "no"] += 1
        by["pmp_source"][_pmp_kind(r)] += 1
        for k in RESPONSE_KINDS:
            lengths[k].append(len(r[k]))
    train_clips = {r["clip_id"] for r in rows if r["split"] == "train"}
    val_clips = {r["clip_id"] for r in rows if r["split"] == "validation"}
    return {
        "n_pairs": len(rows),
        "n_clips_used": len(train_clips | val_clips),
        "n_clips_usable": len(clips),
        "clips_in_both_splits": len(train_clips & val_clips),
        "counts": dict(counts),
        **{f"by_{k}": dict(v) for k, v in by.items()},
        "mean_chars": {k: round(float(np.mean(v)), 1) for k, v in lengths.items()},
        "mean_abs_char_diff_vs_chosen": {
            k: round(float(np.mean(np.abs(np.array(lengths[k]) - np.array(lengths["chosen"])))), 2)
            for k in ("rejected_vr", "rejected_er") if lengths[k]},
    }


def _pmp_kind(row: dict[str, str]) -> str:
    parts = []
    for col, real in (("video_l", row["video"]), ("audio_l", row["audio"])):
        if row[col] != real:
            kind = ("noise" if row[col].startswith("noise:") else
                    "counterfactual" if f"/{COUNTERFACTUAL_DIR}/" in row[col] else "clip")
            parts.append(f"{col[:5]}={kind}")
    return ",".join(parts)


def counterfactual_cues(record: CueRecord, family: str, texts: dict[str, str], stress: StressAsk | None
                        ) -> dict[str, list[str]]:
    """What a counterfactual rejected input toggles, per targeted modality: a stress sample's asked cue
    (present -> absent, absent -> present, context -> other context); otherwise the present cues the chosen
    response cites (present -> absent)."""
    if stress is not None:
        return {STRESS_FAMILIES[family]: [stress.asked]}
    out: dict[str, list[str]] = {}
    for cue in find_cues(texts["chosen"]):
        modality = cue_kind(cue)[0]
        if modality in targeted_modalities(family) and cue in record.of(modality).present:
            out.setdefault(modality, []).append(cue)
    return out


def build_and_save(params: PairParams, items: Iterable[Item] | None = None, client: ChatClient | None = None,
                   progress: bool = True) -> BuildResult:
    """build_pairs, then the HF dataset under pairs_dir, stats.json and the released-format JSON."""
    result = build_pairs(params, items, client, progress)
    result.stats["params"] = params.to_dict()
    save_pairs(result.rows, params.pairs_dir, result.stats)
    if params.released_json_file:
        n = export_released_json(result.rows, params.released_json_file, params.released_media_dir)
        log.info("wrote %d samples in the released JSON format to %s", n, params.released_json_file)
    return result
