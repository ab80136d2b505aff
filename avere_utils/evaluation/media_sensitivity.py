"""Media sensitivity: does a stress answer come from the media at all?

Each EmoReAlM stress item ("Does a trembling voice in the audio show that the person is fearful?") is scored
(Yes log-odds: log p("Yes (A)") - log p("No (B)")) under four inputs:

* `real`: the clip as the benchmark gives it;
* `counterfactual`: the same clip re-rendered with the ASKED cue toggled (synth/counterfactual.py): a
  relevant cue removed, an absent (hallucination) cue added, a spurious context value replaced by another.
  Balanced: one other part of the modality is toggled the other way, so the number of parts stays;
* `noise`: the asked modality replaced by noise (frames of uniform noise / audio of the real RMS), the other
  modality real;
* `text`: no media at all (the text prior alone).

A model that looks answers relevant items Yes and their counterfactuals No, hallucination items No and
their counterfactuals (now present: relevant) Yes; for spurious items the right answer is No either way.
So `flip share` (the share of items whose answer's sign changes from real to counterfactual) should be near
100 % for relevant and hallucination items and near 0 for spurious ones; a model that answers from the text
prior flips nothing.  Real data has no recipe, so this runs on the synthetic world only.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from avere_utils.emotions import find_cues
from avere_utils.records import Example, Item, Media

if TYPE_CHECKING:
    import pandas as pd

    from avere_utils.models.backend import Backend

log = logging.getLogger(__name__)

CONDITIONS: tuple[str, ...] = ("real", "counterfactual", "noise", "text")


@dataclass(frozen=True)
class StressProbe:
    """A stress item with what its counterfactual needs."""

    item: Item
    kind: str
    modality: str  # "visual" | "audio"
    cue: str
    cf_video: str
    cf_audio: str


def _modality(item: Item) -> str:
    return "visual" if item.text["task"].endswith("video") else "audio"


def asked_cue(item: Item, modality: str) -> str | None:
    """The one cue phrase of `modality`'s record list for the item's kind that the question names."""
    from avere_utils.pairs.templates import STRESS_ASKED

    record = item.text.get("cues") or {}
    pool = STRESS_ASKED[item.text["kind"]]
    named = [c for c in (record.get(modality) or {}).get(pool, []) if c in item.text["question"]]
    if len(named) == 1:
        return named[0]
    found = [c for c in find_cues(item.text["question"]) if c in named]
    return found[0] if len(found) == 1 else None


def build_probes(items: Sequence[Item], world_root: str | Path, *, balance: bool = True
                 ) -> tuple[list[StressProbe], dict[str, int]]:
    """The stress items of `items` with their counterfactual clips rendered (once; kept under the world's
    counterfactual/ folder).  Returns (probes, skipped counts by reason): an item whose clip has no recipe
    or whose question names no cue of the clip is skipped and counted, never dropped silently."""
    from avere_utils.synth.counterfactual import render_counterfactual, toggle_cue, world_config, world_specs

    cfg, _ = world_config(world_root)
    specs = world_specs(world_root, ("dfew",))
    probes: list[StressProbe] = []
    skipped: dict[str, int] = {}
    stress = [it for it in items if it.text.get("kind")]
    for item in tqdm(stress, desc="counterfactual clips", unit="item"):
        modality = _modality(item)
        clip_id = Path(item.video or "").stem
        spec = specs.get(clip_id)
        cue = asked_cue(item, modality) if spec is not None else None
        cf = toggle_cue(spec, modality, cue, balance=balance) if cue else None
        if cf is None:
            reason = "no recipe for the clip" if spec is None else "question names no cue of the clip"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        video, wav = render_counterfactual(cf, world_root, cfg)
        probes.append(StressProbe(item, item.text["kind"], modality, cue, video, wav))
    if skipped:
        log.warning("media sensitivity: skipped %s", skipped)
    return probes, skipped


def _noise_media(real: Media, modality: str, seed: int) -> Media:
    from avere_utils.pairs.inputs import noise_audio, noise_frames

    if modality == "visual":
        return Media(frames=noise_frames(real.frames.shape, seed), audio=real.audio, sample_rate=real.sample_rate)
    return Media(frames=real.frames, audio=noise_audio(real.audio, seed), sample_rate=real.sample_rate)


def score_conditions(backend: Backend, probes: Sequence[StressProbe], load: Callable[[str, str], Media], *,
                     prompt_for: Callable[[Item], str], candidates_for: Callable[[Item], list[str]],
                     conditions: Sequence[str] = CONDITIONS, batch_size: int = 16, seed: int = 0,
                     desc: str = "media sensitivity") -> pd.DataFrame:
    """One row per (item, condition): the Yes log-odds.  `load(video, audio)` decodes a clip with the
    checkpoint's settings; the Yes and No candidates are found by their text."""
    import pandas as pd
    import torch

    from avere_utils.evaluation.parsing import split_choice
    from avere_utils.pairs.inputs import noise_seed

    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; known: {list(CONDITIONS)}")
    rows: list[dict[str, Any]] = []
    jobs = [(p, c) for p in probes for c in conditions]
    bar = tqdm(total=len(jobs), desc=desc, unit="score")
    with torch.no_grad():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            examples, choices = [], []
            for probe, cond in chunk:
                it = probe.item
                if cond == "text":
                    media = None
                elif cond == "counterfactual":
                    media = load(probe.cf_video, probe.cf_audio)
                else:
                    media = load(it.video, it.audio)
                    if cond == "noise":
                        media = _noise_media(media, probe.modality, noise_seed(seed, it.id))
                examples.append(Example(prompt_for(it), media))
                choices.append(candidates_for(it))
            for (probe, cond), scores in zip(chunk, backend.score_choices_batch(examples, choices)):
                texts = [split_choice(c)[1].strip().lower() for c in probe.item.text["choices"]]
                s = scores.float().tolist()
                rows.append({"id": probe.item.id, "kind": probe.kind, "modality": probe.modality,
                             "cue": probe.cue, "condition": cond,
                             "yes_logodds": s[texts.index("yes")] - s[texts.index("no")]})
            bar.update(len(chunk))
    bar.close()
    return pd.DataFrame(rows)


