"""Co-registration of super-resolution triplets: LR image, reference and HR target read in
windows on one target grid (reprojected and resampled with rasterio's ``WarpedVRT``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rsfm.data.errors import BandMismatchError, MissingCRSError, UnreadableRasterError
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


def band_wavelengths(
    path: Path, sensor: str | None = None, bands: Sequence[int] | None = None
) -> np.ndarray:
    """Centre wavelengths (nm) of a raster's bands (of ``bands``, 1-based, when given): from
    ``sensor``, the file's wavelength tags or its RSFM_SENSOR tag.

    A ``sensor`` may describe every band of the file or just the ``bands`` read. Unknown
    wavelengths are NaN (the model then needs an explicit band mapping).

    Raises:
        BandMismatchError: When ``sensor`` describes neither the file nor ``bands``.
    """
    with rasterio.open(path) as ds:
        tagged, count = ds.tags().get("RSFM_SENSOR"), ds.count
    picked = list(bands) if bands else list(range(1, count + 1))
    waves: np.ndarray | None = None
    if sensor is not None:
        waves = get_sensor(sensor).wavelengths.astype(np.float32)
        if len(waves) not in (count, len(picked)):
            raise BandMismatchError(
                path, f"sensor {sensor!r} has {len(waves)} bands; the file has {count}"
            )
    else:
        try:
            waves = sensor_from_raster(path).wavelengths.astype(np.float32)
        except ValueError:
            if tagged:
                try:
                    waves = get_sensor(tagged).wavelengths.astype(np.float32)
                except KeyError:
                    waves = None
                if waves is not None and len(waves) != count:
                    waves = None
    if waves is None:
        return np.full(len(picked), np.nan, dtype=np.float32)
    if len(waves) == count:
        return waves[[b - 1 for b in picked]]
    return waves  # the sensor describes the bands read


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
        self.wavelengths = band_wavelengths(files.lr, lr_sensor, lr_bands)
        self.reference_wavelengths = (
            band_wavelengths(files.reference, ref_sensor, ref_bands)
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
