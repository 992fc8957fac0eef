"""The datasets catalogue's contract: dataset facts, in-memory chip datasets, fixed splits.

Every real dataset in the catalogue is a *registered loader*: a function ``(root, split) ->
list of sample dicts`` plus a :class:`DatasetInfo` (sensors, classes, task, how the split is
made). Samples keep the rsfm sample-dict contract (``image`` float32 [C,H,W] in the product's
own units, ``wavelengths``, ``gsd``, ``sensor``, ``valid``), with ``mask`` (int64 [H,W],
-1 = unlabelled) or ``label`` (int64 class id, or float32 multi-hot [K]) when labelled.
Georeferencing (``crs`` / ``transform`` / ``bounds``) is optional: pre-chipped benchmark samples
ship without it and are first-class all the same.

Splits are fixed and documented per dataset (``DatasetInfo.split``). One scene that is both
trained and scored on is split spatially (:func:`region_split`), never pixel by pixel at random.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from torch.utils.data import Dataset

from rsfm.band_stats import BandStats
from rsfm.sensors import Sensor, get_sensor

SPLITS = ("train", "val", "test")
TASKS = (
    "segmentation",
    "classification",
    "multilabel",
    "pretraining",
    "unmixing",
    "target_detection",
    "captions",
    "timeseries",
    "super_resolution",
)
IGNORE_INDEX = -1


class DatasetNotFoundError(FileNotFoundError):
    """A catalogue dataset's folder (or a file in it) is missing. The message says how to fix."""


@dataclass(frozen=True)
class DatasetInfo:
    """What one catalogue dataset is.

    Attributes:
        name: Registry key (``rsfm evaluate --dataset NAME``).
        title: One line for tables.
        folder: Folder under the data root holding the files.
        task: What its labels serve, one of :data:`TASKS`.
        sensors: Sensor names its samples carry.
        class_names: Label class names in id order (empty when unlabelled or continuous).
        split: How train / val / test are made, in one or two sentences.
        licence: The licence as its source states it.
        source: Where the files come from.
        georeferenced: Whether samples carry ``crs`` / ``transform``.
    """

    name: str
    title: str
    folder: str
    task: str
    sensors: tuple[str, ...]
    class_names: tuple[str, ...] = ()
    split: str = ""
    licence: str = ""
    source: str = ""
    georeferenced: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name!r}: task {self.task!r} is not one of {TASKS}")

    @property
    def num_classes(self) -> int:
        """Number of label classes (0 when unlabelled)."""
        return len(self.class_names)


Loader = Callable[[Path, str], list[dict[str, Any]]]


class ChipDataset(Dataset):
    """One split of a catalogue dataset, held in memory (the catalogue's sets are small).

    ``__getitem__`` returns a shallow copy of the sample, normalised per sensor when
    :attr:`band_stats` holds statistics for its sensor (invalid pixels set to 0).

    Args:
        info: The dataset's facts.
        split: ``train``, ``val`` or ``test``.
        samples: Sample dicts as the loader made them.
        root: Folder the files were read from (for provenance).
        files: Files read (for provenance).
    """

    def __init__(
        self,
        info: DatasetInfo,
        split: str,
        samples: list[dict[str, Any]],
        root: Path | None = None,
        files: Sequence[Path] = (),
    ) -> None:
        self.info = info
        self.split = split
        self.samples = samples
        self.root = root
        self.files = list(files)
        self.band_stats: dict[str, BandStats] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return normalise_sample(self.samples[index], self.band_stats)

    @property
    def sensors(self) -> list[str]:
        """Sensor names present, in order of first appearance."""
        return list(dict.fromkeys(s["sensor"] for s in self.samples))

    def raw(self, index: int) -> dict[str, Any]:
        """The sample as read, never normalised."""
        return self.samples[index]

    def compute_band_stats(
        self,
        percentiles: tuple[float, float] = (1.0, 99.0),
        max_pixels: int = 200_000,
        seed: int = 0,
        image_key: str = "image",
    ) -> dict[str, BandStats]:
        """Per-sensor statistics over the valid pixels of every sample (a seeded subset).

        Args:
            percentiles: Clip percentiles.
            max_pixels: Pixels kept per sensor (uniform random subset beyond that).
            seed: Seed of the subset.
            image_key: ``image`` or ``pair_image`` (then ``pair_sensor`` / ``pair_valid``).
        """
        prefix = "pair_" if image_key == "pair_image" else ""
        pixels: dict[str, list[np.ndarray]] = {}
        waves: dict[str, np.ndarray] = {}
        for sample in self.samples:
            if image_key not in sample:
                continue
            sensor = sample[f"{prefix}sensor"]
            valid = sample[f"{prefix}valid"].numpy()
            pixels.setdefault(sensor, []).append(sample[image_key].numpy()[:, valid])
            waves[sensor] = sample[f"{prefix}wavelengths"].numpy()
        rng = np.random.default_rng(seed)
        stats = {}
        for sensor, chunks in pixels.items():
            values = np.concatenate(chunks, axis=1).astype(np.float64)
            if values.shape[1] == 0:
                raise ValueError(f"{self.info.name} ({self.split}): no valid {sensor} pixels")
            if values.shape[1] > max_pixels:
                values = values[:, rng.choice(values.shape[1], max_pixels, replace=False)]
            low, high = np.percentile(values, percentiles, axis=1)
            clipped = np.clip(values, low[:, None], high[:, None])
            band_names = _band_names(sensor, waves[sensor])
            stats[sensor] = BandStats(
                band_names=band_names,
                wavelengths=waves[sensor].tolist(),
                low=low.tolist(),
                high=high.tolist(),
                mean=clipped.mean(axis=1).tolist(),
                std=clipped.std(axis=1).tolist(),
                percentiles=percentiles,
                sensor=sensor,
                n_pixels=int(values.shape[1]),
            )
        return stats