def sensitivity_summary(scores: pd.DataFrame) -> dict[str, Any]:
    """Per kind and modality (and `all`): n, the Yes-rate per condition, the mean change of the Yes log-odds
    from real to each other condition, and the flip share real -> counterfactual (sign change, percent)."""
    wide = scores.pivot_table(index=["id", "kind", "modality"], columns="condition", values="yes_logodds")
    wide = wide.reset_index()
    out: dict[str, Any] = {}
    groups = [("all", "all", wide)]
    groups += [(k, "all", g) for k, g in wide.groupby("kind")]
    groups += [(k, m, g) for (k, m), g in wide.groupby(["kind", "modality"])]
    for kind, modality, g in groups:
        entry: dict[str, Any] = {"n": int(len(g))}
        for cond in CONDITIONS:
            if cond in g:
                entry[f"yes_rate_{cond}"] = round(100.0 * float((g[cond] > 0).mean()), 2)
                if cond != "real":
                    entry[f"mean_change_{cond}"] = round(float((g[cond] - g["real"]).mean()), 4)
        if "counterfactual" in g:
            entry["flip_share"] = round(100.0 * float(((g["real"] > 0) != (g["counterfactual"] > 0)).mean()), 2)
        out.setdefault(kind, {})[modality] = entry
    return out


def flip_share(summary: dict[str, Any], kinds: Sequence[str] = ("relevant", "hallucination")) -> float:
    """The share of answers that flip real -> counterfactual over the kinds whose right answer flips."""
    n = sum(summary.get(k, {}).get("all", {}).get("n", 0) for k in kinds)
    if not n:
        return float("nan")
    return float(np.sum([summary[k]["all"]["flip_share"] * summary[k]["all"]["n"] for k in kinds if k in summary]) / n)


def _real_scores(predictions: Path, probes: Sequence[StressProbe]) -> dict[str, float]:
    """{item id: Yes log-odds} from a predictions file's scoring-mode `scores`, when every probe has them."""
    from avere_utils.evaluation.parsing import split_choice
    from avere_utils.evaluation.score_cli import read_predictions

    if not Path(predictions).is_file():
        return {}
    records = read_predictions(Path(predictions))
    out = {}
    for p in probes:
        scores = (records.get(p.item.id) or {}).get("scores")
        if not isinstance(scores, list):
            return {}
        texts = [split_choice(c)[1].strip().lower() for c in p.item.text["choices"]]
        out[p.item.id] = float(scores[texts.index("yes")]) - float(scores[texts.index("no")])
    return out


