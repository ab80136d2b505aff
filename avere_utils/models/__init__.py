"""Model backends: the Qwen2.5-Omni thinker (real weights or a tiny config) behind `Backend`."""
from avere_utils.models.backend import Backend
from avere_utils.models.loading import LoraSettings, load_backend
from avere_utils.models.omni import OmniBackend
from avere_utils.models.processor import ProcessorSettings

__all__ = ["Backend", "LoraSettings", "OmniBackend", "ProcessorSettings", "load_backend"]
