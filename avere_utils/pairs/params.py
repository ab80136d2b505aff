"""Parameters of notebook 02_pair_construction (defaults = the tiny profile)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avere_utils.config import ConfigError, StageParams, param
from avere_utils.pairs.templates import DESCRIPTION_FORMS, STRESS_FORMS
from avere_utils.protocol import STRESS_KINDS

FAMILIES: tuple[str, ...] = ("visual_reasoning", "audio_reasoning", "emotion_id", "modality_agreement",
                             "visual_stress", "audio_stress")
FAMILY_MODALITY: dict[str, str] = {
    "visual_reasoning": "visual",
    "audio_reasoning": "audio",
    "emotion_id": "both",
    "modality_agreement": "both",
    "visual_stress": "visual",
    "audio_stress": "audio",
}
# other_clip: a clip whose emotion in that modality differs (the paper's text); noise: uniform noise (the
# released loader, for audio); same_emotion_clip: another clip of the SAME emotion (a hard negative on real
# data: the emotion no longer gives the answer away); counterfactual (synthetic world only): the same clip
# re-rendered without the cues the chosen response cites (synth/counterfactual.py)
PMP_SOURCES: tuple[str, ...] = ("other_clip", "noise", "same_emotion_clip", "counterfactual")
GENERATORS: tuple[str, ...] = ("template", "llm")
# choices: the config layer (config.build) refuses any other value, naming the key, the value and these
Generator = Literal[GENERATORS]
PmpSource = Literal[PMP_SOURCES]
StressForm = Literal[STRESS_FORMS]
DescriptionForm = Literal[DESCRIPTION_FORMS]


def _default_family_weights() -> dict[str, float]:
    # The two joint families share the "both" modality (together about a third of the samples).  emotion_id
    # weighs more than modality_agreement because it holds the description prompts (EMER's among them),
    # through which preference learning reaches the detailed answers.
    # The stress families (EmoReAlM's Yes/No stress question asked on training clips) are about two fifths of
    # the samples: a tiny model does not carry a preference learnt on descriptions over to a Yes/No answer,
    # so without them nothing ties the pairs to the stress questions EmoReAlM asks (docs/pairs.md).
    return {"visual_reasoning": 0.6, "audio_reasoning": 0.6, "emotion_id": 0.8, "modality_agreement": 0.3,
            "visual_stress": 0.8, "audio_stress": 0.8}


@dataclass
class PairParams(StageParams):
    # inputs / outputs
    manifest_file: str = param("${run_dir}/manifests/train_source.jsonl", "the training-source manifest (notebook 01)")
    pairs_dir: str = param("${run_dir}/pairs", "where the pairs (train / val) are written")
    released_json_file: str = param("${run_dir}/pairs/released_format.json", "a copy of the pairs in the released "
                                                                              "JSON format; empty: none")
    released_media_dir: str = param("${data_root}", "paths in the released JSON are relative to this folder")
    figures_dir: str = param("${run_dir}/figures", "where the notebook's figures are saved")
    # sampling
    generator: Generator = param("template", f"who writes the responses: {' | '.join(GENERATORS)}")
    samples_per_clip: int = param(2, "preference samples planned per training clip")
    max_pairs: int = param(0, "0 = no cap; otherwise a family-balanced subsample")
    family_weights: dict[str, float] = param(_default_family_weights(), "target share of each sample family "
                                                                         "(normalised; 0 = none of that family)")
    stress_kind_weights: dict[str, float] = param(
        {"relevant": 2.0, "spurious": 1.0, "hallucination": 1.0},
        "what a stress sample asks about: weights of relevant, spurious, hallucination ({} = uniform; 2:1:1 makes "
        "half the chosen answers Yes; docs/pairs.md)")
    stress_responses: StressForm = param("answer_only", "how a stress sample's three responses differ: cue_swap (each rests "
                                                     "on another cue) | same_cue (all rest on the asked cue) | answer_only "
                                                     "(bare Yes (A) / No (B)); docs/pairs.md")
    description_rejections: DescriptionForm = param(
        "swap", "how a description answer (emotion_id, description prompt) is rejected: swap (the chosen answer with a "
                "context / absent cue in its cue's place) | insert (the chosen answer plus a context clause / an absent "
                "cue beside the present one: the reference's own errors); docs/pairs.md")
    val_fraction: float = param(0.1, "fraction of the clips held out as the validation split, in [0, 1)")
    max_cues_per_response: int = param(2, "cues a template response cites at most")
    # PMP rejected input, per modality: PMP_SOURCES above
    pmp_video_source: PmpSource = param("counterfactual", f"the PMP rejected video: {' | '.join(PMP_SOURCES)} "
                                                          "(counterfactual: synthetic world only)")
    pmp_audio_source: PmpSource = param("counterfactual", f"the PMP rejected audio: {' | '.join(PMP_SOURCES)}")
    pmp_valid_only: bool = param(False, "a stress sample gets a PMP rejected input only where it can make the chosen "
                                        "answer wrong (not for a question about a context cue, nor about an absent cue "
                                        "unless the source is counterfactual); the others have none (no PMP term, "
                                        "counted as pmp_none_answer_unchanged); docs/pairs.md")
    # LLM generator (any OpenAI-compatible endpoint)
    llm_base_url: str = param("http://127.0.0.1:8000/v1", "the endpoint of generator llm")
    llm_model: str = param("gemini-2.5-flash", "the model name sent to that endpoint")
    llm_api_key_env: str = param("OPENAI_API_KEY", "the NAME of the environment variable holding the key, never "
                                                   "the key; empty: no key (a local server)")
    llm_cache_dir: str = param("${run_dir}/cache/llm", "replies cached by request, so a rerun asks nothing again")
    llm_timeout_s: float = param(30.0, "seconds one request may take")
    llm_max_retries: int = param(3, "transport retries per request (timeouts, 5xx, 429)")
    llm_temperature: float = param(0.0, "sampling temperature of the LLM generator")
    llm_fallback_to_template: bool = param(True, "an invalid LLM sample is replaced by a template one (counted)")
    llm_workers: int = param(4, "requests in flight at once")

    def __post_init__(self) -> None:
        unknown = set(self.family_weights) - set(FAMILIES)
        if unknown:
            raise ConfigError(f"PairParams.family_weights: unknown families {sorted(unknown)}; known: {FAMILIES}")
        if any(w < 0 for w in self.family_weights.values()) or not any(self.family_weights.values()):
            raise ConfigError(f"PairParams.family_weights must be >= 0 with at least one > 0: {self.family_weights}")
        if set(self.stress_kind_weights) - set(STRESS_KINDS) or any(w < 0 for w in self.stress_kind_weights.values()) \
                or (self.stress_kind_weights and not any(self.stress_kind_weights.values())):
            raise ConfigError(f"PairParams.stress_kind_weights: keys among {STRESS_KINDS}, weights >= 0, one > 0; "
                             f"got {self.stress_kind_weights}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"PairParams.val_fraction must be in [0, 1), got {self.val_fraction}")
        if min(self.samples_per_clip, self.max_cues_per_response, self.llm_workers) < 1 or self.max_pairs < 0:
            raise ConfigError("PairParams: samples_per_clip, max_cues_per_response and llm_workers must be >= 1, "
                             "max_pairs >= 0")
