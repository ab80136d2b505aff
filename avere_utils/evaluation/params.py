"""Parameters of the three evaluation notebooks (05, 06, 07).  Defaults = the tiny profile."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avere_utils import benchmarks
from avere_utils.config import ConfigError, StageParams, param
from avere_utils.protocol import (
    CLASSIFICATION_PROMPT,
    EMER_PROMPT,
    EMOREALM_PROMPT_TEMPLATE,
    EMOREALM_TASKS,
    SCORING_MODES,
)

JUDGES = ("cue", "openai", "hf")
JUDGE_PROTOCOLS = ("strict", "paper")
STALE_PREDICTIONS = ("restart", "error")
# notebook 05's benchmarks: those whose items ask for one label (benchmarks.BENCHMARKS)
CLASSIFICATION_BENCHMARKS: tuple[str, ...] = benchmarks.names("label", standalone=True)
# choices: the config layer (config.build) refuses any other value, naming the key, the value and these
Benchmark = Literal[CLASSIFICATION_BENCHMARKS]
Judge = Literal[JUDGES]
JudgeProtocol = Literal[JUDGE_PROTOCOLS]
ScoringMode = Literal[SCORING_MODES]
StalePredictions = Literal[STALE_PREDICTIONS]
Task = Literal[EMOREALM_TASKS]
PACK_HELP = ("scoring mode: all candidates of a prompt in one forward after its KV cache, under a block mask "
             "(same scores up to float rounding, about twice as fast); false = one cache copy per candidate. "
             "Needs sdpa or eager attention (flash-attention falls back to the copies)")
MODES_HELP = ("scoring modes, all reported side by side: paper (the released rules), strict (the kit's "
              "parser), scoring (the likelihood of each candidate answer)")


@dataclass
class EvalParams(StageParams):
    """Keys shared by the three evaluation notebooks: which model, how media are decoded, how we decode."""

    variant: str = param("avem_dpo", "the model evaluated: a trained variant's adapter, or \"reference\" (the "
                                     "reference checkpoint without adapter)")
    reference_dir: str = param("${run_dir}/models/reference", "the reference model (notebook 03)")
    adapter_dir: str = param("${run_dir}/models/${variant}", "the variant's LoRA adapter (notebook 04); ignored for "
                                                             "variant \"reference\"")
    manifest_dir: str = param("${run_dir}/manifests", "the benchmark manifests (notebook 01)")
    cache_dir: str = param("${run_dir}/cache", "the feature cache shared with the other stages")
    # media decoding; 0 = the checkpoint's own setting (saved with the model), which the model expects
    n_frames: int = param(0, "frames per clip; 0 = the checkpoint's own setting")
    frame_size: int = param(0, "frame size in pixels; 0 = the checkpoint's own setting")
    sample_rate: int = param(0, "audio rate in Hz; 0 = the checkpoint's own setting")
    batch_size: int = param(32, "prompts per generate call (the tiny model is bound by per-step overhead)")
    max_new_tokens: int = param(16, "tokens generated per answer at most")
    temperature: float = param(0.0, "0 = greedy; the paper sampled at 0.1 (with `seed` fixed here)")
    use_cache: bool = param(True, "the KV cache (the released code disabled it; results are identical, slower)")
    max_items: int = param(0, "0 = every item; >0 = N items evenly spread over each benchmark (a quick look)")
    stale_predictions: StalePredictions = param("restart", "predictions made with other settings/weights: restart | error")

    def __post_init__(self) -> None:
        for key, low in (("batch_size", 1), ("max_new_tokens", 1), ("n_frames", 0), ("frame_size", 0),
                         ("sample_rate", 0), ("max_items", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"{type(self).__name__}: key {key!r} must be >= {low}, got {getattr(self, key)}")
        if self.temperature < 0:
            raise ConfigError(f"{type(self).__name__}: key 'temperature' must be >= 0, got {self.temperature}")


def _check_modes(name: str, modes: list[str], headline_mode: str) -> None:
    if headline_mode not in modes:
        raise ConfigError(f"{name}: key 'headline_mode' {headline_mode!r} is not in modes {modes}")


@dataclass
class ClassificationParams(EvalParams):
    """05: one-word emotion recognition on DFEW, RAVDESS and MER2023."""

    benchmarks: list[Benchmark] = param(list(CLASSIFICATION_BENCHMARKS), f"benchmarks evaluated, any of "
                                                                         f"{', '.join(CLASSIFICATION_BENCHMARKS)}")
    modes: list[ScoringMode] = param(list(SCORING_MODES), MODES_HELP)
    headline_mode: str = param("strict", "whose numbers sit at the top level of the metrics file")
    prompt: str = param(CLASSIFICATION_PROMPT, "the prompt asked of every clip (the paper's protocol)")
    label_answer_template: str = param("{label}", "what `scoring` mode scores for each class (the answer the "
                                                  "model was trained to give); must contain {label}")
    pack_candidates: bool = param(True, PACK_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_modes("ClassificationParams", self.modes, self.headline_mode)
        if "{label}" not in self.label_answer_template:
            raise ConfigError("ClassificationParams: key 'label_answer_template' must contain {label}")


@dataclass
class EmoRealmParams(EvalParams):
    """07: EmoReAlM multiple-choice and Yes/No questions."""

    prompt_template: str = param(EMOREALM_PROMPT_TEMPLATE, "the prompt of an item; the paper's: the question, "
                                                           "a space, the lettered choices joined by spaces")
    modes: list[ScoringMode] = param(list(SCORING_MODES), MODES_HELP)
    headline_mode: str = param("strict", "whose numbers sit at the top level of the metrics file")
    choice_answer_template: str = param("{text} ({letter})", "what `scoring` mode scores per choice, in the form the "
                                        "model answers: {choice} = \"(B) furrowed brows\", {letter} = \"B\", {text}; "
                                        "the tiny reference is taught text first (protocol.ANSWER_TEMPLATE)")
    tasks: list[Task] = param(list(EMOREALM_TASKS), f"tasks evaluated, any of {', '.join(EMOREALM_TASKS)}")
    pack_candidates: bool = param(True, PACK_HELP)
    heldout_benchmark: str = param("emorealm_heldout", "a second stress set in wordings no training text uses "
                                   "(manifest <manifest_dir>/<name>.jsonl from notebook 01), scored into "
                                   "metrics/<name>-<variant>.json; '' = none")
    heldout_modes: list[ScoringMode] = param(["scoring"], "the modes the held-out wordings are read in")
    media_sensitivity: list[str] = param(["emorealm"], "stress sets whose Yes log-odds are "
                                         "also read under counterfactual media, noise and no media (synthetic world "
                                         "only: the counterfactual needs the clip's recipe); [] = none")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_modes("EmoRealmParams", self.modes, self.headline_mode)
        if "{question}" not in self.prompt_template or "{choices}" not in self.prompt_template:
            raise ConfigError("EmoRealmParams: key 'prompt_template' must contain {question} and {choices}")


@dataclass
class EmerParams(EvalParams):
    """06: open-ended emotion descriptions judged on the paper's four criteria (1-10)."""

    prompt: str = param(EMER_PROMPT, "the prompt asked of every clip (the paper's protocol)")
    max_new_tokens: int = param(96, "tokens of a description at most (the tiny captions run to about 70)")
    judge: Judge = param("cue", "cue (exact, synthetic world) | openai (any compatible endpoint) | hf (local model)")
    judge_base_url: str = param("https://api.openai.com/v1", "the endpoint of judge openai (any compatible server)")
    judge_model: str = param("gpt-4o-2024-08-06", "the judge model name sent to that endpoint")
    judge_api_key_env: str = param("OPENAI_API_KEY", "the NAME of the environment variable, never the key")
    judge_cache_dir: str = param("${run_dir}/cache/judge", "judge replies cached by request, so a rerun asks "
                                                           "nothing again")
    judge_timeout_s: float = param(60.0, "seconds one judge request may take")
    judge_max_retries: int = param(3, "transport retries (timeouts, 5xx, 429)")
    judge_parse_retries: int = param(2, "extra asks after an unparseable reply, then it is counted")
    judge_max_new_tokens: int = param(256, "tokens the hf judge may write per reply")
    judge_batch_file: str = param("${run_dir}/predictions/emer-${variant}.judge_batch.jsonl",
                                  "the judge requests as a Batch-API file (written for every run; read back "
                                  "with judge_use_batch)")
    hf_judge_path: str = param("", "a local causal-LM folder (judge: hf)")
    judge_protocol: JudgeProtocol = param("strict", "strict: the kit's rubric (re-asked when unparseable) | paper: the "
                                                    "released protocol (gpt-4o, 400 tokens, the prompt from judge_prompt_file "
                                                    "with {reference} then {prediction}; unparseable replies dropped)")
    judge_prompt_file: str = param("", "the paper judge's prompt text (supplied by the user, not shipped)")
    judge_use_batch: bool = param(False, "openai judge: one Batch-API job instead of a request per item")
    judge_batch_poll_s: float = param(10.0, "seconds between polls of a Batch-API job")
    judge_batch_max_polls: int = param(8640, "polls bound the wait (10 s x 8640 = the 24 h completion window)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.judge == "hf" and not self.hf_judge_path:
            raise ConfigError("EmerParams: judge 'hf' needs key 'hf_judge_path' (a local model folder)")
        if self.judge_protocol == "paper" and self.judge == "openai" and not self.judge_prompt_file:
            raise ConfigError("EmerParams: judge_protocol 'paper' needs key 'judge_prompt_file' (the judge prompt "
                              "as a text file with {reference} and {prediction})")
