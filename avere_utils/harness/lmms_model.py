"""The lmms-eval model class `avere_omni`: the kit's Qwen2.5-Omni backend (thinker-only or full checkpoint,
optional LoRA adapter) behind lmms-eval's `generate_until` and `loglikelihood` requests.

Registered through the `lmms_eval.models` entry point (`pip install -e .[lmms]`; `lmms_entry.manifest`):

    python -m lmms_eval --model avere_omni --model_args profile=tiny,variant=avem_dpo --tasks avere_emorealm ...
    python -m lmms_eval --model avere_omni --model_args profile=paper,pretrained=/models/Qwen2.5-Omni-7B ...

Model arguments (all optional): `profile` (default tiny) and `params_dir` choose the protocol settings
(params/<profile>/07_zero_shot_emorealm.yaml); `variant` the profile's reference checkpoint plus that
variant's adapter ("reference": none); or `pretrained` (a checkpoint folder) and `adapter` (a LoRA folder);
`eval_batch_size` the prompts per call (default: the params' batch_size; answers can depend on batch
composition by float rounding, so lmms-eval's own --batch_size is not used); `loglikelihood` loss | logprob;
and any of `lmms_core.PARAM_ARGS` (device, n_frames, frame_size, sample_rate, cache_dir, torch_threads, ...).
The work is done by `lmms_core.KitModel`; this module only adapts it to lmms-eval's base class.
"""
from __future__ import annotations

import logging
from typing import Any, List, Tuple

from lmms_eval.api.model import lmms

from avere_utils.harness.lmms_core import KitModel

log = logging.getLogger(__name__)

MODEL_ID = "avere_omni"


class AvereOmni(lmms):
    is_simple = True

    def __init__(self, batch_size: Any = None, max_batch_size: Any = None, device: str | None = None,
                 **model_args: Any) -> None:
        super().__init__()
        if batch_size not in (None, 1, "1"):
            log.warning("avere_omni: lmms-eval's --batch_size %s is not used; the batch size is the profile's "
                        "batch_size, or eval_batch_size=N in --model_args", batch_size)
        self.kit = KitModel(device=device, **model_args)
        from avere_utils.evaluation.predict import process_state

        state = process_state()
        self._rank, self._world_size = state.process_index, state.num_processes
        self._device = self.kit.backend.device

    @property
    def device(self) -> Any:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.kit.params.batch_size

    def generate_until(self, requests: List[Any]) -> List[str]:
        return self.kit.generate_until(requests, self.task_dict)

    def loglikelihood(self, requests: List[Any]) -> List[Tuple[float, bool]]:
        return self.kit.loglikelihood(requests, self.task_dict)

    def generate_until_multi_round(self, requests: List[Any]) -> List[str]:
        raise NotImplementedError("avere_omni answers single-turn requests (generate_until, loglikelihood)")
