"""Supervised warm start of the tiny reference model on the synthetic training source.

Three tasks per training clip, all as (user prompt about the clip, assistant answer):

* label: the classification prompt -> the one-word emotion label ("happiness");
* description: the EMER prompt -> the clip's *noisy* source description (`captions.description`), which
  carries the training source's spurious context and text prior: that is what the reference absorbs;
* qa: each EmoReAlM-style item -> question + " " + lettered choices, answered with the correct choice's
  text then its letter (`protocol.ANSWER_TEMPLATE`), e.g. "No (B)" or "furrowed brows (C)";
* presence: "Does the video show a broad smile? (A) Yes (B) No" about a typical cue of the shown emotion,
  present or absent (from the clip's cue record), answered from what the clip shows: the perception
  the paper's method needs, taught apart from the reasoning questions (the captions' text prior stays);
* grounded: "Which facial cues of the emotion does the video show?" (and the audio's) -> exactly the
  present typical cues, e.g. "A broad smile and crinkled eyes." (both modalities, every epoch);
* mcq: a fresh 4-option "which cue explains the emotion?" question per modality and epoch, drawn from the
  clip's cue record with new distractors and a new order each time: answering with the choice's text and
  then its letter means finding the written text among the choices and copying the letter before it, a
  lookup a 3-layer model learns only from many orders (the source's one fixed MCQ per clip left it at
  chance: it wrote a cue it perceived, then "(D)" whatever the choices);
* letters: text-only lookups, "Which choice reads a broad smile? (A) ... (D) ..." -> "a broad smile (C)"
  (`synth.text.letter_item`, fresh per clip and epoch, no media): the letter copy alone, many times, so
  that the mcq answers' second half does not have to be learnt from the few perception questions.

The loss is the token-level mean negative log-likelihood of the responses (`SFTConfig.loss_normalization`),
computed through `Backend.sequence_logprobs`.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from avere_utils.config import default_of
from avere_utils.emotions import AUDIO_CONTEXT, EMOTIONS, VISUAL_CONTEXT, all_cue_phrases, cue_kind
from avere_utils.models.params import SFT_TASKS, ReferenceParams
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT, choice_answer, qa_prompt
from avere_utils.records import Example, Item, Media
from avere_utils.synth.text import grounded_items, letter_item, mcq_item, presence_questions

log = logging.getLogger(__name__)


def fresh_mcqs(item_id: str, record: dict[str, Any], epoch: int) -> list[dict[str, Any]]:
    """One 4-option cue question per modality for this clip and epoch (`synth.text.mcq_item`), seeded by the
    clip id and the epoch: the same on every run and SFT worker, different from one epoch to the next."""
    rng = np.random.default_rng([zlib.crc32(item_id.encode()), epoch])
    return [q for q in (mcq_item(record, m, rng) for m in ("visual", "audio")) if q is not None]


def fresh_letter_items(item_id: str, epoch: int, n: int) -> list[dict[str, Any]]:
    """`n` text-only letter lookups for this clip's slot and epoch, seeded like `fresh_mcqs`."""
    rng = np.random.default_rng([zlib.crc32(item_id.encode()), epoch, 1])
    return [letter_item(rng) for _ in range(n)]


def qa_answer(qa: dict[str, Any]) -> str:
    """The answer taught in SFT: the correct choice in the protocol's answer form, e.g. "No (B)"."""
    idx = ord(str(qa["answer"]).strip().upper()[:1]) - ord("A")
    if not 0 <= idx < len(qa["choices"]):
        raise ValueError(f"qa answer {qa['answer']!r} is not a letter of its {len(qa['choices'])} choices")
    return choice_answer(qa["choices"][idx])


@dataclass
class SFTRecord:
    item_id: str
    task: str
    prompt: str
    response: str
    group: str = ""  # records of one group share a batch (and the clip's encoding); default: the item id
    text_only: bool = False  # no media in the prompt (the `letters` task): the clip is not shown


