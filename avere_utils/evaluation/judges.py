"""EMER judges: score an open-ended emotion description 1-10 on the paper's four criteria.

* `OpenAIJudge` - any OpenAI-compatible chat endpoint through `avere_utils.llm_client.ChatClient` (key from
  the environment only, checked before the first request; timeouts, retries, a request/reply cache so
  that rescoring is free), one request per item or all of them through the Batch API (`judge_batch`).
  Two protocols: "strict" (the kit's own rubric below, re-asked when unparseable) and "paper" (the
  released protocol: one user message holding the user-supplied prompt with the reference, then the
  prediction; gpt-4o, 400 completion tokens, reply keys cue_overlap / emotion_consistency /
  emotion_cue_association / hallucinated_cues; an unparseable reply is dropped, never re-asked).
* `HFJudge` - a local causal LM from a folder (transformers AutoModelForCausalLM + its chat template).
* `CueJudge` - exact scoring from the synthetic world's cue records (no model): which cited cues are
  present and relevant, present but irrelevant (spurious), or absent (hallucinated).

A failed judgement (no answer, a failed request, an unparseable reply) never enters a mean: each criterion
is averaged over the judged items only and reported with `n_judged` and `n_judge_failed`; with no item
judged the score is None (null in the metrics file), never a number.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from avere_utils.emotions import find_cues
from avere_utils.evaluation.parsing import strict_label
from avere_utils.paths import atomic_write_text
from avere_utils.protocol import EMER_CRITERIA
from avere_utils.records import Item

log = logging.getLogger(__name__)

CRITERIA = EMER_CRITERIA
SCALE_MIN, SCALE_MAX = 1.0, 10.0

RUBRIC_SYSTEM = "You are a careful expert who evaluates explanations of human emotions in videos."
RUBRIC_USER = """\
Compare a model's description of the emotion of a person in a video with a reference description \
written by human annotators. Score the model's description on four criteria, each an integer from 1 \
(worst) to 10 (best):
1. "clue" (cue overlap): how many of the emotional cues in the reference (facial expressions, voice, \
words, gestures) the description also identifies.
2. "label" (emotion-label consistency): how well the emotion the description concludes agrees with the \
emotion of the reference.
3. "spurious" (emotion-cue association), judged on the description alone: 10 when every cue it cites \
plausibly expresses the emotion it claims; low when it ties the emotion to irrelevant cues such as \
clothing, background, objects or ambient sounds.
4. "hallucination" (hallucinated cues): 10 when the description cites no cue that the reference \
contradicts or that is implausible for the clip; low when it invents cues, for example cues that are \
typical of the emotion but not observed.

Reference description:
{reference}

Model description:
{answer}

