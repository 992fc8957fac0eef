"""Captioned images: manifests, caption cleaning, a dataset of sample dicts and a datamodule.

A caption manifest is a JSONL, CSV or Parquet table with one row per image:

=============  ===============================================================================
``image``      path, relative to the manifest's folder or absolute; GeoTIFF or PNG/JPEG
``caption``    one caption (str), or ``captions``: a list of str (in CSV: a JSON list string)
``gsd``        optional ground sampling distance in m/px; else the raster transform's pixel
               size when the raster has a CRS; else unknown (``None`` / NaN in samples)
``label``      optional class name (zero-shot evaluation)
``trusted``    optional bool: a trusted row bypasses :class:`CaptionFilter`
=============  ===============================================================================

Pixel values (the documented scaling rule): PNG/JPEG are read as RGB and divided by 255 (sensor
``rgb``, the registry's R/G/B wavelengths); GeoTIFF values are the file's physical values
(stored value x band scale + offset, as GDAL declares them) and, when ``band_stats`` are given,
normalised with :meth:`BandStats.normalize`. Nodata and non-finite pixels are 0 with
``valid=False``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from rsfm.band_stats import BandStats
from rsfm.data.caption_filters import CaptionFilter
from rsfm.sensors import Sensor, get_sensor, sensor_from_raster

RASTER_SUFFIXES = (".tif", ".tiff")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
CAPTION_SAMPLING = ("random", "first", "all")


@dataclass(frozen=True)
class CaptionRecord:
    """One manifest row.

    Attributes:
        image: Absolute image path.
        captions: One or more captions.
        gsd: Ground sampling distance (m/px), or None when unknown.
        label: Optional class name.
        trusted: Whether the row bypasses caption filters.
        row: Row number in the manifest (0-based).
    """

    image: Path
    captions: tuple[str, ...]
    gsd: float | None = None
    label: str | None = None
    trusted: bool = False
    row: int = 0


# ------------------------------------------------------------------------------- manifests
def _read_table(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as err:
                    raise ValueError(f"{path}: line {number} is not valid JSON: {err}") from None
        return rows
    import pandas as pd  # lazy: pandas is only needed for CSV / Parquet manifests

    if suffix == ".csv":
        frame = pd.read_csv(path, keep_default_na=False)
    elif suffix in {".parquet", ".pq"}:
        try:
            frame = pd.read_parquet(path)
        except ImportError as err:
            raise ImportError(f"{path}: reading Parquet needs pyarrow or fastparquet") from err
    else:
        raise ValueError(f"{path}: unknown manifest format {suffix!r}; use .jsonl, .csv, .parquet")
    return frame.to_dict(orient="records")


def _captions_of(row: dict[str, Any], where: str) -> tuple[str, ...]:
    value = row.get("captions", row.get("caption"))
    if isinstance(value, str) and "captions" in row and value.lstrip().startswith("["):
        value = json.loads(value)  # CSV cells hold lists as JSON strings
    if isinstance(value, str):
        value = [value]
    if value is None or isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{where}: no 'caption' or 'captions' value")
    return tuple(str(c) for c in list(value))


def _optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y"}
    return bool(value) if value is not None and value == value else False


def raster_gsd(path: str | Path) -> float | None:
    """Pixel size (m) of a georeferenced raster, or None without a CRS (e.g. PNG/JPEG)."""
    import rasterio

    from rsfm.data.grid import gsd_metres

    with rasterio.open(path) as dataset:
        if dataset.crs is None:
            return None
        return float(gsd_metres(dataset.crs, dataset.res))


def read_caption_manifest(path: str | Path, resolve_gsd: bool = True) -> list[CaptionRecord]:
    """Read a JSONL / CSV / Parquet caption manifest (see the module docstring for columns).

    Args:
        path: Manifest file.
        resolve_gsd: Read the GSD of rows without a ``gsd`` value from the raster transform.

    Raises:
        FileNotFoundError: If the manifest or an image it names is missing (naming the row).
        ValueError: For a row without an image or caption.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"caption manifest {path} does not exist")
    records = []
    for number, row in enumerate(_read_table(path)):
        where = f"{path}: row {number}"
        if not row.get("image"):
            raise ValueError(f"{where}: no 'image' value")
        image = Path(str(row["image"])).expanduser()
        image = image if image.is_absolute() else (path.parent / image)
        if not image.is_file():
            raise FileNotFoundError(f"{where}: image {image} does not exist")
        gsd = _optional_float(row.get("gsd"))
        if gsd is None and resolve_gsd and image.suffix.lower() in RASTER_SUFFIXES:
            gsd = raster_gsd(image)
        label = row.get("label")
        records.append(
            CaptionRecord(
                image=image.resolve(),
                captions=_captions_of(row, where),
                gsd=gsd,
                label=None if label in (None, "") or label != label else str(label),
                trusted=_bool(row.get("trusted")),
                row=number,
            )
        )
    return records