def balanced_presence(questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A clip's cue-presence questions with, per modality, the questions of the minority answer repeated (in
    turn) until Yes and No are as many.  A clip renders two of three parts on average, so its questions are
    two thirds Yes; balanced, "always Yes" is no longer half right, and a model must tell absent cues apart."""
    out: list[dict[str, Any]] = []
    for modality in ("visual", "audio"):
        qs = [q for q in questions if q["modality"] == modality]
        yes, no = [q for q in qs if q["present"]], [q for q in qs if not q["present"]]
        out += qs
        if yes and no:
            minority, n = (no, len(yes) - len(no)) if len(yes) >= len(no) else (yes, len(no) - len(yes))
            out += [minority[i % len(minority)] for i in range(n)]
    return out


def rotate(pool: Sequence[Any], pos: int, epoch: int, per_clip: int) -> list[Any]:
    """`per_clip` items of a clip's pool for this epoch (0: all), the window moving by `per_clip` each
    epoch and starting at the clip's position, so that every item is taught equally often over the clips."""
    if not per_clip or not pool:
        return list(pool)
    return [pool[(pos + epoch * per_clip + j) % len(pool)] for j in range(min(per_clip, len(pool)))]


def sft_records(items: Sequence[Item], tasks: Sequence[str] = SFT_TASKS, *, epoch: int = 0,
                qa_per_clip: int = 0, label_repeats: int = 1, presence_per_clip: int = 0,
                letters_per_clip: int = 0, presence_balance: bool = False,
                contrasts: Mapping[str, Sequence[Any]] | None = None, counterfactual_per_clip: int = 0
                ) -> list[SFTRecord]:
    """The SFT examples of the training items for one epoch, in item order.

    qa_per_clip > 0 takes that many of a clip's qa items per epoch, rotating through them across epochs
    (so that the one-word labels and descriptions are not outnumbered); 0 takes them all.  The rotation
    starts at the clip's position in `items`, so every task is taught equally often over the clips: a
    rotation from item 0 for every clip taught only the first tasks (with 1 per clip and 2 epochs, the two
    MCQ tasks and never a Yes/No question).  label_repeats
    > 1 adds the label example that many times, each copy in its own batch group: the label is the most
    direct perception signal, and without the repeats a tiny model settles on the spurious background
    before it learns the faces and voices.  presence_per_clip (0: all of them) cue-presence questions per
    clip and epoch rotate like the qa items, over the clip's typical cues of both modalities
    (`synth.text.presence_questions`).  letters_per_clip text-only letter lookups ride in each clip's
    batch group.  counterfactual_per_clip (0: all) of a clip's stress contrasts (`synth.contrasts`, given as
    `contrasts` {item id: [StressContrast]}) rotate like the qa items; each gives two records in the clip's
    batch group, the question on the clip and on its counterfactual, each with the annotator's answer.  Items
    lacking a field a task needs are counted and skipped."""
    unknown = [t for t in tasks if t not in SFT_TASKS]
    if unknown:
        raise ValueError(f"unknown SFT task(s) {unknown}; tasks are {SFT_TASKS}")
    out: list[SFTRecord] = []
    skipped: dict[str, int] = {t: 0 for t in tasks}
    for pos, it in enumerate(items):
        captions = (it.text or {}).get("captions") or {}
        if "label" in tasks:
            if it.label:
                out.extend(SFTRecord(it.id, "label", CLASSIFICATION_PROMPT, it.label, group=f"{it.id}#{k}" if k else "")
                           for k in range(label_repeats))
            else:
                skipped["label"] += 1
        if "description" in tasks:
            if captions.get("description"):
                out.append(SFTRecord(it.id, "description", EMER_PROMPT, captions["description"]))
            else:
                skipped["description"] += 1
        if "qa" in tasks:
            qas = (it.text or {}).get("qa") or []
            if not qas:
                skipped["qa"] += 1
            out.extend(SFTRecord(it.id, "qa", qa_prompt(qa), qa_answer(qa)) for qa in rotate(qas, pos, epoch, qa_per_clip))
        if "presence" in tasks:
            record = (it.text or {}).get("cues")
            if not record:
                skipped["presence"] += 1
            pool = (balanced_presence if presence_balance else list)(presence_questions(record)) if record else []
            qs = rotate(pool, pos, epoch, presence_per_clip)
            out.extend(SFTRecord(it.id, "presence", qa_prompt(q), qa_answer(q)) for q in qs)
        if "grounded" in tasks:
            record = (it.text or {}).get("cues")
            if not record:
                skipped["grounded"] += 1
            out.extend(SFTRecord(it.id, "grounded", g["prompt"], g["answer"]) for g in (grounded_items(record) if record else []))
        if "mcq" in tasks:
            record = (it.text or {}).get("cues")
            if not record:
                skipped["mcq"] += 1
            qs = fresh_mcqs(it.id, record, epoch) if record else []
            out.extend(SFTRecord(it.id, "mcq", qa_prompt(q), qa_answer(q)) for q in qs)
        if "counterfactual" in tasks:
            pool = (contrasts or {}).get(it.id) or []
            if not pool:
                skipped["counterfactual"] += 1
            for c in rotate(pool, pos, epoch, counterfactual_per_clip):
                prompt = qa_prompt(c.qa)
                real = qa_answer({**c.qa, "answer": c.answer}) if c.answer else qa_answer(c.qa)
                out += [SFTRecord(it.id, "counterfactual", prompt, real, group=it.id),
                        SFTRecord(c.cf_id, "counterfactual", prompt, qa_answer({**c.qa, "answer": c.cf_answer}),
                                  group=it.id)]
        if "letters" in tasks:
            out.extend(SFTRecord(it.id, "letters", qa_prompt(q), qa_answer(q), text_only=True)
                       for q in fresh_letter_items(it.id, epoch, letters_per_clip))
    if any(skipped.values()):
        log.warning("SFT: items skipped per task for a missing field: %s", skipped)
    return out