Reply with only a JSON object, for example {{"clue": 6, "label": 8, "spurious": 7, "hallucination": 5}}."""
RUBRIC_VERSION = "emer-rubric-v1-" + hashlib.sha1((RUBRIC_SYSTEM + RUBRIC_USER).encode()).hexdigest()[:8]
PROTOCOLS = ("strict", "paper")
RETRY_PROMPT = ("Your reply could not be read. Reply with only the JSON object with the integer keys "
                '"clue", "label", "spurious" and "hallucination" (1-10), nothing else.')


@dataclass
class JudgeResult:
    scores: dict[str, float] | None  # None = no usable judgement (counted by the caller)
    attempts: int = 0
    error: str | None = None
    raw: str | None = None
    rates: dict[str, float] | None = None  # cue judge: the raw rates behind the scores


class Judge(Protocol):
    name: str

    def judge(self, item: Item, answer: str | None) -> JudgeResult: ...

    def describe(self) -> dict[str, Any]: ...


def rubric_messages(reference: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": RUBRIC_SYSTEM},
            {"role": "user", "content": RUBRIC_USER.format(reference=reference.strip(), answer=answer.strip())}]


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_judge_reply(text: str | None) -> dict[str, float]:
    """The four scores of a judge reply (JSON, possibly inside prose or a code fence); ValueError when
    the reply has no JSON object, misses a criterion, or a score is not a number in 1-10."""
    if not text:
        raise ValueError("empty judge reply")
    m = _JSON_OBJECT.search(text)
    if not m:
        raise ValueError(f"no JSON object in judge reply {text[:120]!r}")
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError as e:
        raise ValueError(f"judge reply is not valid JSON ({e}): {text[:120]!r}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"judge reply is not a JSON object: {text[:120]!r}")
    out: dict[str, float] = {}
    for key in CRITERIA:
        value = obj.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"judge reply has no numeric {key!r}: {text[:120]!r}")
        if not SCALE_MIN <= value <= SCALE_MAX:
            raise ValueError(f"judge reply {key!r} = {value} is outside 1-10")
        out[key] = float(value)
    return out


class ChatJudge:
    """A rubric judge over any `chat(messages, validate) -> str` function, with re-asks for unparseable replies."""

    name = "chat"

    def __init__(self, chat: Callable[..., str], *, parse_retries: int = 2,
                 version: str = RUBRIC_VERSION, info: dict[str, Any] | None = None,
                 messages: Callable[[str, str], list[dict[str, str]]] | None = None,
                 parse: Callable[[str | None], dict[str, float]] | None = None):
        self.chat = chat
        self.parse_retries = parse_retries
        self.version = version
        self.info = info or {}
        self.messages = messages or rubric_messages
        self.parse = parse or parse_judge_reply
        self.n_failed = 0
        self.n_reasked = 0

    def judge(self, item: Item, answer: str | None) -> JudgeResult:
        reference = (item.text or {}).get("reason")
        if not reference:
            return JudgeResult(None, error=f"item {item.id} has no reference 'reason'")
        if not answer or not answer.strip():
            return JudgeResult(None, error="no answer")
        base = self.messages(reference, answer)
        messages, reply = base, None
        for attempt in range(self.parse_retries + 1):
            try:
                reply = self.chat(messages, self.parse)
            except Exception as e:  # noqa: BLE001 - transport failure after the client's own retries: counted
                self.n_failed += 1
                return JudgeResult(None, attempts=attempt + 1, error=f"request failed: {e}")
            try:
                return JudgeResult(self.parse(reply), attempts=attempt + 1, raw=reply)
            except ValueError as e:
                log.info("judge reply for %s unparseable (%s); attempt %d/%d", item.id, e, attempt + 1,
                         self.parse_retries + 1)
                self.n_reasked += attempt < self.parse_retries
                # A different request (so the cache cannot hand back the same bad reply).
                messages = base + [{"role": "assistant", "content": reply or ""}, {"role": "user", "content": RETRY_PROMPT}]
        self.n_failed += 1
        return JudgeResult(None, attempts=self.parse_retries + 1, error="unparseable reply", raw=reply)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, **self.info,
                "parse_retries": self.parse_retries, "n_failed": self.n_failed, "n_reasked": self.n_reasked}


# --- the released (paper) protocol ----------------------------------------------------------------------
PAPER_MODEL = "gpt-4o"
PAPER_REQUEST = {"max_completion_tokens": 400}
PROMPT_FIELDS = ("{reference}", "{prediction}")


def load_paper_prompt(path: str | Path) -> str:
    """The paper judge's prompt, supplied by the user in a text file (not shipped: it is the authors'
    text).  It must hold `{reference}` then `{prediction}`, where the reference and the prediction go."""
    p = Path(path) if path else None
    if p is None or not p.is_file():
        raise FileNotFoundError(f"judge_prompt_file {str(path)!r} not found: the paper protocol needs the judge "
                                f"prompt as a text file with {PROMPT_FIELDS[0]} and {PROMPT_FIELDS[1]} in it")
    text = p.read_text(encoding="utf-8")
    missing = [f for f in PROMPT_FIELDS if f not in text]
    if missing:
        raise ValueError(f"{p}: judge prompt lacks {' and '.join(missing)} (where the reference and the "
                         f"prediction are inserted)")
    if text.index(PROMPT_FIELDS[0]) > text.index(PROMPT_FIELDS[1]):
        raise ValueError(f"{p}: the judge sees the reference before the prediction; {PROMPT_FIELDS[0]} must come first")
    return text


def paper_messages(prompt: str) -> Callable[[str, str], list[dict[str, str]]]:
    # plain replacement, not str.format: the prompt's own JSON example holds braces
    return lambda reference, answer: [{"role": "user", "content": prompt.replace(
        PROMPT_FIELDS[0], reference).replace(PROMPT_FIELDS[1], answer)}]


def parse_paper_reply(text: str | None) -> dict[str, float]:
    """The released reading of a reply (fence stripped, then JSON), mapped to the kit's criteria; ValueError
    when it is not JSON or a criterion is not a number (the released script drops or trips on those)."""
    from avere_utils.evaluation.released import JUDGE_KEYS, released_parse_reply

    obj = released_parse_reply(text)
    if obj is None:
        raise ValueError(f"judge reply is not a JSON object: {str(text)[:120]!r}")
    out = {}
    for key, name in JUDGE_KEYS.items():
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"judge reply has no numeric {key!r}: {str(text)[:120]!r}")
        out[name] = float(value)
    return out


class OpenAIJudge(ChatJudge):
    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 cache_dir: str | None = None, timeout_s: float = 60.0, max_retries: int = 3,
                 parse_retries: int = 2, request_params: dict[str, Any] | None = None,
                 protocol: str = "strict", prompt_file: str | None = None):
        from avere_utils.llm_client import ChatClient

        if protocol not in PROTOCOLS:
            raise ValueError(f"judge protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if protocol == "paper":
            prompt = load_paper_prompt(prompt_file or "")
            version = "paper-" + hashlib.sha1(prompt.encode()).hexdigest()[:8]
            messages, parse, parse_retries = paper_messages(prompt), parse_paper_reply, 0
            self.request_params = request_params or dict(PAPER_REQUEST)
        else:
            version, messages, parse = RUBRIC_VERSION, rubric_messages, parse_judge_reply
            self.request_params = request_params or {"temperature": 0, "max_tokens": 200}
        self.protocol = protocol
        # The client checks the key now: a missing key fails before the first request, naming the variable.
        self.client = ChatClient(base_url, model, api_key_env=api_key_env, cache_dir=cache_dir,
                                 timeout_s=timeout_s, max_retries=max_retries, namespace=version)
        super().__init__(lambda msgs, validate=None: self.client.chat(msgs, validate=validate, **self.request_params),
                         parse_retries=parse_retries, version=version, messages=messages, parse=parse,
                         info={"model": model, "base_url": base_url, "protocol": protocol,
                               "request_params": self.request_params})

    def batch_requests(self, rows: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """Batch-API request lines for (custom_id, reference, answer) rows."""
        return [{"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                 "body": {"model": self.client.model, "messages": self.messages(ref, ans), **self.request_params}}
                for cid, ref, ans in rows]

    def judge_batch(self, items: Sequence[Item], answers: dict[str, str | None], requests_file: str | Path, *,
                    poll_s: float = 10.0, max_polls: int = 8640) -> list[JudgeResult]:
        """Judge every item through the Batch API; results in the order of `items`, like `judge()`.

        The batch id and the output are kept next to the requests file, so a rerun (or a run killed while
        waiting) resumes the same batch instead of paying for a second one; a changed requests file
        starts a new batch.  A reply that is missing or unparseable is a counted failure (no re-ask)."""
        from avere_utils.evaluation.released import batch_reply_content

        requests_file = Path(requests_file)
        results: dict[str, JudgeResult] = {}
        rows = []
        for it in items:
            ref, ans = (it.text or {}).get("reason"), answers.get(it.id)
            if not ref:
                results[it.id] = JudgeResult(None, error=f"item {it.id} has no reference 'reason'")
            elif not ans or not ans.strip():
                results[it.id] = JudgeResult(None, error="no answer")
            else:
                rows.append((it.id, ref, ans))
        if rows:
            lines = "".join(json.dumps(r) + "\n" for r in self.batch_requests(rows))
            atomic_write_text(requests_file, lines)
            digest = hashlib.sha256(lines.encode()).hexdigest()
            state_file = requests_file.with_suffix(".state.json")
            output_file = requests_file.with_suffix(".output.jsonl")
            state = json.loads(state_file.read_text()) if state_file.is_file() else {}
            if state.get("requests_sha256") != digest:
                state = {"requests_sha256": digest, "batch_id": self.client.submit_batch(requests_file), "done": False}
                atomic_write_text(state_file, json.dumps(state))
            if not (state.get("done") and output_file.is_file()):
                batch = self.client.wait_batch(state["batch_id"], poll_s=poll_s, max_polls=max_polls)
                out_rows = self.client.batch_output(batch)
                atomic_write_text(output_file, "".join(json.dumps(r) + "\n" for r in out_rows))
                atomic_write_text(state_file, json.dumps({**state, "done": True}))
            replies = {}
            for line in output_file.read_text().splitlines():
                row = json.loads(line)
                replies[str(row.get("custom_id"))] = row
            for cid, _, _ in rows:
                row = replies.get(cid)
                content = batch_reply_content(row) if row else None
                if content is None:
                    self.n_failed += 1
                    results[cid] = JudgeResult(None, attempts=1, error="request failed: no batch reply")
                    continue
                try:
                    results[cid] = JudgeResult(self.parse(content), attempts=1, raw=content)
                except ValueError:
                    self.n_failed += 1
                    results[cid] = JudgeResult(None, attempts=1, error="unparseable reply", raw=content)
        return [results[it.id] for it in items]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "client_stats": self.client.stats.as_dict()}


class HFJudge(ChatJudge):
    """A local judge: AutoModelForCausalLM + the tokenizer's chat template, greedy decoding."""

    name = "hf"

    def __init__(self, model_path: str, *, device: str = "auto", max_new_tokens: int = 256, parse_retries: int = 2):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"hf_judge_path {path} is not a model folder")
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{path}: the judge tokenizer has no chat template")
        self.model = AutoModelForCausalLM.from_pretrained(str(path)).to(dev).eval()
        self.max_new_tokens = max_new_tokens
        stamp = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file())
        super().__init__(lambda messages, validate=None: self._chat(messages), parse_retries=parse_retries,
                         info={"model": str(path), "weights": hashlib.sha1(str(stamp).encode()).hexdigest()[:12]})

    def _chat(self, messages: list[dict[str, str]]) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        ids = {k: v.to(self.model.device) for k, v in ids.items()}
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


