"""Dataset loaders (one module per dataset), all returning `records.Item`s inside a `LoadResult`."""
from avere_utils import benchmarks
from avere_utils.datasets.common import DatasetError, LoadResult, read_manifest, write_manifest
from avere_utils.datasets.dfew import load_dfew
from avere_utils.datasets.emer import load_emer
from avere_utils.datasets.emorealm import load_emorealm
from avere_utils.datasets.mafw import load_mafw_labels
from avere_utils.datasets.mer2023 import load_mer2023
from avere_utils.datasets.params import TRAIN_SOURCE
from avere_utils.datasets.ravdess import load_ravdess
from avere_utils.datasets.train_source import load_train_source, write_train_source_manifest

# the benchmarks read on their own (benchmarks.BENCHMARKS; the held-out wordings reuse EmoReAlM's loader) and
# the training source
DATASET_NAMES: tuple[str, ...] = (*benchmarks.names(standalone=True), TRAIN_SOURCE)

__all__ = ["DATASET_NAMES", "DatasetError", "LoadResult", "load_dfew", "load_emer", "load_emorealm",
           "load_mafw_labels", "load_mer2023", "load_ravdess", "load_train_source", "read_manifest",
           "write_manifest", "write_train_source_manifest"]