def clip_grouped_batches(records: Sequence[SFTRecord], batch_size: int, rng: np.random.Generator
                         ) -> list[list[SFTRecord]]:
    """Batches of consecutive records after shuffling the clips: a clip's records mostly share a batch,
    so its audio and video are encoded once for all of them."""
    by_clip: dict[str, list[SFTRecord]] = {}
    for r in records:
        by_clip.setdefault(r.group or r.item_id, []).append(r)
    clips = list(by_clip)
    flat = [r for i in rng.permutation(len(clips)) for r in by_clip[clips[i]]]
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]


def tokenizer_corpus(manifest_files: Iterable[str | Path], pairs_dir: str | Path | None = None) -> list[str]:
    """Every text the tiny model will read or write: manifests' text fields, pair texts if present, the
    evaluation prompts and the emotion lexicon."""
    from avere_utils.synth.text import (
        ADJECTIVE,  # adjectives used by the captions
        GROUNDED_PROMPTS,
        PRESENCE_TEMPLATES,
    )

    texts: list[str] = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS, *ADJECTIVE.values(), *all_cue_phrases(),
                        *[c for v in VISUAL_CONTEXT.values() for c in v], *[c for v in AUDIO_CONTEXT.values() for c in v]]
    texts += [t.format(cue=c) for m, ts in PRESENCE_TEMPLATES.items() for t in ts
              for c in all_cue_phrases() if cue_kind(c)[0] == m and cue_kind(c)[1] != "context"]
    texts += list(GROUNDED_PROMPTS.values())

    def walk(x: Any) -> None:
        if isinstance(x, str):
            texts.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    for path in manifest_files:
        with open(path) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    walk(d.get("text"))
                    if d.get("label"):
                        texts.append(d["label"])
    if pairs_dir is not None and Path(pairs_dir).is_dir():
        try:
            from datasets import load_from_disk

            loaded = load_from_disk(str(pairs_dir))
            splits = list(loaded.values()) if hasattr(loaded, "values") else [loaded]  # DatasetDict or Dataset
            for ds in splits:
                for col in ("prompt", "chosen", "rejected_vr", "rejected_er"):
                    if col in ds.column_names:
                        texts.extend(str(t) for t in ds[col])
        except (FileNotFoundError, ValueError) as e:
            log.info("no preference pairs read from %s (%s); tokenizer corpus without them", pairs_dir, e)
    return texts


def _stage(name: str) -> Any:
    """The default of ReferenceParams' `name`: the stage parameter is the one place it is defined."""
    return default_of(ReferenceParams, name)