# --- exact scoring from cue records -------------------------------------------------------------------
def to_scale(rate: float) -> float:
    """[0, 1] -> [1, 10], linearly: 1 + 9 * rate (the documented cue-judge mapping)."""
    return SCALE_MIN + (SCALE_MAX - SCALE_MIN) * rate


def cue_rates(answer: str, cues: dict[str, Any], label: str | None, reference: str | None = None) -> dict[str, float]:
    """The raw rates behind the cue judge, each in [0, 1] (NaN clue when nothing can be recalled).

    clue_recall        = share of the reference's cues (those the reference text cites, else the clip's
                         present relevant cues) that the answer cites;
    label_match        = 1 when the answer's first non-negated emotion word is the item's label;
    spurious_rate      = share of the cited cues that are present in the clip but emotion-irrelevant;
    hallucination_rate = share of the cited cues that the clip does not show at all.
    """
    present = set(cues["visual"]["present"]) | set(cues["audio"]["present"])
    context = set(cues["visual"]["context"]) | set(cues["audio"]["context"])
    cited = find_cues(answer)
    ref = find_cues(reference or "") or sorted(present)
    n = len(cited)
    return {
        "clue_recall": len(set(cited) & set(ref)) / len(ref) if ref else math.nan,
        "label_match": float(label is not None and strict_label(answer) == label),
        "spurious_rate": sum(c in context for c in cited) / n if n else 0.0,
        "hallucination_rate": sum(c not in present and c not in context for c in cited) / n if n else 0.0,
        "n_cited": float(n),
    }


