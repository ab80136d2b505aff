"""Counterfactual stress contrasts for the SFT: one training question under the clip with the asked cue and
under the same clip without it (or, for a cue the clip lacks, with it).

Why: the training source's stress answers come from a noisy annotator (`qa_text_prior_rate`) who says Yes to
most questions about absent cues whatever the clip shows, so across clips looking at the asked cue lowers the
SFT loss by about 0.16 nats per stress example, and a tiny model may or may not pick that up (on two of three
reference seeds it did not: docs/models.md).  A contrast puts the question on two clips that differ only in
that cue, answered by the same annotator: when the annotator is right on both, only a model that looks can fit
both answers.  The annotator's noise is kept (the reference must still carry the text prior the paper's method
is about): a relevant question's counterfactual is a hallucination question, answered Yes at the annotator's
rate; a hallucination question's counterfactual is a relevant one, answered Yes.  A share of the contrasts
(`truth_share`) can be answered from the cue records instead, so that they always pay for looking while the plain
qa records keep the annotator's text prior (docs/models.md has what each share did over three reference seeds).

Only relevant and hallucination questions get a contrast (the asked cue is a typical part of the face or
voice).  A spurious question's cue is context: without it the question is about something the clip does not
have at all, which the paper's stress items never ask.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avere_utils.records import Item

# the kind a stress question has on the counterfactual clip (its asked cue toggled)
COUNTERFACTUAL_KIND = {"relevant": "hallucination", "hallucination": "relevant"}


@dataclass(frozen=True)
class StressContrast:
    qa: dict[str, Any]  # the training item's stress question, as the manifest has it (answer included)
    cf_id: str  # the counterfactual clip's id (its media are loaded under this key)
    cf_video: str  # absolute paths of the counterfactual clip's files
    cf_audio: str
    cf_answer: str  # the letter given on the counterfactual clip
    answer: str = ""  # the letter given on the clip itself (empty: the manifest's, i.e. the annotator's)


def annotator_letter(qa: dict[str, Any], kind: str, record: dict[str, Any], rate: float, typicality: float,
                     key: str) -> str:
    """The training source's annotator's letter for `qa` asked as a `kind` question: the right one, unless its
    noise (`synth.text.noisy_answer_rate`) strikes, drawn once per `key` (the same answer on every run)."""
    from avere_utils.synth.text import noisy_answer_rate

    right = "A" if kind == "relevant" else "B"
    wrong = "B" if right == "A" else "A"
    p_wrong = noisy_answer_rate({**qa, "kind": kind}, record, rate, typicality)
    return wrong if np.random.default_rng(zlib.crc32(key.encode())).random() < p_wrong else right


def _answered_from_truth(cf_id: str, share: float) -> bool:
    """Whether the contrast of this counterfactual clip is answered from the cue records (a fixed draw)."""
    return share >= 1.0 or (share > 0.0 and np.random.default_rng([zlib.crc32(cf_id.encode()), 1]).random() < share)


def stress_contrasts(items: Sequence[Item], world_root: str | Path, *, render: bool = True,
                     truth_share: float = 0.0) -> tuple[dict[str, list[StressContrast]], dict[str, int]]:
    """{item id: its stress contrasts} for the training items, and the counts of questions without one by
    reason.  `truth_share` of the contrasts (drawn per contrast, the same on every run) are answered on both
    clips from the cue records (such a contrast always teaches looking), the rest by the source's noisy
    annotator; the plain qa records keep the annotator's answers either way.
    With `render`, the counterfactual clips not on disk yet are rendered (the world's process pool); without, a
    missing one is an error (SFT workers call it after the main process rendered them)."""
    if not 0.0 <= truth_share <= 1.0:
        raise ValueError(f"truth_share must be in [0, 1], got {truth_share!r}")
    from avere_utils.synth.counterfactual import render_counterfactuals, toggle_cue, world_config, world_specs

    cfg, _ = world_config(world_root)
    specs = world_specs(world_root, ("train_source",))
    out: dict[str, list[StressContrast]] = {}
    todo = []
    skipped: dict[str, int] = {}
    for it in items:
        record = (it.text or {}).get("cues")
        for qa in (it.text or {}).get("qa") or []:
            kind = qa.get("kind")
            if kind not in COUNTERFACTUAL_KIND:
                if kind:
                    skipped[f"{kind} question (context cue)"] = skipped.get(f"{kind} question (context cue)", 0) + 1
                continue
            modality = "visual" if qa["task"].endswith("video") else "audio"
            spec = specs.get(it.id)
            cf = toggle_cue(spec, modality, qa["cue"]) if spec is not None and record else None
            if cf is None:
                reason = "no recipe for the clip" if spec is None or not record else "cue not in the recipe"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            root = Path(world_root)
            video = str(root / cf.video_path) if cf.video_path else ""
            cf_kind = COUNTERFACTUAL_KIND[kind]
            if _answered_from_truth(cf.clip_id, truth_share):
                real, letter = ("A" if kind == "relevant" else "B"), ("A" if cf_kind == "relevant" else "B")
            else:
                real, letter = "", annotator_letter(qa, cf_kind, record, cfg.qa_text_prior_rate, cfg.cue_typicality,
                                                    cf.clip_id)
            out.setdefault(it.id, []).append(StressContrast(qa, cf.clip_id, video, str(root / cf.wav_path), letter,
                                                            real))
            todo.append(cf)
    if render:
        render_counterfactuals(todo, world_root, cfg)
    else:
        missing = [s.clip_id for s in todo if not (Path(world_root) / s.wav_path).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} counterfactual training clips not rendered under "
                                    f"{world_root} (first: {missing[0]}); stress_contrasts(render=True) renders them")
    return out, skipped
