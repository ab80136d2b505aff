"""Parameters of notebook 03_reference_model (defaults = the tiny profile)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avere_utils.config import StageParams, param

# the SFT tasks models/sft.py knows (see its docstring); all but the opt-in `letters` are taught by default
SFT_TASKS: tuple[str, ...] = ("label", "description", "qa", "presence", "grounded", "mcq", "letters", "counterfactual")
DEFAULT_SFT_TASKS: tuple[str, ...] = tuple(t for t in SFT_TASKS if t not in ("letters", "counterfactual"))


@dataclass
class ReferenceParams(StageParams):
    # where things are
    manifests_dir: str = param("${run_dir}/manifests", "the manifests notebook 01 wrote")
    pairs_dir: str = param("${run_dir}/pairs", "the preference pairs (their texts join the tiny tokenizer's corpus)")
    reference_dir: str = param("${run_dir}/models/reference", "where the reference model is saved")
    train_log_file: str = param("${run_dir}/train_logs/reference.jsonl", "SFT log, one JSON line per step")
    cache_dir: str = param("${run_dir}/cache", "the decoded-clip cache shared with the other stages")
    # model: tiny builds one (base_model_path empty); paper loads a local Qwen2.5-Omni folder
    base_model_path: str = param("", "a local Qwen2.5-Omni folder; empty: build the tiny model")
    model_size: str = param("tiny", "the tiny model's named size (models/tiny.py SIZES)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
        "auto", "weights dtype: auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16")
    trust_remote_code: bool = param(False, "let transformers run code shipped with base_model_path")
    # media the model sees (written to the reference folder's avere_processor.json)
    n_frames: int = param(8, "frames per clip the model sees")
    frame_size: int = param(56, "the model's frame size in pixels (square)")
    long_audio: Literal["extend", "cut"] = param("extend", "audio past 30 s: extend (the encoder chunks it) | cut "
                                                            "(truncate at 30 s)")
    audio_in_video: bool = param(True, "interleave a clip's audio with its video (Qwen2.5-Omni use_audio_in_video)")
    # SFT warm start (tiny profile; the paper's base is already trained: sft_epochs 0)
    sft_epochs: int = param(2, "SFT epochs over the training source (0: no SFT)")
    sft_batch_size: int = param(16, "SFT examples per optimizer step")
    sft_lr: float = param(3e-3, "SFT peak learning rate (linear warmup, then cosine decay to 10 %)")
    sft_weight_decay: float = param(0.01, "SFT AdamW weight decay")
    sft_warmup_ratio: float = param(0.05, "fraction of the SFT steps spent warming up")
    sft_max_steps: int = param(0, "0: every step of sft_epochs; > 0: a step bound (smoke runs). Never a time cap: "
                                  "the reference, and every number after it, must not depend on the machine's speed")
    sft_tasks: list[str] = param(list(DEFAULT_SFT_TASKS), f"SFT tasks taught, any of {', '.join(SFT_TASKS)} "
                                                             "(letters: opt-in, docs/models.md)")
    sft_qa_per_clip: int = param(1, "qa items per clip per epoch, rotating, staggered over clips (0: all of them every "
                                    "epoch)")
    sft_label_repeats: int = param(3, "label examples per clip per epoch (see sft.sft_records)")
    sft_perception_weight: float = param(1.0, "auxiliary perception loss on the encoders (models/perception.py); 0 = off")
    sft_length_groups: int = param(2, "each main-SFT batch runs as this many forwards (at least one per SFT worker), "
                                      "each a part of whole clips whose records share one pass of the clip's media "
                                      "block (sft.SFTConfig.clip_prefix; without it: examples of similar length, "
                                      "less padding). Same examples and loss. The presence phase runs one per SFT "
                                      "worker")
    sft_workers: int = param(2, "SFT processes, each at torch_threads, sharing every batch (models/sft_workers.py): "
                                "the same reference on any machine for a given value, faster with that many cores; "
                                "a different value changes the float order (like the seed). CPU only; 1: in-process")
    sft_presence_per_clip: int = param(2, "cue-presence questions per clip per epoch, rotating (0: all of them)")
    sft_letters_per_clip: int = param(2, "text-only letter-lookup questions per clip per epoch (the `letters` task: "
                                         "a choice's text -> its letter, sft.sft_records)")
    sft_counterfactual_per_clip: int = param(1, "stress contrasts per clip per epoch, when 'counterfactual' is among "
                                                "the tasks: a training stress question on the clip and on the clip "
                                                "re-rendered with the asked cue toggled, both answered alike "
                                                "(sft_counterfactual_truth_share: by whom; synth/contrasts.py; "
                                                "synthetic world only); "
                                                "0: all of them")
    sft_counterfactual_truth_share: float = param(
        0.0, "share of the stress contrasts answered from the cue records on both clips (each such contrast teaches "
             "looking); the rest by the source's noisy annotator (text prior kept). 0 to 1")
    sft_max_items: int = param(0, "training-source items used by SFT (the first N); 0: every one")
    sft_presence_phase_steps: int = param(1400, "steps of the presence phase after the main SFT "
                                                "(models/reference.presence_phase): every cue-presence question of "
                                                "each clip with replay of the tasks below; 0: no such phase")
    sft_presence_phase_tasks: list[str] = param(["presence", "label", "qa", "grounded", "description", "mcq"],
                                                "tasks of the presence phase (presence plus replay, so that "
                                                "recognition, descriptions and the QA text prior are not "
                                                "forgotten: without the description replay 3 % of the "
                                                "descriptions named the emotion and 15 % ended in a Yes)")
    sft_presence_phase_lr: float = param(1e-3, "peak learning rate of the presence phase (its own warmup and "
                                               "decay); at the main SFT's 3e-3 the presence answers do not learn")
    sft_presence_balance: bool = param(True, "presence phase: per clip and modality, the questions of the minority "
                                             "answer repeated until Yes and No are as many (a clip shows two thirds "
                                             "of its cues: unbalanced, 'Yes' is right two times in three)")
    # what the notebook shows (held-out clips of the DFEW test manifest)
    n_show: int = param(6, "generations shown on this many held-out clips (paper: the smoke test on 2 clips)")
    n_check: int = param(140, "closed-set recognition and cue citations checked on this many held-out clips")
