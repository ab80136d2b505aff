"""LoRA adapter folders: attaching a saved adapter to a thinker (used by loading and by the backend)."""
from __future__ import annotations

from pathlib import Path

import torch


def attach_adapter(thinker: torch.nn.Module, adapter_dir: str | Path, trainable: bool = True):
    """The thinker wrapped by the peft adapter saved in `adapter_dir` (a folder with adapter_config.json)."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(thinker, str(adapter_dir), is_trainable=trainable)
