"""Parameters of the three evaluation notebooks (05, 06, 07).  Defaults = the tiny profile."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from avere_utils.config import ConfigError, StageParams
from avere_utils.protocol import (  # noqa: F401
    CLASSIFICATION_PROMPT,
    EMER_PROMPT,
    EMOREALM_PROMPT_TEMPLATE,
    EMOREALM_TASKS,
)

SCORING_MODES = ("paper", "strict", "scoring")
CLASSIFICATION_BENCHMARKS = ("dfew", "ravdess", "mer2023")
JUDGES = ("cue", "openai", "hf")


def _one_of(cls: str, key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{cls}: key {key!r} must be one of {list(allowed)}, got {value!r}")


@dataclass
class EvalParams(StageParams):
    """Keys shared by the three evaluation notebooks: which model, how media are decoded, how we decode."""

    variant: str = "avem_dpo"  # "reference" = the reference checkpoint without adapter
    reference_dir: str = "${run_dir}/models/reference"
    adapter_dir: str = "${run_dir}/models/${variant}"  # ignored for variant "reference"
    manifest_dir: str = "${run_dir}/manifests"
    cache_dir: str = "${run_dir}/cache"  # the feature cache shared with the other stages
    # Media decoding; 0 = the checkpoint's own setting (saved with the model), which the model expects.
    n_frames: int = 0
    frame_size: int = 0
    sample_rate: int = 0
    batch_size: int = 32  # prompts per generate call (the tiny model is bound by per-step overhead)
    max_new_tokens: int = 16
    temperature: float = 0.0  # 0 = greedy; the paper sampled at 0.1 (with `seed` fixed here)
    use_cache: bool = True  # the KV cache (the released code disabled it; results are identical, slower)
    max_items: int = 0  # 0 = every item; >0 = N items evenly spread over each benchmark (a quick look)
    stale_predictions: str = "restart"  # predictions made with other settings/weights: restart | error

    def __post_init__(self) -> None:
        _one_of(type(self).__name__, "stale_predictions", self.stale_predictions, ("restart", "error"))
        for key, low in (("batch_size", 1), ("max_new_tokens", 1), ("n_frames", 0), ("frame_size", 0),
                         ("sample_rate", 0), ("max_items", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"{type(self).__name__}: key {key!r} must be >= {low}, got {getattr(self, key)}")
        if self.temperature < 0:
            raise ConfigError(f"{type(self).__name__}: key 'temperature' must be >= 0, got {self.temperature}")


def _check_modes(name: str, modes: list[str], headline_mode: str) -> None:
    for m in modes:
        _one_of(name, "modes", m, SCORING_MODES)
    if headline_mode not in modes:
        raise ConfigError(f"{name}: key 'headline_mode' {headline_mode!r} is not in modes {modes}")


@dataclass
class ClassificationParams(EvalParams):
    """05: one-word emotion recognition on DFEW, RAVDESS and MER2023."""

    benchmarks: list[str] = field(default_factory=lambda: list(CLASSIFICATION_BENCHMARKS))
    modes: list[str] = field(default_factory=lambda: list(SCORING_MODES))  # all reported side by side
    headline_mode: str = "strict"  # whose numbers sit at the top level of the metrics file
    prompt: str = CLASSIFICATION_PROMPT
    # What `scoring` mode scores for each class (the answer the model was trained to give).
    label_answer_template: str = "{label}"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_modes("ClassificationParams", self.modes, self.headline_mode)
        for b in self.benchmarks:
            _one_of("ClassificationParams", "benchmarks", b, CLASSIFICATION_BENCHMARKS)
        if "{label}" not in self.label_answer_template:
            raise ConfigError("ClassificationParams: key 'label_answer_template' must contain {label}")


@dataclass
class EmoRealmParams(EvalParams):
    """07: EmoReAlM multiple-choice and Yes/No questions."""

    # The paper's prompt: the question, a space, the lettered choices joined by spaces.
    prompt_template: str = EMOREALM_PROMPT_TEMPLATE
    modes: list[str] = field(default_factory=lambda: list(SCORING_MODES))
    headline_mode: str = "strict"
    # What `scoring` mode scores per choice: {choice} = "(B) furrowed brows", {letter} = "B", {text}.
    choice_answer_template: str = "{choice}"
    tasks: list[str] = field(default_factory=lambda: list(EMOREALM_TASKS))

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_modes("EmoRealmParams", self.modes, self.headline_mode)
        for t in self.tasks:
            _one_of("EmoRealmParams", "tasks", t, EMOREALM_TASKS)
        if "{question}" not in self.prompt_template or "{choices}" not in self.prompt_template:
            raise ConfigError("EmoRealmParams: key 'prompt_template' must contain {question} and {choices}")


@dataclass
class EmerParams(EvalParams):
    """06: open-ended emotion descriptions judged on the paper's four criteria (1-10)."""

    prompt: str = EMER_PROMPT
    max_new_tokens: int = 48
    judge: str = "cue"  # cue (exact, synthetic world) | openai (any compatible endpoint) | hf (local model)
    judge_base_url: str = "https://api.openai.com/v1"
    judge_model: str = "gpt-4o-2024-08-06"
    judge_api_key_env: str = "OPENAI_API_KEY"  # the NAME of the environment variable, never the key
    judge_cache_dir: str = "${run_dir}/cache/judge"
    judge_timeout_s: float = 60.0
    judge_max_retries: int = 3  # transport retries (timeouts, 5xx, 429)
    judge_parse_retries: int = 2  # extra asks after an unparseable reply, then it is counted
    judge_max_new_tokens: int = 256  # hf judge
    judge_batch_file: str = "${run_dir}/predictions/emer-${variant}.judge_batch.jsonl"
    hf_judge_path: str = ""  # a local causal-LM folder (judge: hf)
    # strict: the kit's rubric (re-asked when unparseable) | paper: the released protocol (gpt-4o, 400 tokens,
    # the prompt from judge_prompt_file with {reference} then {prediction}; unparseable replies dropped)
    judge_protocol: str = "strict"
    judge_prompt_file: str = ""  # the paper judge's prompt text (supplied by the user, not shipped)
    judge_use_batch: bool = False  # openai judge: one Batch-API job instead of a request per item
    judge_batch_poll_s: float = 10.0
    judge_batch_max_polls: int = 8640  # polls bound the wait (10 s x 8640 = the 24 h completion window)

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of("EmerParams", "judge", self.judge, JUDGES)
        if self.judge == "hf" and not self.hf_judge_path:
            raise ConfigError("EmerParams: judge 'hf' needs key 'hf_judge_path' (a local model folder)")
        _one_of("EmerParams", "judge_protocol", self.judge_protocol, ("strict", "paper"))
        if self.judge_protocol == "paper" and self.judge == "openai" and not self.judge_prompt_file:
            raise ConfigError("EmerParams: judge_protocol 'paper' needs key 'judge_prompt_file' (the judge prompt "
                              "as a text file with {reference} and {prediction})")
