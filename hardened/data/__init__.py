"""Dataset loading: offline-first MNIST, Fashion-MNIST and CIFAR-10.

See `hardened.data.loaders` for the search order and accepted file layouts.
"""

from hardened.data.loaders import (
    DATASETS,
    ENV_VAR,
    DatasetInfo,
    canonical_dataset,
    dataset_info,
    load_dataset,
)

__all__ = ["DATASETS", "ENV_VAR", "DatasetInfo", "canonical_dataset", "dataset_info", "load_dataset"]
