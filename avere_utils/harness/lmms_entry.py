"""The `lmms_eval.models` entry point of the `[lmms]` extra: lmms-eval's model registry calls `manifest()`
to learn that the model id `avere_omni` is `lmms_model.AvereOmni` (imported only when a run asks for it)."""
from __future__ import annotations

from typing import Any

MODEL_ID = "avere_omni"
CLASS_PATH = "avere_utils.harness.lmms_model.AvereOmni"


def manifest() -> Any:
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)
