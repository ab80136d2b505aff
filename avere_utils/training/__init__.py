"""AVEm-DPO training: the loss (pure function), the variants, and the accelerate training loop.

Entry points: `train(TrainParams)` (notebook 04) and `python -m avere_utils.training --params FILE
[--variant V]` (also under `accelerate launch`).  See docs/training.md.
"""
from avere_utils.training.data import DataOrder, PairSource, plan_sample
from avere_utils.training.loss import LossConfig, LossInputs, LossOutput, avem_dpo_loss, summarize
from avere_utils.training.params import TrainParams
from avere_utils.training.step_log import read_log
from avere_utils.training.trainer import Hooks, StopTraining, Trainer, TrainResult, train
from avere_utils.training.variants import VARIANTS, Variant, describe, get_variant, loss_config_for

__all__ = [
    "DataOrder", "PairSource", "plan_sample", "LossConfig", "LossInputs", "LossOutput", "avem_dpo_loss",
    "summarize", "TrainParams", "read_log", "Hooks", "StopTraining", "Trainer", "TrainResult", "train",
    "VARIANTS", "Variant", "describe", "get_variant", "loss_config_for",
]
