"""Catalogue of real datasets: registered loaders over the files of ``$RSFM_DATA_ROOT``.

``load_dataset("sen1floods11", "train")`` returns one fixed split as a :class:`ChipDataset` of
sample dicts; ``list_datasets()`` lists what is registered; each dataset's card is
``datasets/<name>/README.md`` in the repository.
"""

from rsfm.data.catalogue.base import (
    IGNORE_INDEX,
    SPLITS,
    ChipDataset,
    DatasetInfo,
    DatasetNotFoundError,
    Region,
    chip_sample,
    chip_windows,
    hash_split,
    region_split,
)
from rsfm.data.catalogue.registry import (
    data_root,
    dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "IGNORE_INDEX",
    "SPLITS",
    "ChipDataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Region",
    "chip_sample",
    "chip_windows",
    "data_root",
    "dataset_info",
    "hash_split",
    "list_datasets",
    "load_dataset",
    "region_split",
    "register_dataset",
]
