"""Super-resolution triplets: low-res image, older high-res reference, high-res target.

The three GeoTIFFs may differ in CRS, resolution and extent. :class:`CoRegisteredTriplet`
puts them on ONE target grid (the HR file's, or the LR grid refined ``scale`` times when there is
no target) with rasterio's ``WarpedVRT`` (reprojection + resampling in windowed reads, so memory
is bounded by the window): the LR image on the target grid coarsened by ``scale``, the reference
and the target on the target grid. ``scale`` is the ratio of the LR and HR pixel sizes (2..10).

Sample dict (torchgeo convention, see DESIGN.md)::

    lr [C, h, w] (also ``image``), hr [C, H, W], reference [Cr, H, W], valid [H, W] (LR and HR
    data), reference_valid [H, W], wavelengths [C], reference_wavelengths [Cr], scale, gsd,
    crs, bounds, transform (of the HR window), optional changed [H, W] (synthetic world)

:class:`ReferenceDegradation` applies the training-time reference degradations (target as
reference, grey, colour jitter, missing reference) and :class:`TripletDataModule` serves windows
of triplets (the synthetic world's by default) to Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from torch.utils.data import DataLoader, Dataset

from rsfm.data.collate import collate_samples
from rsfm.data.errors import BandMismatchError, MissingCRSError, UnreadableRasterError
from rsfm.data.normalization import BandStats
from rsfm.sensors import get_sensor, sensor_from_raster

MIN_SCALE, MAX_SCALE = 2, 10
SCALE_TOLERANCE = 0.02  # relative deviation of the pixel-size ratio from an integer


@dataclass(frozen=True)
class TripletFiles:
    """Paths of one triplet (``hr`` and ``changed`` optional: absent at inference)."""

    lr: Path
    reference: Path | None = None
    hr: Path | None = None
    changed: Path | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TripletFiles:
        """From ``{"lr": ..., "reference": ..., "hr": ..., "changed": ...}`` (str or Path)."""
        return cls(**{k: Path(v) if v is not None else None for k, v in data.items()})


@dataclass
class _Source:
    """One opened input: dataset, warped view on its target grid, bands, value scaling."""

    path: Path
    dataset: Any
    view: Any  # the dataset itself (same grid) or a WarpedVRT onto the target grid
    bands: list[int]
    scales: np.ndarray
    offsets: np.ndarray
    nodata: float | None


def band_wavelengths(path: Path, sensor: str | None = None, count: int | None = None) -> np.ndarray:
    """Centre wavelengths (nm) of a raster's bands: file tags, ``sensor`` or the RSFM_SENSOR tag.

    Unknown wavelengths are NaN (the model then needs an explicit band mapping).
    """
    if sensor is not None:
        return get_sensor(sensor).wavelengths.astype(np.float32)
    try:
        return sensor_from_raster(path).wavelengths.astype(np.float32)
    except ValueError:
        pass
    with rasterio.open(path) as ds:
        tagged, n = ds.tags().get("RSFM_SENSOR"), count or ds.count
    if tagged:
        try:
            waves = get_sensor(tagged).wavelengths
            if len(waves) == n:
                return waves.astype(np.float32)
        except KeyError:
            pass
    return np.full(n, np.nan, dtype=np.float32)


def scale_between(lr_path: Path, hr_path: Path) -> int:
    """Integer LR/HR pixel-size ratio from the two transforms (in the HR file's CRS).

    Raises:
        ValueError: Naming both files, if the ratio is not an integer in 2..10.
    """
    with rasterio.open(lr_path) as lr, rasterio.open(hr_path) as hr:
        if lr.crs is None or hr.crs is None:
            bad = lr_path if lr.crs is None else hr_path
            raise MissingCRSError(bad, "no CRS: cannot co-register the triplet")
        left, bottom, right, top = transform_bounds(lr.crs, hr.crs, *lr.bounds)
        lr_res = math.sqrt((right - left) * (top - bottom) / (lr.width * lr.height))
        hr_res = math.sqrt(abs(hr.transform.a * hr.transform.e))
    ratio = lr_res / hr_res
    scale = round(ratio)
    if not MIN_SCALE <= scale <= MAX_SCALE or abs(ratio - scale) > SCALE_TOLERANCE * scale:
        raise ValueError(
            f"{lr_path} ({lr_res:.4g} m) and {hr_path} ({hr_res:.4g} m): pixel-size ratio "
            f"{ratio:.3f} is not an integer scale in {MIN_SCALE}..{MAX_SCALE}"
        )
    return scale


class CoRegisteredTriplet:
    """LR, reference and HR target of one place on one target grid (windowed reads).

    Args:
        files: The triplet's paths.
        scale: Upscaling factor (default: from the transforms; required without ``hr``).
        lr_bands: 1-based LR bands to read (default all); the HR target uses ``hr_bands``.
        hr_bands: 1-based HR bands (default: all).
        ref_bands: 1-based reference bands (default: all).
        lr_sensor: Sensor name giving the LR wavelengths (default: the file's metadata).
        ref_sensor: Sensor name giving the reference wavelengths.
        lr_resampling: Resampling of the LR image onto its grid (``bilinear``, ``average``...).
        ref_resampling: Resampling of the reference onto the HR grid.
    """

    def __init__(
        self,
        files: TripletFiles,
        scale: int | None = None,
        lr_bands: Sequence[int] | None = None,
        hr_bands: Sequence[int] | None = None,
        ref_bands: Sequence[int] | None = None,
        lr_sensor: str | None = None,
        ref_sensor: str | None = None,
        lr_resampling: str = "bilinear",
        ref_resampling: str = "bilinear",
    ) -> None:
        self.files = files
        for path in (files.lr, files.reference, files.hr, files.changed):
            if path is not None and not Path(path).is_file():
                raise UnreadableRasterError(path, "no such file")
        if files.hr is not None:
            found = scale_between(files.lr, files.hr)
            if scale is not None and int(scale) != found:
                raise ValueError(
                    f"{files.lr}: scale {scale} asked for, the transforms give {found}"
                )
            scale = found
        if scale is None:
            raise ValueError(f"{files.lr}: pass scale= when there is no HR target to measure it")
        self.scale = int(scale)
        self._grid(files)
        self._sources: dict[str, _Source] = {}
        self._options = {
            "lr": (lr_bands, Resampling[lr_resampling]),
            "hr": (hr_bands, Resampling.bilinear),
            "reference": (ref_bands, Resampling[ref_resampling]),
            "changed": (None, Resampling.nearest),
        }
        self.wavelengths = band_wavelengths(
            files.lr, lr_sensor, len(lr_bands) if lr_bands else None
        )
        self.reference_wavelengths = (
            band_wavelengths(files.reference, ref_sensor, len(ref_bands) if ref_bands else None)
            if files.reference is not None
            else np.zeros(0, dtype=np.float32)
        )

    def _grid(self, files: TripletFiles) -> None:
        """The HR target grid (``crs``, ``transform``, ``height``, ``width``)."""
        grid_file = files.hr or files.lr
        try:
            with rasterio.open(grid_file) as src:
                crs, transform, height, width = src.crs, src.transform, src.height, src.width
        except rasterio.errors.RasterioIOError as err:
            raise UnreadableRasterError(grid_file, f"cannot open as a raster ({err})") from err
        if crs is None:
            raise MissingCRSError(grid_file, "no CRS: cannot co-register the triplet")
        if files.hr is None:  # inference: refine the LR grid
            transform = transform @ Affine.scale(1.0 / self.scale)
            height, width = height * self.scale, width * self.scale
        self.crs, self.transform = crs, transform
        self.height = height // self.scale * self.scale
        self.width = width // self.scale * self.scale
        self.lr_transform = transform @ Affine.scale(self.scale)

    # ------------------------------------------------------------------ reading
    def _source(self, key: str) -> _Source:
        """Open (once per process) the file of ``key`` warped onto its grid."""
        if key in self._sources:
            return self._sources[key]
        path = Path(getattr(self.files, key))
        bands, resampling = self._options[key]
        try:
            dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as err:
            raise UnreadableRasterError(path, f"cannot open as a raster ({err})") from err
        if dataset.crs is None:
            raise MissingCRSError(path, "no CRS: cannot co-register the triplet")
        selected = list(bands) if bands else list(range(1, dataset.count + 1))
        if any(not 1 <= b <= dataset.count for b in selected):
            raise BandMismatchError(
                path, f"bands {selected} asked for, the file has {dataset.count}"
            )
        coarse = key == "lr"
        transform = self.lr_transform if coarse else self.transform
        height = self.height // self.scale if coarse else self.height
        width = self.width // self.scale if coarse else self.width
        same = dataset.crs == self.crs and dataset.transform.almost_equals(transform)
        view = dataset
        if not same:
            # WarpedVRT: GDAL reprojects/resamples each windowed read onto the target grid.
            view = WarpedVRT(
                dataset, crs=self.crs, transform=transform, width=width, height=height,
                resampling=resampling, src_nodata=dataset.nodata, nodata=dataset.nodata,
            )  # fmt: skip
        scales = np.asarray([dataset.scales[b - 1] for b in selected], dtype=np.float64)
        offsets = np.asarray([dataset.offsets[b - 1] for b in selected], dtype=np.float64)
        source = _Source(path, dataset, view, selected, scales, offsets, dataset.nodata)
        self._sources[key] = source
        return source

    def _read(self, key: str, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Physical float32 values ``[C, h, w]`` (nodata 0) and the valid mask ``[h, w]``."""
        source = self._source(key)
        try:
            # Windows lie inside the target grid, which the (warped) view covers exactly.
            raw = source.view.read(source.bands, window=window)
            mask = source.view.read_masks(source.bands, window=window)
        except rasterio.errors.RasterioError as err:
            raise UnreadableRasterError(
                source.path, f"cannot read window {window} ({err})"
            ) from err
        valid = (mask > 0).all(axis=0)
        values = raw.astype(np.float32)
        if source.nodata is not None and np.isnan(source.nodata):
            valid &= np.isfinite(values).all(axis=0)
        if key != "changed":
            values = values * source.scales[:, None, None].astype(np.float32)
            values += source.offsets[:, None, None].astype(np.float32)
        values[:, ~valid] = 0.0
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), valid

    def read_window(
        self, key: str, row: int, col: int, height: int, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values ``[C, height, width]`` and valid mask of ``key`` at HR pixel ``(row, col)``.

        Parts of the window outside the target grid are 0 and invalid.
        """
        top, left = max(row, 0), max(col, 0)
        bottom, right = min(row + height, self.height), min(col + width, self.width)
        bands = len(self._source(key).bands)
        values = np.zeros((bands, height, width), dtype=np.float32)
        valid = np.zeros((height, width), dtype=bool)
        if bottom > top and right > left:
            inside, inside_valid = self._read(key, Window(left, top, right - left, bottom - top))
            rows = slice(top - row, bottom - row)
            cols = slice(left - col, right - col)
            values[:, rows, cols], valid[rows, cols] = inside, inside_valid
        return values, valid

    def read(self, row: int, col: int, size: int) -> dict[str, Any]:
        """The triplet window of ``size`` HR pixels at HR pixel ``(row, col)``.

        ``row``, ``col`` and ``size`` must be multiples of ``scale``.
        """
        if row % self.scale or col % self.scale or size % self.scale:
            raise ValueError(f"row/col/size must be multiples of scale {self.scale}")
        s = self.scale
        hr_window = Window(col, row, size, size)
        lr, lr_valid = self._read("lr", Window(col // s, row // s, size // s, size // s))
        lr_valid_hr = np.repeat(np.repeat(lr_valid, s, axis=0), s, axis=1)
        sample: dict[str, Any] = {
            "lr": torch.from_numpy(lr),
            "wavelengths": torch.from_numpy(self.wavelengths.copy()),
            "scale": s,
            "gsd": float(abs(self.transform.a)),
            "crs": self.crs,
            "transform": self.transform @ Affine.translation(col, row),
            "bounds": rasterio.windows.bounds(hr_window, self.transform),
        }
        sample["image"] = sample["lr"]
        valid = lr_valid_hr
        if self.files.hr is not None:
            hr, hr_valid = self._read("hr", hr_window)
            sample["hr"] = torch.from_numpy(hr)
            valid = valid & hr_valid
        if self.files.reference is not None:
            ref, ref_valid = self._read("reference", hr_window)
            sample["reference"] = torch.from_numpy(ref)
            sample["reference_valid"] = torch.from_numpy(ref_valid)
            sample["reference_wavelengths"] = torch.from_numpy(self.reference_wavelengths.copy())
        if self.files.changed is not None:
            changed, _ = self._read("changed", hr_window)
            sample["changed"] = torch.from_numpy(changed[0] > 0)
        sample["valid"] = torch.from_numpy(valid)
        return sample

    def close(self) -> None:
        """Close the opened files."""
        for source in self._sources.values():
            if source.view is not source.dataset:
                source.view.close()
            source.dataset.close()
        self._sources.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Open datasets cannot cross process boundaries: DataLoader workers reopen them.
        return {**self.__dict__, "_sources": {}}


class ReferenceDegradation:
    """Training-time reference degradations (applied to a sample dict, in place).

    One of them per sample, in this priority: missing (reference zeroed, ``reference_valid``
    False), target as reference (the HR target replaces it: teaches copying), grey (all bands
    set to their mean), colour jitter (random per-band gain and offset).

    Args:
        p_missing: Probability of a missing reference.
        p_target: Probability of using the target as reference.
        p_grey: Probability of a grey reference.
        p_jitter: Probability of a colour-jittered reference.
        jitter: Max relative gain change and max offset (in units of the band's std).
    """

    def __init__(
        self,
        p_missing: float = 0.1,
        p_target: float = 0.1,
        p_grey: float = 0.05,
        p_jitter: float = 0.2,
        jitter: float = 0.2,
    ) -> None:
        if p_missing + p_target + p_grey + p_jitter > 1.0:
            raise ValueError("the degradation probabilities must sum to at most 1")
        self.p = (p_missing, p_target, p_grey, p_jitter)
        self.jitter = jitter

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Degrade ``sample["reference"]``; records ``reference_mode``."""
        if "reference" not in sample:
            return sample
        draw, edges = rng.random(), np.cumsum(self.p)
        mode = ("missing", "target", "grey", "jitter", "clean")[
            int(np.searchsorted(edges, draw, side="right"))
        ]
        reference = sample["reference"]
        if mode == "missing":
            sample["reference"] = torch.zeros_like(reference)
            sample["reference_valid"] = torch.zeros_like(sample["reference_valid"])
        elif mode == "target":
            if "hr" in sample and sample["hr"].shape == reference.shape:
                sample["reference"] = sample["hr"].clone()
                sample["reference_valid"] = sample["valid"].clone()
            else:  # the target has other bands than the reference: keep it
                mode = "clean"
        elif mode == "grey":
            sample["reference"] = reference.mean(dim=0, keepdim=True).expand_as(reference).clone()
        elif mode == "jitter":
            bands = reference.shape[0]
            std = reference.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None]
            gain = torch.from_numpy(1 + self.jitter * rng.uniform(-1, 1, bands)).float()[
                :, None, None
            ]
            offset = torch.from_numpy(self.jitter * rng.uniform(-1, 1, bands)).float()[
                :, None, None
            ]
            sample["reference"] = reference * gain + offset * std
        sample["reference_mode"] = mode
        return sample


class TripletDataset(Dataset):
    """Windows of co-registered triplets (map-style).

    Args:
        triplets: Co-registered triplets.
        patch_size: Window side in HR pixels (rounded down to a multiple of the scale).
        length: Random windows per epoch; None = a regular grid of every triplet.
        stride: Grid stride in HR pixels (default: ``patch_size``).
        degradation: Training-time reference degradation.
        lr_stats: Statistics normalising ``lr`` and ``hr``.
        ref_stats: Statistics normalising ``reference``.
        seed: Seed of window positions and degradations (window ``i`` is always the same).
    """

    def __init__(
        self,
        triplets: Sequence[CoRegisteredTriplet],
        patch_size: int = 64,
        length: int | None = None,
        stride: int | None = None,
        degradation: ReferenceDegradation | None = None,
        lr_stats: BandStats | None = None,
        ref_stats: BandStats | None = None,
        seed: int = 0,
    ) -> None:
        if not triplets:
            raise ValueError("no triplets")
        self.triplets = list(triplets)
        self.patch_size = patch_size
        self.length, self.seed, self.degradation = length, seed, degradation
        self.lr_stats, self.ref_stats = lr_stats, ref_stats
        self.windows: list[tuple[int, int, int, int]] = []  # (triplet, row, col, size)
        for index, triplet in enumerate(self.triplets):
            size = self._size(triplet)
            step = max(triplet.scale, (stride or size) // triplet.scale * triplet.scale)
            for row in range(0, triplet.height - size + 1, step):
                for col in range(0, triplet.width - size + 1, step):
                    self.windows.append((index, row, col, size))

    def _size(self, triplet: CoRegisteredTriplet) -> int:
        size = min(self.patch_size, triplet.height, triplet.width)
        return size // triplet.scale * triplet.scale

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.windows)

    def window(self, index: int) -> tuple[int, int, int, int]:
        """``(triplet, row, col, size)`` of item ``index``."""
        if self.length is None:
            return self.windows[index]
        rng = np.random.default_rng([self.seed, index])
        which = int(rng.integers(len(self.triplets)))
        triplet = self.triplets[which]
        size, s = self._size(triplet), triplet.scale
        row = int(rng.integers(0, (triplet.height - size) // s + 1)) * s
        col = int(rng.integers(0, (triplet.width - size) // s + 1)) * s
        return which, row, col, size

    def __getitem__(self, index: int) -> dict[str, Any]:
        which, row, col, size = self.window(index)
        sample = self.triplets[which].read(row, col, size)
        if self.degradation is not None:
            self.degradation(sample, np.random.default_rng([self.seed, index, 1]))
        return self.normalize(sample)

    def normalize(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Apply the band statistics (nodata pixels stay 0)."""
        if self.lr_stats is not None:
            waves = sample["wavelengths"]
            for key in ("lr", "hr"):
                if key in sample:
                    sample[key] = self.lr_stats.normalize(sample[key], waves)
            if "hr" in sample:
                sample["hr"] = sample["hr"] * sample["valid"]
            sample["image"] = sample["lr"]
        if self.ref_stats is not None and "reference" in sample:
            ref = self.ref_stats.normalize(sample["reference"], sample["reference_wavelengths"])
            sample["reference"] = ref * sample["reference_valid"]
        return sample


def stats_from_windows(
    dataset: TripletDataset,
    key: str,
    n_windows: int = 32,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> BandStats:
    """BandStats of ``lr`` or ``reference`` from the dataset's first windows (valid pixels)."""
    chunks = []
    wave_key = "wavelengths" if key == "lr" else "reference_wavelengths"
    waves = None
    for index in range(min(n_windows, len(dataset))):
        which, row, col, size = dataset.window(index)
        sample = dataset.triplets[which].read(row, col, size)
        values = sample[key].numpy()
        mask = sample["valid"] if key == "lr" else sample["reference_valid"]
        if key == "lr":
            s = sample["scale"]
            mask = mask[::s, ::s]
        chunks.append(values[:, mask.numpy()].astype(np.float64))
        waves = sample[wave_key].numpy()
    values = np.concatenate(chunks, axis=1)
    if values.shape[1] == 0:
        raise ValueError(f"no valid {key} pixels in the first {n_windows} windows")
    low, high = np.percentile(values, percentiles, axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    names = [f"band_{i + 1}" for i in range(values.shape[0])]
    return BandStats(names, [float(w) for w in waves], low.tolist(), high.tolist(),
                     clipped.mean(axis=1).tolist(), clipped.std(axis=1).tolist(), percentiles,
                     key, int(values.shape[1]))  # fmt: skip


class TripletDataModule(pl.LightningDataModule):
    """Triplet windows for ``RefSRTask`` (the synthetic world's triplets by default).

    Args:
        triplets: Explicit triplets ``[{"lr", "reference", "hr", "changed"}, ...]``; None uses
            the synthetic world (``synthetic`` = :class:`SyntheticTripletConfig` arguments).
        root: Folder of synthetic triplets (default: the cache).
        synthetic: Arguments of :class:`~rsfm.data.synthetic_triplets.SyntheticTripletConfig`.
        val_triplets: Triplets held out for validation (the last ones).
        patch_size: Training window side in HR pixels.
        batch_size: Windows per batch.
        train_length: Random training windows per epoch.
        num_workers: DataLoader workers.
        p_missing: Missing-reference probability (training).
        p_target: Target-as-reference probability (training).
        p_grey: Grey-reference probability (training).
        p_jitter: Colour-jitter probability (training).
        seed: Seed of windows and degradations.
    """

    def __init__(
        self,
        triplets: list[dict[str, str]] | None = None,
        root: str | None = None,
        synthetic: dict[str, Any] | None = None,
        val_triplets: int = 1,
        patch_size: int = 32,
        batch_size: int = 8,
        train_length: int = 256,
        num_workers: int = 0,
        p_missing: float = 0.1,
        p_target: float = 0.1,
        p_grey: float = 0.05,
        p_jitter: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.band_stats: dict[str, BandStats] = {}
        self.train_dataset: TripletDataset | None = None
        self.val_dataset: TripletDataset | None = None

    def triplet_files(self) -> list[TripletFiles]:
        """The triplets' paths (generating the synthetic ones when none are given)."""
        if self.hparams.triplets:
            return [TripletFiles.from_dict(t) for t in self.hparams.triplets]
        from rsfm.data.synthetic_triplets import (
            SyntheticTripletConfig,
            ensure_synthetic_triplets,
            triplet_files,
        )

        config = SyntheticTripletConfig(**(self.hparams.synthetic or {}))
        folder = ensure_synthetic_triplets(self.hparams.root, config)
        return [TripletFiles(**files) for files in triplet_files(folder)]

    def use_band_stats(self, stats: dict[str, dict[str, Any]]) -> None:
        """Normalise with given statistics (``{"lr": ..., "reference": ...}``) instead."""
        self.band_stats = {
            k: BandStats.from_dict(v) for k, v in stats.items() if k in ("lr", "reference")
        }

    def setup(self, stage: str | None = None) -> None:
        """Open the triplets, split off validation ones, compute the band statistics."""
        if self.train_dataset is not None:
            return
        hp = self.hparams
        triplets = [CoRegisteredTriplet(files) for files in self.triplet_files()]
        n_val = min(hp.val_triplets, len(triplets) - 1) if len(triplets) > 1 else 0
        train, val = (
            triplets[: len(triplets) - n_val],
            triplets[len(triplets) - n_val :] or triplets,
        )
        degradation = ReferenceDegradation(hp.p_missing, hp.p_target, hp.p_grey, hp.p_jitter)
        self.train_dataset = TripletDataset(
            train, hp.patch_size, hp.train_length, degradation=degradation, seed=hp.seed
        )
        if not self.band_stats:
            self.band_stats = {"lr": stats_from_windows(self.train_dataset, "lr")}
            if train[0].files.reference is not None:
                self.band_stats["reference"] = stats_from_windows(self.train_dataset, "reference")
        lr_stats, ref_stats = self.band_stats.get("lr"), self.band_stats.get("reference")
        self.train_dataset.lr_stats, self.train_dataset.ref_stats = lr_stats, ref_stats
        self.val_dataset = TripletDataset(
            val, hp.patch_size, None, lr_stats=lr_stats, ref_stats=ref_stats, seed=hp.seed
        )

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=workers,
            collate_fn=collate_samples, persistent_workers=workers > 0,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        """Random degraded windows of the training triplets."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """A grid of clean windows of the validation triplets."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Same as validation."""
        return self.val_dataloader()


def open_triplets(
    files: Sequence[TripletFiles | dict[str, Any]], **kwargs: Any
) -> list[CoRegisteredTriplet]:
    """Co-register several triplets with the same options."""
    return [
        CoRegisteredTriplet(
            f if isinstance(f, TripletFiles) else TripletFiles.from_dict(f), **kwargs
        )
        for f in files
    ]


__all__ = [
    "CoRegisteredTriplet",
    "ReferenceDegradation",
    "TripletDataModule",
    "TripletDataset",
    "TripletFiles",
    "band_wavelengths",
    "open_triplets",
    "scale_between",
    "stats_from_windows",
]
