"""The datasets registry: ``register_dataset``, ``load_dataset``, ``list_datasets``, data root.

Loader modules register themselves on import; the registry imports them all on the first
lookup (they are cheap: numpy / rasterio / h5py / scipy only, no model code).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from rsfm.band_stats import BandStats
from rsfm.data.catalogue.base import (
    CatalogueEntry,
    ChipDataset,
    DatasetInfo,
    DatasetNotFoundError,
    Loader,
    check_split,
)

#: Modules holding the registered loaders, imported on the first lookup.
LOADER_MODULES = (
    "rsfm.data.catalogue.sentinel",
    "rsfm.data.catalogue.landsat",
    "rsfm.data.catalogue.aerial",
    "rsfm.data.catalogue.hyperspectral",
    "rsfm.data.catalogue.timeseries",
)
DATA_ROOT_ENV = "RSFM_DATA_ROOT"

_REGISTRY: dict[str, CatalogueEntry] = {}
_LOADED = False


def register_dataset(info: DatasetInfo) -> callable:
    """Decorator registering ``loader(folder, split) -> samples`` under ``info.name``.

    The loader gets the dataset's own folder (data root / ``info.folder``).
    """

    def wrap(loader: Loader) -> Loader:
        if info.name in _REGISTRY and _REGISTRY[info.name].loader is not loader:
            raise ValueError(f"dataset {info.name!r} is registered twice")
        _REGISTRY[info.name] = CatalogueEntry(info, loader)
        return loader

    return wrap


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        for module in LOADER_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:
                    raise
        _LOADED = True


def list_datasets() -> list[DatasetInfo]:
    """Facts of every registered dataset, by name."""
    _ensure_loaded()
    return [_REGISTRY[name].info for name in sorted(_REGISTRY)]


def dataset_info(name: str) -> DatasetInfo:
    """Facts of one registered dataset (KeyError naming the known ones)."""
    _ensure_loaded()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown dataset {name!r}; registered datasets: {known}")
    return _REGISTRY[name].info


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the catalogue's dataset folders.

    Order: ``root``; ``$RSFM_DATA_ROOT``; ``$RSFM_SHARED_DATA``; ``../shared/data`` beside the
    current folder; ``../shared/data`` beside the rsfm checkout.

    Raises:
        DatasetNotFoundError: If none exists.
    """
    candidates: list[Path] = []
    if root is not None:
        candidates.append(Path(root))
    else:
        for env in (DATA_ROOT_ENV, "RSFM_SHARED_DATA"):
            if os.environ.get(env):
                candidates.append(Path(os.environ[env]))
        candidates.append(Path.cwd().parent / "shared" / "data")
        candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DatasetNotFoundError(
        f"{candidates[0]}: no data root; set {DATA_ROOT_ENV} (or --data-root) to the folder "
        "that holds the catalogue's dataset folders"
    )


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    band_stats: dict[str, BandStats] | None = None,
) -> ChipDataset:
    """One split of a registered dataset.

    Args:
        name: Registered dataset name (:func:`list_datasets`).
        split: ``train``, ``val`` or ``test`` (fixed; see the dataset's card).
        root: Data root (default: :func:`data_root`).
        band_stats: ``{sensor: BandStats}`` to normalise with (default: raw values).

    Raises:
        KeyError: Unknown dataset.
        DatasetNotFoundError: Its folder is missing (the message says how to fix it).
    """
    info = dataset_info(name)
    check_split(split)
    folder = data_root(root) / info.folder
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"{folder}: not found for dataset {name!r}; put the data there or point "
            f"{DATA_ROOT_ENV} (or --data-root) at the folder that holds {info.folder}/"
        )
    entry = _REGISTRY[name]
    samples = entry.loader(folder, split)
    files = [p for p in entry.files(folder) if p.is_file()]
    dataset = ChipDataset(info, split, samples, root=folder, files=files)
    if band_stats:
        dataset.band_stats = dict(band_stats)
    return dataset