def measure(params: Any, backend: Backend, benchmarks: Sequence[str] | None = None,
            conditions: Sequence[str] = CONDITIONS) -> dict[str, Any]:
    """Notebook 07: media sensitivity of `params.variant` on the stress items of each benchmark manifest
    present (`params.media_sensitivity` unless `benchmarks` is given); writes
    `metrics/media_sensitivity-<variant>.json` (summaries) and `predictions/media_sensitivity-<variant>.jsonl`
    (one line per item and condition) and returns the summary."""
    import pandas as pd

    from avere_utils.cache import FeatureCache
    from avere_utils.evaluation import common
    from avere_utils.evaluation.emorealm import build_prompt, candidate_answers
    from avere_utils.media import load_media
    from avere_utils.paths import RunLayout, atomic_write_text

    settings = common.media_settings(params, backend)
    decoded = FeatureCache(params.cache_dir) if params.cache_dir else None  # the real clips: decoded by the stage
    cache: dict[tuple[str, str], Media] = {}

    def load(video: str, audio: str) -> Media:
        if (video, audio) not in cache:  # one Media object per clip: its four conditions share one encoding
            cache[(video, audio)] = load_media(video or None, audio or None, settings, decoded)
        return cache[(video, audio)]

    out: dict[str, Any] = {"variant": params.variant, "conditions": list(conditions), "benchmarks": {}}
    frames = []
    for bench in params.media_sensitivity if benchmarks is None else benchmarks:
        if not (Path(params.manifest_dir) / f"{bench}.jsonl").is_file():
            continue
        probes, skipped = build_probes(common.load_items(params, bench), params.data_root)
        # the real media's scores are the stage's own scoring-mode predictions when it wrote them
        real = _real_scores(common.predictions_file(params, bench), probes) if "real" in conditions else {}
        df = score_conditions(backend, probes, load, prompt_for=lambda it: build_prompt(it, params.prompt_template),
                              candidates_for=lambda it: candidate_answers(it, params.choice_answer_template),
                              conditions=[c for c in conditions if not (c == "real" and real)],
                              batch_size=params.batch_size, seed=params.seed,
                              desc=f"media sensitivity {bench}-{params.variant}")
        if real:
            df = pd.concat([df, pd.DataFrame([{"id": p.item.id, "kind": p.kind, "modality": p.modality, "cue": p.cue,
                                               "condition": "real", "yes_logodds": real[p.item.id]} for p in probes])],
                           ignore_index=True)
        summary = sensitivity_summary(df)
        out["benchmarks"][bench] = {"n_items": len(probes), "skipped": skipped, "by_kind": summary,
                                    "flip_share_rel_hal": round(flip_share(summary), 2)}
        frames.append(df.assign(benchmark=bench))
        cache.clear()
    layout = RunLayout(params.run_dir)
    if frames:
        rows = pd.concat(frames).to_dict(orient="records")
        atomic_write_text(layout.predictions_file("media_sensitivity", params.variant),
                          "".join(f"{json.dumps(r)}\n" for r in rows))
    common.write_metrics(params, "media_sensitivity", out)
    return out


def summary_frame(result: dict[str, Any]) -> pd.DataFrame:
    """One row per (set, kind, modality): n, Yes-rates per condition, flip share (notebook 07's table)."""
    import pandas as pd

    rows = []
    for bench, entry in (result.get("benchmarks") or {}).items():
        for kind, by_mod in entry["by_kind"].items():
            for modality, e in by_mod.items():
                rows.append({"set": bench, "kind": kind, "modality": modality, "n": e["n"],
                             **{f"Yes {c}": e.get(f"yes_rate_{c}") for c in CONDITIONS},
                             "flip real->cf": e.get("flip_share")})
    return pd.DataFrame(rows).set_index(["set", "kind", "modality"]) if rows else pd.DataFrame()