@dataclass
class SFTConfig:
    epochs: int = _stage("sft_epochs")
    batch_size: int = _stage("sft_batch_size")
    lr: float = _stage("sft_lr")
    weight_decay: float = _stage("sft_weight_decay")
    warmup_ratio: float = _stage("sft_warmup_ratio")
    grad_clip: float = 1.0  # the gradients' norm bound; 0: no clipping (as the DPO's max_grad_norm)
    max_steps: int = _stage("sft_max_steps")  # 0: every planned step; > 0 a step bound; never a time cap
    seed: int = _stage("seed")
    # "token": mean NLL over all response tokens of the batch (standard SFT; every token counts the same, so
    # the first token of a long description, which tells the two prompts apart, is not drowned);
    # "example": mean over examples of each response's mean token NLL (short labels weigh as much as
    # long descriptions)
    loss_normalization: str = "token"
    # weight of the auxiliary perception loss on the encoders (models/perception.py); 0 = off.  Needs the
    # items' cue records (synthetic world); items without one add nothing.
    perception_weight: float = _stage("sft_perception_weight")
    # a batch runs as this many forwards of similar-length examples (sorted by characters): the same
    # examples and the same loss with less padding (a quarter of a main-SFT batch's tokens were padding)
    length_groups: int = _stage("sft_length_groups")
    # the examples about one clip run their common first tokens (system turn, media block: two thirds of a
    # row) once per forward (OmniBackend.sequence_logprobs(clip_prefix=True)); the batch's forwards are then
    # `length_groups` parts of whole clips of about equal size (`clip_parts`) instead of length-sorted ones.
    # Same loss and gradients up to float summation order ("SFT cost", docs/models.md)
    clip_prefix: bool = True


