"""AVERE reproducibility kit.

First thing, before anything imports torch: pin the CPU code paths (avere_utils/numerics.py; lifted by
AVERE_NATIVE_CPU=1)."""
from avere_utils import numerics as _numerics

_numerics.apply()