def rates_to_scores(rates: dict[str, float]) -> dict[str, float]:
    """Higher is better for all four, as in the paper: spurious / hallucination use 1 - rate."""
    return {"clue": to_scale(rates["clue_recall"]) if not math.isnan(rates["clue_recall"]) else math.nan,
            "label": to_scale(rates["label_match"]),
            "spurious": to_scale(1 - rates["spurious_rate"]),
            "hallucination": to_scale(1 - rates["hallucination_rate"])}


class CueJudge:
    name = "cue"
    version = "cue-v1: clue=1+9*recall, label=1+9*match, spurious=1+9*(1-rate), hallucination=1+9*(1-rate)"

    def __init__(self) -> None:
        self.n_failed = 0

    def judge(self, item: Item, answer: str | None) -> JudgeResult:
        cues = (item.text or {}).get("cues")
        if not cues:
            self.n_failed += 1
            return JudgeResult(None, error=f"item {item.id} has no cue record (the cue judge needs the synthetic world)")
        if not answer or not answer.strip():
            return JudgeResult(None, error="no answer")
        rates = cue_rates(answer, cues, item.label, (item.text or {}).get("reason"))
        return JudgeResult(rates_to_scores(rates), attempts=1, rates=rates)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "n_failed": self.n_failed}


def write_batch_requests(path: str | Path, rows: Sequence[tuple[str, str, str]], model: str,
                         request_params: dict[str, Any] | None = None) -> Path:
    """OpenAI Batch-API input: one POST /v1/chat/completions per (custom_id, reference, answer)."""
    params = request_params or {"temperature": 0, "max_tokens": 200}
    lines = [json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": model, "messages": rubric_messages(ref, ans), **params}})
             for cid, ref, ans in rows]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return Path(path)