def write_caption_manifest(records: Iterable[CaptionRecord], path: str | Path) -> Path:
    """Write records as JSONL (image paths relative to the manifest's folder when inside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        try:
            image = record.image.resolve().relative_to(path.parent.resolve()).as_posix()
        except ValueError:
            image = str(record.image)
        row = {"image": image, "captions": list(record.captions), "gsd": record.gsd}
        if record.label is not None:
            row["label"] = record.label
        if record.trusted:
            row["trusted"] = True
        lines.append(json.dumps(row))
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic
    return path


# --------------------------------------------------------------------------------- reading
@dataclass
class _Pixels:
    image: np.ndarray  # float32 [C, H, W]
    valid: np.ndarray  # bool [H, W]
    sensor: Sensor


def _read_picture(path: Path) -> _Pixels:
    from PIL import Image  # lazy: only PNG/JPEG manifests need Pillow

    try:
        with Image.open(path) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    except OSError as err:
        raise OSError(f"{path}: unreadable image: {err}") from None
    image = np.ascontiguousarray(rgb.transpose(2, 0, 1)) / 255.0
    return _Pixels(image, np.ones(image.shape[1:], dtype=bool), get_sensor("rgb"))


def _read_raster(path: Path, sensor: str | Sensor | None) -> _Pixels:
    import rasterio

    try:
        with rasterio.open(path) as dataset:
            stored = dataset.read(masked=True)
            scales = np.asarray(dataset.scales, dtype=np.float32)[:, None, None]
            offsets = np.asarray(dataset.offsets, dtype=np.float32)[:, None, None]
            tag = dataset.tags().get("RSFM_SENSOR")
    except rasterio.errors.RasterioError as err:
        raise OSError(f"{path}: unreadable raster: {err}") from None
    values = stored.filled(0).astype(np.float32) * scales + offsets
    valid = ~np.ma.getmaskarray(stored).any(axis=0) & np.isfinite(values).all(axis=0)
    values[:, ~valid] = 0.0
    if sensor is not None:
        resolved = get_sensor(sensor)
    else:
        resolved = sensor_from_raster(path, name=tag)
    if len(resolved) != values.shape[0]:
        raise ValueError(
            f"{path}: {values.shape[0]} bands, but sensor {resolved.name!r} has {len(resolved)}"
        )
    return _Pixels(values, valid, resolved)


def read_caption_image(path: str | Path, sensor: str | Sensor | None = None) -> _Pixels:
    """Pixels, validity mask and sensor of one manifest image (see the module's scaling rule)."""
    path = Path(path)
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return _read_picture(path)
    return _read_raster(path, sensor)


def _band_indices(sensor: Sensor, bands: Sequence[str | int] | None) -> list[int]:
    if bands is None:
        return list(range(len(sensor)))
    names = [b.upper() for b in sensor.band_names]
    indices = []
    for band in bands:
        if isinstance(band, int):
            indices.append(band)
        elif band.upper() in names:
            indices.append(names.index(band.upper()))
        else:
            raise KeyError(f"sensor {sensor.name!r} has no band {band!r}; it has {names}")
    return indices


def square_resize(
    image: torch.Tensor, valid: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Centre-crop to a square, then resize to ``size`` (antialiased bilinear).

    Returns:
        The image, its validity mask (a pixel is valid when every source pixel was) and the
        factor by which the pixel size grew.
    """
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = image[:, top : top + side, left : left + side]
    valid = valid[top : top + side, left : left + side]
    if side == size:
        return image, valid, 1.0
    # torch's antialiased bilinear is the box-like downsampler torchvision uses too.
    resized = F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True)
    mask = F.interpolate(valid[None, None].float(), size=(size, size), mode="bilinear")
    return resized[0], mask[0, 0] > 0.999, side / size


class CaptionDataset(Dataset):
    """Images with captions as sample dicts.

    A sample is ``{"image": float32 [C,H,W], "wavelengths": float32 [C], "gsd": float (NaN when
    unknown), "caption": str, "sensor": str, "valid": bool [H,W], "index": int}`` plus
    ``"label"`` when the record has one.

    Args:
        manifest: Manifest path or records.
        bands: Band names (or 0-based indices) to keep, in order; None keeps all.
        size: Output side in pixels (centre square crop + resize; the GSD scales with it).
        caption_sampling: ``random`` (a new caption per access), ``first``, or ``all`` (one
            item per caption).
        filter: Caption filter applied to the records (None: keep all).
        sensor: Registered sensor of GeoTIFFs (default: from the file's band metadata).
        band_stats: Normalise GeoTIFF pixels with these statistics (matched by wavelength).
        seed: Seed of ``random`` caption sampling when not in a worker process.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[CaptionRecord],
        bands: Sequence[str | int] | None = None,
        size: int | None = None,
        caption_sampling: str = "random",
        filter: CaptionFilter | None = None,  # noqa: A002 - the contract's argument name
        sensor: str | None = None,
        band_stats: BandStats | dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if caption_sampling not in CAPTION_SAMPLING:
            raise ValueError(f"caption_sampling must be one of {CAPTION_SAMPLING}")
        if isinstance(manifest, str | Path):
            records = read_caption_manifest(manifest)
        else:
            records = list(manifest)
        self.dropped: dict[str, int] = {}
        if filter is not None:
            records, self.dropped = filter(records)
        if not records:
            raise ValueError(f"no caption records left in {manifest!r} (dropped: {self.dropped})")
        self.records = records
        self.bands, self.size, self.sensor = bands, size, sensor
        self.caption_sampling = caption_sampling
        if isinstance(band_stats, dict):
            band_stats = BandStats.from_dict(band_stats)
        self.band_stats = band_stats
        self._rng = random.Random(seed)
        self._items = [
            (r, c)
            for r, record in enumerate(records)
            for c in (range(len(record.captions)) if caption_sampling == "all" else [None])
        ]

    def __len__(self) -> int:
        return len(self._items)

    def _caption(self, record: CaptionRecord, choice: int | None) -> str:
        if choice is not None:
            return record.captions[choice]
        if self.caption_sampling == "first" or len(record.captions) == 1:
            return record.captions[0]
        info = torch.utils.data.get_worker_info()
        rng = random.Random(info.seed + len(self._items)) if info is not None else self._rng
        return rng.choice(record.captions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record_index, choice = self._items[index]
        record = self.records[record_index]
        pixels = read_caption_image(record.image, self.sensor)
        keep = _band_indices(pixels.sensor, self.bands)
        image = torch.from_numpy(pixels.image[keep])
        valid = torch.from_numpy(pixels.valid)
        wavelengths = torch.from_numpy(pixels.sensor.wavelengths[keep].copy())
        if self.band_stats is not None and record.image.suffix.lower() in RASTER_SUFFIXES:
            image = self.band_stats.normalize(image, wavelengths) * valid
        gsd = float("nan") if record.gsd is None else float(record.gsd)
        if self.size is not None:
            image, valid, factor = square_resize(image, valid, self.size)
            gsd *= factor
        sample: dict[str, Any] = {
            "image": image.float().contiguous(),
            "wavelengths": wavelengths,
            "gsd": gsd,
            "caption": self._caption(record, choice),
            "sensor": pixels.sensor.name,
            "valid": valid,
            "index": record_index,
        }
        if record.label is not None:
            sample["label"] = record.label
        return sample


def split_records(
    records: Sequence[CaptionRecord], val_fraction: float, seed: int = 0
) -> tuple[list[CaptionRecord], list[CaptionRecord]]:
    """Deterministic train/val split by image (all captions of an image stay together)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = int(round(val_fraction * len(records)))
    if val_fraction > 0 and len(records) > 1:
        n_val = min(max(n_val, 1), len(records) - 1)
    val = [records[i] for i in sorted(order[:n_val])]
    train = [records[i] for i in sorted(order[n_val:])]
    return train, val