def length_parts(examples: Sequence[Example], groups: int) -> list[list[int]]:
    """The examples' indexes in `groups` parts of similar length (sorted by characters, split by count);
    groups <= 1 is one part in the examples' order."""
    if groups <= 1:
        return [list(range(len(examples)))]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt) + len(examples[i].response or ""))
    return [p for p in (order[k * len(order) // groups:(k + 1) * len(order) // groups] for k in range(groups)) if p]


def clip_parts(examples: Sequence[Example], keys: Sequence[Any], groups: int) -> list[list[int]]:
    """The examples' indexes in `groups` parts of about equal size (characters of prompt and response, the
    part of a row a clip's examples do not share), each a run of whole clips (`keys`, e.g. the item ids;
    `shared_prefix.balanced_chunks`: at most groups - 1 clips are cut between two parts)."""
    from avere_utils.models.shared_prefix import balanced_chunks

    costs = [len(ex.prompt) + len(ex.response or "") for ex in examples]
    return balanced_chunks(keys, costs, groups)


def grouped_logprobs(backend: Any, examples: Sequence[Example], parts: Sequence[Sequence[int]],
                     sink: list | None = None, *, clip_prefix: bool = False
                     ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """backend.sequence_logprobs(..., grad=True) with one forward per part; returns the indexes the parts
    cover, in increasing order, and their log-probs and token counts in that order.  sink (a list)
    receives their encoder outputs, in the same order, when the backend can hand them over
    (OmniBackend's encoder_sink); otherwise it stays empty.  clip_prefix: passed on where the backend
    takes it (a clip's examples share their common first tokens' pass)."""
    pass_sink = sink is not None and _takes_sink(backend)
    extra = {"clip_prefix": True} if clip_prefix and _takes(backend, "clip_prefix") else {}
    got: dict[int, tuple[Any, Any, Any]] = {}
    for part in parts:
        kw: dict[str, Any] = {"encoder_sink": [], **extra} if pass_sink else dict(extra)
        lp, n = backend.sequence_logprobs([examples[i] for i in part], grad=True, **kw)
        for j, i in enumerate(part):
            got[i] = (lp[j], n[j], kw["encoder_sink"][j] if pass_sink else None)
    idx = sorted(got)
    if not idx:  # an SFT worker whose share of a short last batch is empty
        return [], torch.zeros(0), torch.zeros(0, dtype=torch.long)
    if pass_sink:
        sink.extend(got[i][2] for i in idx)
    return idx, torch.stack([got[i][0] for i in idx]), torch.stack([got[i][1] for i in idx])


def length_grouped_logprobs(backend: Any, examples: Sequence[Example], groups: int, sink: list | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """backend.sequence_logprobs(examples, grad=True) run as `groups` forwards of similar-length examples
    (`length_parts`), returned in the examples' order (see `grouped_logprobs` for sink)."""
    _, logp, n = grouped_logprobs(backend, examples, length_parts(examples, groups), sink)
    return logp, n


def _takes_sink(backend: Any) -> bool:
    return _takes(backend, "encoder_sink")


def _takes(backend: Any, name: str) -> bool:
    import inspect

    return name in inspect.signature(backend.sequence_logprobs).parameters


def perception_step_loss(backend: Any, head: torch.nn.Module, batch: Sequence[SFTRecord],
                         media_of: Callable[[str], Media], targets: dict[str, Any],
                         encoded: Sequence[tuple[Any, Any]] | None = None, *, mine: Sequence[int] | None = None
                         ) -> tuple[torch.Tensor | None, int]:
    """The auxiliary perception loss of a batch: (sum over the distinct clips that have targets, their
    number).  A clip is encoded where its first record of the batch is; `mine` (the batch indexes this SFT
    worker runs, increasing; default all) keeps the clips whose first record is among them, and `encoded`
    holds those records' encoder outputs in that order (from the language-model forward, so the encoders
    run once); without it the encoders run here.  Sum / number over every worker is the batch's mean."""
    from avere_utils.models.perception import encoder_outputs, perception_loss

    first: dict[str, int] = {}
    for i, r in enumerate(batch):
        if r.item_id in targets and not r.text_only:
            first.setdefault(r.item_id, i)
    mine = list(range(len(batch))) if mine is None else list(mine)
    at = {i: j for j, i in enumerate(mine)}
    ids = [cid for cid, i in first.items() if i in at]
    if not ids:
        return None, len(first)
    if encoded:
        outs = [encoded[at[first[cid]]] for cid in ids]
    else:
        outs = encoder_outputs(backend, [media_of(cid) for cid in ids])
    return torch.stack([perception_loss(head(v, a), targets[cid]) for cid, (v, a) in zip(ids, outs)]).sum(), len(first)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def planned_epochs(items: Sequence[Item], tasks: Sequence[str], cfg: SFTConfig, rng: np.random.Generator,
                   **record_kw: Any) -> list[list[list[SFTRecord]]]:
    """The batches of every epoch.  epochs == 0 means "as many epochs as max_steps needs" (a phase bounded
    by steps, e.g. the presence phase)."""
    n_epochs = cfg.epochs
    if n_epochs == 0:
        if cfg.max_steps <= 0:
            raise ValueError("SFTConfig: epochs 0 needs max_steps > 0 (a phase bounded by steps)")
        per_epoch = math.ceil(len(sft_records(items, tasks, epoch=0, **record_kw)) / cfg.batch_size)
        n_epochs = math.ceil(cfg.max_steps / max(per_epoch, 1))
    return [clip_grouped_batches(sft_records(items, tasks, epoch=e, **record_kw), cfg.batch_size, rng)
            for e in range(n_epochs)]


def run_sft(backend: Any, items: Sequence[Item], media_of: Callable[[str], Media], cfg: SFTConfig,
            log_file: str | Path | None, *, tasks: Sequence[str] = SFT_TASKS, qa_per_clip: int = 0,
            label_repeats: int = 1, presence_per_clip: int = 0, letters_per_clip: int = 0, phase: str = "sft",
            after: Sequence[dict[str, Any]] = (), shard: Any = None, presence_balance: bool = False,
            contrasts: Mapping[str, Sequence[Any]] | None = None, counterfactual_per_clip: int = 0
            ) -> list[dict[str, Any]]:
    """Train all of `backend.trainable_parameters()` on the items' SFT records; one JSON line per step.

    `phase` names the records of this call in the log; `after` (the history of an earlier phase) makes this
    one continue its log file, step count and clock.  `shard` (models/sft_workers.Shard): this process's
    share of every batch when several SFT workers train together; each worker plans the same batches,
    runs its length groups, and the losses and gradients are summed over the workers.  Only worker 0
    writes the log (log_file None: no log) and shows the bar.  The steps run through the kit's one
    training skeleton (`training.loop.TrainingLoop`)."""
    from avere_utils.models.sft_workers import Shard
    from avere_utils.numerics import adamw  # without MKL VML's sqrt (rsqrtps-based, CPU-dependent low bits)
    from avere_utils.training.loop import TrainingLoop
    from avere_utils.training.step_log import StepLogger

    shard = shard or Shard()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    record_kw = {"qa_per_clip": qa_per_clip, "label_repeats": label_repeats, "presence_per_clip": presence_per_clip,
                 "letters_per_clip": letters_per_clip, **({"presence_balance": True} if presence_balance else {}),
                 **({"contrasts": contrasts, "counterfactual_per_clip": counterfactual_per_clip}
                    if "counterfactual" in tasks else {})}
    epochs = planned_epochs(items, tasks, cfg, rng, **record_kw)
    total = _step_total(epochs, cfg)
    params = [p for p in backend.trainable_parameters()]
    head, targets = _perception_head(backend, items, media_of, cfg)  # after the seed: its init draws from it
    if head is not None:
        params = params + list(head.parameters())
    opt = adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup_ratio * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(step, total, warmup))  # cfg.lr * factor
    steps = _SFTSteps(backend, media_of, cfg, shard, head, targets, phase, after)
    writes = shard.is_main and log_file is not None
    backend.model.train()
    # A bar redraw is one Jupyter output message, and nbval reads a cell's messages only after the cell
    # ends: with a redraw per step (1,720 SFT steps) notebook 03 once failed under nbval waiting for its
    # output after the cell had finished.  So: at most one redraw every 5 s.
    with (contextlib.closing(StepLogger(log_file, keep_until_step=after[-1]["step"] if after else None))
          if writes else contextlib.nullcontext()) as logger, \
            tqdm(total=total, desc=phase, unit="step", mininterval=5, disable=not shard.is_main) as bar:
        if logger is not None:
            logger.log({"event": "config", "phase": phase, **asdict(cfg), "tasks": list(tasks),
                        **{k: v for k, v in record_kw.items() if k not in ("presence_balance", "contrasts")},
                        "n_items": len(items), "steps_planned": total, "sft_workers": shard.world})
        loop = TrainingLoop(params, opt, schedule, losses=steps.losses, combine_gradients=shard.sum_grads_,
                            record=steps.record, write=functools.partial(_write_step, logger, bar),
                            max_grad_norm=cfg.grad_clip, backward=_backward_unless_empty)
        history = loop.run(_numbered_batches(epochs, total))
    backend.model.eval()
    shard.check_same(params, f"SFT phase {phase!r}")
    log.info("SFT: %d steps in %.1f s, final loss %.3f", len(history), time.perf_counter() - steps.start,
             history[-1]["loss"])
    return history


class _SFTSteps:
    """The SFT's parts of a training step: the batch's loss (this worker's share) and the step's record."""

    def __init__(self, backend: Any, media_of: Callable[[str], Media], cfg: SFTConfig, shard: Any,
                 head: torch.nn.Module | None, targets: dict[str, Any], phase: str, after: Sequence[dict[str, Any]]):
        self.backend, self.media_of, self.cfg, self.shard = backend, media_of, cfg, shard
        self.head, self.targets, self.phase = head, targets, phase
        self.groups = max(cfg.length_groups, shard.world)  # every worker needs a group of each batch
        self.step_offset, self.seconds_offset = (len(after), after[-1]["seconds"]) if after else (0, 0.0)
        self.start = time.perf_counter()

    def losses(self, step: tuple[int, tuple[int, list[SFTRecord]]]) -> Iterable[tuple[torch.Tensor, tuple]]:
        """The batch's loss (one, this worker's share), with what its record needs."""
        _, (_, batch) = step
        out = _batch_loss(self.backend, batch, self.media_of, self.cfg, self.groups, self.shard, self.head,
                          self.targets)
        yield out[0], out

    def record(self, done: Any) -> dict[str, Any]:
        """The step's log record (`training.loop.StepResult` done), its statistics summed over the workers."""
        step, (epoch, batch) = done.step
        loss, nll, mine, aux, n_clips = done.outputs[0]
        summed, per_task = _step_stats(loss, aux, n_clips if self.head is not None else 0, nll, mine, batch, self.shard)
        return {"step": self.step_offset + step, "phase": self.phase, "epoch": epoch, "loss": summed,
                "lr": done.lr, "grad_norm": done.grad_norm,
                "seconds": self.seconds_offset + time.perf_counter() - self.start, **per_task}


def _numbered_batches(epochs: Sequence[Sequence[list[SFTRecord]]], total: int
                      ) -> Iterator[tuple[int, tuple[int, list[SFTRecord]]]]:
    """(step, (epoch, batch)) for the first `total` batches of the planned epochs: the SFT's steps."""
    return itertools.islice(enumerate((e, b) for e, batches in enumerate(epochs) for b in batches), total)


def _backward_unless_empty(loss: torch.Tensor) -> None:
    if loss.requires_grad:  # else this worker's share was empty: it adds zero gradients
        loss.backward()


def _write_step(logger: Any, bar: tqdm, record: dict[str, Any]) -> None:
    """A step's record to the log (worker 0, when there is one) and the bar."""
    if logger is not None:
        logger.log(record)
    bar.update(1)
    bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)


def _step_total(epochs: Sequence[Sequence[Any]], cfg: SFTConfig) -> int:
    """The steps to run: every planned batch, at most max_steps."""
    total = sum(len(b) for b in epochs)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    if total == 0:
        raise ValueError("run_sft: no SFT records")
    if cfg.loss_normalization not in ("token", "example"):
        raise ValueError(f"loss_normalization must be 'token' or 'example', got {cfg.loss_normalization!r}")
    return total


def _perception_head(backend: Any, items: Sequence[Item], media_of: Callable[[str], Media], cfg: SFTConfig
                     ) -> tuple[torch.nn.Module | None, dict[str, Any]]:
    """The auxiliary perception head and each item's targets (None, {} when perception_weight is 0)."""
    if cfg.perception_weight <= 0:
        return None, {}
    from avere_utils.models.perception import PerceptionHead, perception_targets, video_positions

    targets = {it.id: perception_targets(it.text["cues"]) for it in items if (it.text or {}).get("cues")}
    if not targets:
        raise ValueError("run_sft: perception_weight > 0 but no item has a cue record")
    first = next(iter(targets))
    hidden = backend.thinker.config.get_text_config().hidden_size
    head = PerceptionHead(hidden, video_positions(backend, media_of(first))).to(backend.device)
    return head, targets


def _batch_loss(backend: Any, batch: Sequence[SFTRecord], media_of: Callable[[str], Media], cfg: SFTConfig,
                groups: int, shard: Any, head: torch.nn.Module | None, targets: dict[str, Any]) -> tuple[Any, ...]:
    """This worker's share of a batch's loss (normalised by the whole batch's tokens or examples, over every
    worker), with its examples' NLLs, their batch indexes, the perception sum and its clip count."""
    examples = [Example(r.prompt, None if r.text_only else media_of(r.item_id), r.response) for r in batch]
    encoded: list | None = [] if head is not None else None
    if cfg.clip_prefix:
        parts = clip_parts(examples, [("", i) if r.text_only else (r.item_id,) for i, r in enumerate(batch)], groups)
    else:
        parts = length_parts(examples, groups)
    mine, logp, n = grouped_logprobs(backend, examples, shard.mine(parts), encoded, clip_prefix=cfg.clip_prefix)
    aux, n_clips = (None, 0) if head is None else perception_step_loss(
        backend, head, batch, media_of, targets, encoded, mine=mine)
    # the batch's normalisers come from every worker: tokens, examples, clips with targets
    counts = shard.sum_(torch.tensor([float(n.sum()), float(len(mine))], dtype=torch.float64))
    nll = -logp / n.clamp(min=1)
    if cfg.loss_normalization == "token":
        loss = -logp.sum() / counts[0].clamp(min=1).to(logp.dtype)
    else:
        loss = nll.sum() / counts[1].clamp(min=1).to(logp.dtype)
    if aux is not None:
        loss = loss + cfg.perception_weight * aux / max(n_clips, 1)
    return loss, nll, mine, aux, n_clips


def _step_stats(loss: torch.Tensor, aux: torch.Tensor | None, n_clips: int, nll: torch.Tensor, mine: Sequence[int],
                batch: Sequence[SFTRecord], shard: Any) -> tuple[float, dict[str, float]]:
    """What the log records of a step, summed over the workers: the loss, and the perception loss per clip
    (when n_clips, the batch's clips with targets, is not 0) and per task the mean example NLL."""
    n_tasks = len(SFT_TASKS)
    stats = torch.zeros(2 + 2 * n_tasks, dtype=torch.float64)
    stats[0] = float(loss.detach())
    stats[1] = float(aux.detach()) if aux is not None else 0.0
    nll = nll.detach()
    for t, task in enumerate(SFT_TASKS):
        sel = [j for j, i in enumerate(mine) if batch[i].task == task]
        stats[2 + t], stats[2 + n_tasks + t] = float(nll[sel].sum()) if sel else 0.0, len(sel)
    shard.sum_(stats)
    rec = {}
    if n_clips:
        rec["loss_perception"] = float(stats[1]) / n_clips
    for t, task in enumerate(SFT_TASKS):
        if stats[2 + n_tasks + t] > 0:
            rec[f"loss_{task}"] = float(stats[2 + t] / stats[2 + n_tasks + t])
    return float(stats[0]), rec