@dataclass
class JudgeSummary:
    """Aggregated judge scores over the judged items only; failures are counted, never averaged."""

    means: dict[str, float | None]  # None when no item was judged (or the criterion is undefined for all)
    n_items: int
    n_judged: int
    n_no_answer: int
    n_failed: int
    errors: dict[str, int] = field(default_factory=dict)
    n_defined: dict[str, int] = field(default_factory=dict)  # judged items with a defined score per criterion


def judge_summary(results: Sequence[JudgeResult]) -> JudgeSummary:
    judged: dict[str, list[float]] = {k: [] for k in CRITERIA}
    errors: dict[str, int] = {}
    for r in results:
        if r.scores is None:
            errors[r.error or "unknown"] = errors.get(r.error or "unknown", 0) + 1
            continue
        for k in CRITERIA:
            v = r.scores[k]
            if not math.isnan(v):  # nothing to recall (cue judge): undefined, not zero
                judged[k].append(v)
    n_no_answer = sum(r.error == "no answer" for r in results)
    n_judged = sum(r.scores is not None for r in results)
    return JudgeSummary(means={k: (sum(v) / len(v) if v else None) for k, v in judged.items()},
                        n_items=len(results), n_judged=n_judged, n_no_answer=n_no_answer,
                        n_failed=len(results) - n_judged - n_no_answer, errors=errors,
                        n_defined={k: len(v) for k, v in judged.items()})