def _band_names(sensor: str, wavelengths: np.ndarray) -> list[str]:
    """The registered sensor's names of these wavelengths, else ``band_<nm>``."""
    try:
        table = get_sensor(sensor)
        pairs = zip(table.wavelengths, table.band_names, strict=True)
        by_wave = {round(float(w), 2): n for w, n in pairs}
    except (KeyError, ValueError):
        by_wave = {}
    return [by_wave.get(round(float(w), 2), f"band_{float(w):g}") for w in wavelengths]


def normalise_sample(
    sample: dict[str, Any], stats: dict[str, BandStats], prefixes: tuple[str, ...] = ("",)
) -> dict[str, Any]:
    """A shallow copy whose ``<prefix>image`` s are normalised with the statistics of their
    ``<prefix>sensor`` (when ``stats`` has them), invalid pixels set to 0."""
    out = dict(sample)
    for prefix in prefixes:
        key, table = f"{prefix}image", stats.get(sample.get(f"{prefix}sensor", ""))
        if key in sample and table is not None:
            image = table.normalize(sample[key], sample[f"{prefix}wavelengths"])
            out[key] = image.masked_fill(~sample[f"{prefix}valid"], 0.0)
    return out


def chip_sample(
    image: np.ndarray,
    sensor: str | Sensor,
    *,
    sample_id: str,
    wavelengths: Sequence[float] | np.ndarray | None = None,
    gsd: float | None = None,
    valid: np.ndarray | None = None,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    label: int | np.ndarray | None = None,
    crs: Any = None,
    transform: Affine | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A sample dict from arrays.

    ``valid`` is ANDed with "finite in every band and not ``nodata`` in any band". Invalid
    pixels are zeroed in ``image`` and set to -1 in ``mask``.

    Args:
        image: [C, H, W] in the product's units.
        sensor: Registered sensor (or a :class:`Sensor` built from file tags).
        sample_id: Stable identifier (file / patch name and window).
        wavelengths: Centre wavelengths (nm); default: the sensor's.
        gsd: Ground sampling distance (m); default: the sensor's.
        valid: Extra validity mask [H, W].
        nodata: Value marking missing pixels.
        mask: Label raster [H, W] (class ids, -1 unlabelled).
        label: Class id, or multi-hot vector.
        crs: CRS when georeferenced.
        transform: Affine transform of the chip when georeferenced.
        **extra: More keys (e.g. ``pair_image``), stored as given.

    Raises:
        ValueError: If the band count differs from the wavelengths'.
    """
    sensor_obj = get_sensor(sensor) if isinstance(sensor, str) else sensor
    data = np.asarray(image, dtype=np.float32)
    waves = np.asarray(
        sensor_obj.wavelengths if wavelengths is None else wavelengths, dtype=np.float32
    )
    if data.ndim != 3 or data.shape[0] != len(waves):
        raise ValueError(
            f"{sample_id}: image of shape {data.shape} does not match the {len(waves)} bands "
            f"of {sensor_obj.name}"
        )
    ok = np.isfinite(data).all(axis=0)
    if nodata is not None:
        ok &= ~(data == np.float32(nodata)).any(axis=0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    data = np.where(ok[None], data, 0.0).astype(np.float32)
    sample: dict[str, Any] = {
        "image": torch.from_numpy(np.ascontiguousarray(data)),
        "wavelengths": torch.from_numpy(waves.copy()),
        "gsd": float(sensor_obj.gsd if gsd is None else gsd),
        "sensor": sensor_obj.name,
        "valid": torch.from_numpy(ok),
        "id": sample_id,
    }
    if mask is not None:
        ids = np.asarray(mask, dtype=np.int64).copy()
        ids[~ok] = IGNORE_INDEX
        sample["mask"] = torch.from_numpy(ids)
    if label is not None:
        if np.ndim(label) == 0:
            sample["label"] = torch.tensor(int(label), dtype=torch.int64)
        else:
            sample["label"] = torch.as_tensor(np.asarray(label, dtype=np.float32))
    if crs is not None and transform is not None:
        height, width = data.shape[1:]
        west, north = transform.c, transform.f
        east, south = transform * (width, height)
        sample.update(
            crs=crs,
            transform=transform,
            bounds=(min(west, east), min(north, south), max(west, east), max(north, south)),
        )
    sample.update(extra)
    return sample


def pair_fields(image: np.ndarray, sensor: str | Sensor) -> dict[str, Any]:
    """The ``pair_*`` keys of a co-registered second sensor's chip (for token mixup).

    Pixels that are not finite in every band are invalid (``pair_valid``) and zeroed.
    """
    sensor_obj = get_sensor(sensor) if isinstance(sensor, str) else sensor
    data = np.asarray(image, dtype=np.float32)
    valid = np.isfinite(data).all(axis=0)
    return {
        "pair_image": torch.from_numpy(np.ascontiguousarray(np.where(valid[None], data, 0.0))),
        "pair_wavelengths": torch.from_numpy(sensor_obj.wavelengths.astype(np.float32)),
        "pair_sensor": sensor_obj.name,
        "pair_valid": torch.from_numpy(valid),
    }


def window_transform(transform: Affine, row: int, col: int) -> Affine:
    """The affine transform of a chip whose top-left pixel is (``row``, ``col``)."""
    return transform * Affine.translation(col, row)


@dataclass(frozen=True)
class Region:
    """A pixel rectangle ``[row0, row1) x [col0, col1)`` of a scene."""

    row0: int
    row1: int
    col0: int
    col1: int


def region_split(height: int, width: int, split: str, val_fraction: float = 0.25) -> Region:
    """The documented spatial split of one scene: west half train/val, east half test.

    The west half's southern ``val_fraction`` of rows is validation, the rest of the west half
    training; the east half is test. No pixel is in two splits.

    Args:
        height: Scene rows.
        width: Scene columns.
        split: ``train``, ``val`` or ``test``.
        val_fraction: Share of the west half's rows used for validation.
    """
    check_split(split)
    half = width // 2
    cut = int(round(height * (1.0 - val_fraction)))
    if split == "test":
        return Region(0, height, half, width)
    if split == "val":
        return Region(cut, height, 0, half)
    return Region(0, cut, 0, half)


def chip_windows(region: Region, size: int, stride: int | None = None) -> list[Region]:
    """Chips of ``size`` px inside a region, row-major; a last partial row/col is shifted in.

    Returns no chip when the region is smaller than ``size`` in either direction.
    """
    stride = stride or size
    rows, cols = region.row1 - region.row0, region.col1 - region.col0
    if rows < size or cols < size:
        return []

    def starts(extent: int) -> list[int]:
        values = list(range(0, extent - size + 1, stride))
        if values[-1] + size < extent:
            values.append(extent - size)
        return values

    return [
        Region(region.row0 + r, region.row0 + r + size, region.col0 + c, region.col0 + c + size)
        for r in starts(rows)
        for c in starts(cols)
    ]


def hash_split(key: str, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> str:
    """A stable split for a group key (e.g. a Sentinel-2 product): sha256 bucket -> split name."""
    check_split("train")
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8
    if bucket < fractions[0]:
        return "train"
    return "val" if bucket < fractions[0] + fractions[1] else "test"


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else a ValueError naming them."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def require(path: Path, dataset: str) -> Path:
    """``path`` if it exists, else a :class:`DatasetNotFoundError` that says how to fix it."""
    if not path.exists():
        raise DatasetNotFoundError(
            f"{path}: not found for dataset {dataset!r}; put the data there or point "
            "RSFM_DATA_ROOT (or --data-root) at the folder that holds it"
        )
    return path


@dataclass
class CatalogueEntry:
    """A registered dataset: its facts and its loader."""

    info: DatasetInfo
    loader: Loader
    files: Callable[[Path], list[Path]] = field(default=lambda folder: sorted(folder.rglob("*")))
