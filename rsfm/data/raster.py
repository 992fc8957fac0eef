"""GeoTIFF datasets on torchgeo's GeoDataset, reading windows directly with rasterio.

torchgeo's ``RasterDataset`` merges every query through ``rasterio.merge`` over WarpedVRTs; this
dataset instead keeps per-process open handles and reads one window per file with a single
``read`` call, warping (WarpedVRT) only files whose CRS differs from the dataset's and resampling
only when resolutions differ. Samples follow the rsfm sample-dict contract (see DESIGN.md).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import rasterio
import shapely
import torch
from affine import Affine
from geopandas import GeoDataFrame
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice

from rsfm.band_stats import BandStats
from rsfm.data.errors import (
    BandMismatchError,
    EmptyRasterError,
    EmptyWindowError,
    MissingCRSError,
    NonFiniteError,
    RasterError,
    UnreadableRasterError,
)
from rsfm.data.grid import (
    Grid,
    PathLike,
    canonical_band_name,
    decimated_shape,
    find_rasters,
    gsd_metres,
    overlapping,
    window_plan,
)
from rsfm.sensors import Band, Sensor, get_sensor, sensor_from_raster

_BAND_SUFFIX = re.compile(r"_([A-Za-z0-9]+)\.tiff?$")


@dataclass
class _Source:
    """One file feeding some output channels of an item."""

    path: str
    band_indexes: list[int]  # 1-based band numbers in the file
    channels: list[int]  # output channel of each band
    nodata: float | None
    is_float: bool
    vrt: dict[str, Any] | None  # WarpedVRT grid (crs/transform/width/height) when warping
    bounds: tuple[float, float, float, float]  # footprint in the dataset CRS
    bad: list[bool]  # per band: flagged bad (bbl=0), so left out of the valid mask


def _intersect_bounds(sources: list[_Source]) -> tuple[float, float, float, float]:
    """Footprint of an item: the intersection of its sources' footprints."""
    arr = np.array([s.bounds for s in sources])
    return (arr[:, 0].max(), arr[:, 1].max(), arr[:, 2].min(), arr[:, 3].min())


def _is_bad_band(tags: dict[str, str]) -> bool:
    """ENVI-style ``bbl`` tag (as ``rsfm.sensors.bad_band_mask`` reads it) flags a bad band."""
    try:
        return float(tags.get("bbl", 1)) == 0.0
    except ValueError:
        return False


def refuse_empty_rasters(
    paths: Iterable[PathLike], side: int = 256, patch_size: int | None = None
) -> None:
    """Raise :class:`EmptyRasterError` for the first file whose every pixel is nodata, and a
    :class:`RasterError` naming the files and their sizes when none holds a ``patch_size``
    window.

    A decimated read of each file's dataset mask (at most ``side`` px a side), so the check
    stays cheap on large scenes; training refuses such files at setup (before statistics are
    computed) instead of training on nothing.
    """
    paths = list(paths)
    if patch_size and paths:
        sizes = []
        for path in paths:
            with _open(path) as src:
                sizes.append((path, src.width, src.height))
        if all(min(width, height) < patch_size for _, width, height in sizes):
            shown = ", ".join(f"{Path(p).name} {w}x{h} px" for p, w, h in sizes[:4])
            raise RasterError(
                paths[0],
                f"no training file holds a {patch_size} px window ({shown}"
                f"{', ...' if len(sizes) > 4 else ''}); use a smaller patch_size or larger files",
            )
    for path in paths:
        with _open(path) as src:
            shape = decimated_shape(src.height, src.width, side)
            if not src.dataset_mask(out_shape=shape).any():
                raise EmptyRasterError(
                    path,
                    f"every pixel is nodata (nodata={src.nodata}): nothing to train on; "
                    "set the file's real nodata value or leave the file out",
                )


def _open(path: PathLike) -> rasterio.io.DatasetReader:
    """``rasterio.open`` raising ``UnreadableRasterError`` (naming the file) on failure."""
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        if os.path.isfile(path) and os.path.getsize(path) == 0:  # GDAL says "not recognized"
            raise UnreadableRasterError(path, "the file is empty (0 bytes)") from err
        raise UnreadableRasterError(path, f"cannot open as a raster ({err})") from err


class SensorRasterDataset(GeoDataset):
    """GeoTIFFs of one sensor as a torchgeo GeoDataset returning rsfm sample dicts.

    Image channels follow ``bands`` (or, without it, the sensor's registry order), never the
    file's storage order: bands are mapped by their descriptions when the file has them.
    """

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike],
        sensor: str | Sensor | None = None,
        bands: Sequence[str] | None = None,
        crs: CRS | pyproj.CRS | str | None = None,
        res: float | tuple[float, float] | None = None,
        nodata: float | None = None,
        band_files: bool = False,
        label_paths: PathLike | Iterable[PathLike] | None = None,
        normalization: BandStats | PathLike | None = None,
        nonfinite: str = "error",
        skip_empty: bool = False,
        label_ignore_index: int = -1,
    ) -> None:
        """Index the rasters.

        Args:
            paths: GeoTIFF files and/or directories (searched recursively for ``*.tif``).
            sensor: Registry name or ``Sensor``; None describes it from the first file's
                wavelength tags (``sensor_from_raster``).
            bands: Band names to return, in this order (``B1``/``B01`` styles both match).
            crs: Target CRS (default: the first file's).
            res: Target resolution in CRS units (default: the finest file resolution).
            nodata: Nodata value overriding the files' own.
            band_files: One product per directory, one file per band named ``*_<BAND>.tif``;
                bands at other resolutions are resampled bilinearly onto the target grid.
            label_paths: Label rasters, returned as ``mask`` (int64, nearest resampling).
            normalization: ``BandStats`` (or a JSON path) applied to ``image``.
            nonfinite: ``"error"`` raises on NaN/inf that is not nodata; ``"mask"`` marks it
                invalid.
            skip_empty: Return None for all-nodata windows instead of raising.
            label_ignore_index: ``mask`` value where no label covers a pixel or it is nodata.

        Raises:
            FileNotFoundError: If no file is found.
            MissingCRSError: If a file has no CRS.
            UnreadableRasterError: If a file cannot be opened.
            BandMismatchError: If a file's bands do not match the sensor.
        """
        if nonfinite not in ("error", "mask"):
            raise ValueError(f"nonfinite must be 'error' or 'mask', got {nonfinite!r}")
        self.paths = paths
        self.band_files = band_files
        self.nodata_override = nodata
        self.nonfinite = nonfinite
        self.skip_empty = skip_empty
        self.label_ignore_index = label_ignore_index
        self._files = find_rasters(paths)
        self.label_files = find_rasters(label_paths) if label_paths is not None else []
        self.normalization = (
            normalization
            if normalization is None or isinstance(normalization, BandStats)
            else BandStats.load(normalization)
        )
        self._full_sensor = self._resolve_sensor(sensor)
        self.sensor = self._full_sensor.select(
            self._resolve_band_names(bands), name=self._full_sensor.name
        )
        self.wavelengths = self.sensor.wavelengths
        self._build(crs, res)

    # ------------------------------------------------------------------ construction

    def _resolve_sensor(self, sensor: str | Sensor | None) -> Sensor:
        if sensor is not None:
            return get_sensor(sensor)
        if self.band_files:
            raise ValueError("band_files=True needs an explicit sensor (single-band files)")
        first = self._files[0]
        with _open(first) as src:
            if src.crs is None:
                raise MissingCRSError(first, "the raster has no CRS (coordinate reference system)")
        try:
            return sensor_from_raster(first)
        except ValueError as err:
            raise BandMismatchError(
                first, f"no sensor given and {err}; pass sensor= (name or Sensor)"
            ) from err

    def _resolve_band_names(self, bands: Sequence[str] | None) -> list[str]:
        if bands is None:
            return self._full_sensor.band_names
        lookup = {canonical_band_name(b.name): b.name for b in self._full_sensor.bands}
        unknown = [b for b in bands if canonical_band_name(b) not in lookup]
        if unknown:
            raise ValueError(
                f"sensor {self._full_sensor.name!r} has no band(s) {unknown}; "
                f"it has {self._full_sensor.band_names}"
            )
        return [lookup[canonical_band_name(b)] for b in bands]

    def _build(self, crs: CRS | pyproj.CRS | str | None, res: float | tuple | None) -> None:
        """(Re)build the file table and torchgeo index for a target CRS and resolution."""
        metas = [self._file_meta(p) for p in self._files]
        label_metas = [self._file_meta(p, use_override=False) for p in self.label_files]
        target = CRS.from_user_input(crs) if crs is not None else metas[0]["crs"]
        if res is None:
            res = min((self._native_res(m, target) for m in metas), key=lambda r: r[0] * r[1])
        elif isinstance(res, int | float):
            res = (float(res), float(res))
        self._rio_crs, self._res = target, (float(res[0]), float(res[1]))
        products = self._group_products(metas)
        self._items: list[list[_Source]] = []
        self._labels: list[list[_Source]] = []
        item_bounds, names = [], []
        for name, members in products:
            sources = [self._make_source(meta, idx, ch) for meta, idx, ch in members]
            self._items.append(sources)
            item_bounds.append(_intersect_bounds(sources))
            names.append(name)
        label_bounds = []
        for meta in label_metas:
            source = self._make_source(meta, [1], [0])
            self._labels.append([source])
            label_bounds.append(source.bounds)
        self._item_bounds = np.array(item_bounds, dtype=np.float64).reshape(-1, 4)
        self._label_bounds = np.array(label_bounds, dtype=np.float64).reshape(-1, 4)
        self._readers: dict[tuple[str, bool], Any] = {}
        self._readers_pid = os.getpid()
        times = [(pd.Timestamp.min, pd.Timestamp.max)] * len(names)
        xmin, ymin = self._item_bounds[:, :2].min(axis=0)
        xmax, ymax = self._item_bounds[:, 2:].max(axis=0)
        self._bounds = (
            slice(float(xmin), float(xmax), self._res[0]),
            slice(float(ymin), float(ymax), self._res[1]),
            slice(times[0][0], times[0][1], 1),
        )
        self.index = GeoDataFrame(
            {"filepath": names},
            index=pd.IntervalIndex.from_tuples(times, closed="both", name="datetime"),
            geometry=[shapely.box(*b) for b in item_bounds],
            crs=pyproj.CRS.from_wkt(target.to_wkt()),
        )

    def _file_meta(self, path: Path, use_override: bool = True) -> dict[str, Any]:
        """Header facts of one file (opened once, at construction)."""
        with _open(path) as src:
            if src.crs is None:
                raise MissingCRSError(path, "the raster has no CRS (coordinate reference system)")
            nodata = src.nodata
            if use_override and self.nodata_override is not None:
                nodata = self.nodata_override
            return {
                "path": str(path),
                "crs": src.crs,
                "transform": src.transform,
                "width": src.width,
                "height": src.height,
                "count": src.count,
                "descriptions": list(src.descriptions),
                "nodata": None if nodata is None else float(nodata),
                "is_float": np.issubdtype(np.dtype(src.dtypes[0]), np.floating),
                "bad_bands": {i for i in range(1, src.count + 1) if _is_bad_band(src.tags(i))},
            }

    @staticmethod
    def _native_res(meta: dict[str, Any], target: CRS) -> tuple[float, float]:
        """A file's pixel size in the target CRS."""
        t = meta["transform"]
        if meta["crs"] == target and t.b == 0 and t.d == 0:
            return abs(t.a), abs(t.e)
        left, bottom, right, top = rasterio.transform.array_bounds(meta["height"], meta["width"], t)
        dst, _, _ = calculate_default_transform(
            meta["crs"], target, meta["width"], meta["height"], left, bottom, right, top
        )
        return abs(dst.a), abs(dst.e)

    def _group_products(self, metas: list[dict[str, Any]]) -> list[tuple[str, list]]:
        """Items as (name, [(file meta, band indexes, output channels)])."""
        selected = list(self.sensor.bands)
        if not self.band_files:
            return [
                (m["path"], [(m, self._band_indexes(m, selected), list(range(len(selected))))])
                for m in metas
            ]
        by_dir: dict[str, dict[str, dict[str, Any]]] = {}
        for meta in metas:
            match = _BAND_SUFFIX.search(Path(meta["path"]).name)
            if match:
                key = canonical_band_name(match[1])
                by_dir.setdefault(str(Path(meta["path"]).parent), {})[key] = meta
        products = []
        for directory, band_metas in sorted(by_dir.items()):
            wanted = [canonical_band_name(b.name) for b in selected]
            if not any(w in band_metas for w in wanted):
                continue  # another sensor's product (e.g. S1 beside S2)
            missing = [b.name for b, w in zip(selected, wanted, strict=True) if w not in band_metas]
            if missing:
                raise BandMismatchError(directory, f"product has no file for band(s) {missing}")
            members = [(band_metas[w], [1], [c]) for c, w in enumerate(wanted)]
            products.append((directory, members))
        if not products:
            raise BandMismatchError(
                self._files[0].parent,
                f"no product directory holds files named *_<BAND>.tif for {self.sensor.band_names}",
            )
        return products

    def _band_indexes(self, meta: dict[str, Any], selected: list[Band]) -> list[int]:
        """1-based file bands for the selected sensor bands: by description, else by position."""
        path, count, name = meta["path"], meta["count"], self._full_sensor.name
        descriptions = [canonical_band_name(d) if d else "" for d in meta["descriptions"]]
        wanted = [canonical_band_name(b.name) for b in selected]
        if all(descriptions) and any(w in descriptions for w in wanted):
            missing = [
                b.name for b, w in zip(selected, wanted, strict=True) if w not in descriptions
            ]
            if missing:
                raise BandMismatchError(
                    path,
                    f"band(s) {missing} of sensor {name!r} are not among the file's band "
                    f"descriptions {meta['descriptions']}",
                )
            return [descriptions.index(w) + 1 for w in wanted]
        if count != len(self._full_sensor):
            raise BandMismatchError(
                path,
                f"the file has {count} bands but sensor {name!r} declares "
                f"{len(self._full_sensor)} ({self._full_sensor.band_names}), and no band "
                "descriptions name the bands",
            )
        positions = [canonical_band_name(b.name) for b in self._full_sensor.bands]
        return [positions.index(w) + 1 for w in wanted]

    def _make_source(
        self, meta: dict[str, Any], indexes: list[int], channels: list[int]
    ) -> _Source:
        """Reading plan of one file: bands, nodata, and a WarpedVRT grid when it must warp."""
        t, vrt = meta["transform"], None
        bounds = rasterio.transform.array_bounds(meta["height"], meta["width"], t)
        if meta["crs"] != self._rio_crs or t.b != 0 or t.d != 0 or t.e > 0:
            # Reprojection on the fly: a WarpedVRT on the target grid at the target resolution.
            transform, width, height = calculate_default_transform(
                meta["crs"],
                self._rio_crs,
                meta["width"],
                meta["height"],
                *bounds,
                resolution=self._res,
            )
            vrt = {"crs": self._rio_crs, "transform": transform, "width": width, "height": height}
            bounds = rasterio.transform.array_bounds(height, width, transform)
        bounds = tuple(float(b) for b in bounds)
        bad = [i in meta["bad_bands"] for i in indexes]
        return _Source(
            meta["path"], indexes, channels, meta["nodata"], meta["is_float"], vrt, bounds, bad
        )

    # ------------------------------------------------------------------ properties

    @property
    def files(self) -> list[str]:
        """Image files of the dataset, sorted."""
        return [str(p) for p in self._files]

    @property
    def crs(self) -> pyproj.CRS:
        """The dataset CRS (pyproj, as torchgeo expects); samples carry the rasterio CRS."""
        return self.index.crs

    @crs.setter
    def crs(self, new_crs: CRS | pyproj.CRS | str) -> None:
        new = CRS.from_user_input(new_crs)
        if new != self._rio_crs:
            self._build(new, None)

    @property
    def bounds(self) -> tuple[slice, slice, slice]:
        """x, y, t extent of the dataset (cached: torchgeo recomputes it on every query)."""
        return self._bounds

    @property
    def res(self) -> tuple[float, float]:
        """Target resolution (x, y) in CRS units."""
        return self._res

    @res.setter
    def res(self, new_res: float | tuple[float, float]) -> None:
        new = (float(new_res), float(new_res)) if isinstance(new_res, int | float) else new_res
        if tuple(new) != self._res:
            self._build(self._rio_crs, tuple(new))

    # ------------------------------------------------------------------ reading

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without open handles (spawned DataLoader workers re-open their own)."""
        state = self.__dict__.copy()
        state["_readers"] = {}  # open handles do not pickle (spawned DataLoader workers)
        return state

    def _reader(self, source: _Source, resampling: Resampling) -> Any:
        """Cached open handle (or WarpedVRT) for a file, re-opened in each forked process."""
        if self._readers_pid != os.getpid():
            self._readers, self._readers_pid = {}, os.getpid()
        key = (source.path, resampling == Resampling.nearest)
        reader = self._readers.get(key)
        if reader is None:
            reader = _open(source.path)
            if source.vrt is not None:
                reader = WarpedVRT(
                    reader,
                    **source.vrt,
                    resampling=resampling,
                    src_nodata=source.nodata,
                    nodata=source.nodata,
                    add_alpha=source.nodata is None,
                )
            self._readers[key] = reader
        return reader

    def __getitem__(self, query: GeoSlice) -> dict[str, Any] | None:
        """Read the window of ``query`` ([xmin:xmax:xres, ymin:ymax:yres, tmin:tmax]).

        Returns:
            The sample dict, or None for an all-nodata window when ``skip_empty`` is set.

        Raises:
            IndexError: If the query does not intersect the dataset.
            EmptyWindowError: If the window holds only nodata (and ``skip_empty`` is off).
            NonFiniteError: On NaN/inf pixels that are not nodata (``nonfinite="error"``).
            UnreadableRasterError: If the window cannot be decoded.
        """
        return self.read(query)

    def read(self, query: GeoSlice, normalize: bool = True) -> dict[str, Any] | None:
        """Like ``__getitem__``; ``normalize=False`` skips the normalisation (for statistics)."""
        x, y, _ = self._disambiguate_slice(query)  # files carry no dates: time is not filtered
        xres, yres = float(x.step), float(y.step)
        x, y = slice(float(x.start), float(x.stop)), slice(float(y.start), float(y.stop))
        width = max(1, round((x.stop - x.start) / xres))
        height = max(1, round((y.stop - y.start) / yres))
        grid = Grid(Affine(xres, 0.0, x.start, 0.0, -yres, y.stop), height, width)
        window_bounds = (x.start, y.stop - height * yres, x.start + width * xres, y.stop)
        hits = overlapping(self._item_bounds, window_bounds)
        if not len(hits):
            raise IndexError(f"query {query} is outside the dataset bounds {self.bounds}")
        image, valid = None, None
        for item in hits:
            data, ok = self._read_item(self._items[item], grid, Resampling.bilinear)
            if image is None:  # the first file: no copy (one window usually lies in one file)
                image, valid = data, ok
            else:
                take = ok & ~valid
                image[:, take] = data[:, take]
                valid |= take
            if valid.all():
                break
        if not valid.any():
            if self.skip_empty:
                return None
            names = ", ".join(self._items[i][0].path for i in hits)
            raise EmptyWindowError(names, f"window {window_bounds} holds only nodata pixels")
        if not valid.all():
            image[:, ~valid] = 0.0
        sample: dict[str, Any] = {
            "image": torch.from_numpy(image),
            "wavelengths": torch.from_numpy(self.wavelengths.copy()),
            "gsd": gsd_metres(self._rio_crs, (xres, yres)),
            "sensor": self.sensor.name,
            "valid": torch.from_numpy(valid),
            "crs": self._rio_crs,
            "bounds": window_bounds,
            "transform": grid.transform,
        }
        if self.label_files:
            sample["mask"] = torch.from_numpy(self._read_labels(grid, window_bounds))
        if normalize and self.normalization is not None:
            normed = self.normalization.normalize(sample["image"], sample["wavelengths"])
            sample["image"] = normed.masked_fill(~sample["valid"], 0.0)
        return sample

    def _read_labels(self, grid: Grid, window_bounds: tuple[float, ...]) -> np.ndarray:
        mask = np.full((grid.height, grid.width), self.label_ignore_index, dtype=np.int64)
        covered = np.zeros((grid.height, grid.width), dtype=bool)
        for item in overlapping(self._label_bounds, window_bounds):
            data, ok = self._read_item(self._labels[item], grid, Resampling.nearest)
            take = ok & ~covered
            mask[take] = data[0, take].astype(np.int64)
            covered |= take
        return mask

    def _read_item(
        self, sources: list[_Source], grid: Grid, resampling: Resampling
    ) -> tuple[np.ndarray, np.ndarray]:
        """All sources of an item on the grid: data [C,H,W] float32 and valid [H,W]."""
        if len(sources) == 1:  # a stacked file (its bands already in output order) or a label
            return self._read_source(sources[0], grid, resampling)
        data = np.zeros((len(self.sensor), grid.height, grid.width), dtype=np.float32)
        valid = np.ones((grid.height, grid.width), dtype=bool)
        for source in sources:
            part, ok = self._read_source(source, grid, resampling)
            data[source.channels] = part
            valid &= ok
        return data, valid

    def _read_source(
        self, source: _Source, grid: Grid, resampling: Resampling
    ) -> tuple[np.ndarray, np.ndarray]:
        """One file's bands on the grid with one windowed ``read``; data and valid mask."""
        reader = self._reader(source, resampling)
        indexes = list(source.band_indexes)
        if source.vrt is not None and source.nodata is None:
            indexes.append(reader.count)  # the alpha band added by the WarpedVRT
        n_out = len(source.band_indexes)
        plan = window_plan(reader.transform, reader.width, reader.height, grid)
        if plan is None:
            return (
                np.zeros((n_out, grid.height, grid.width), dtype=np.float32),
                np.zeros((grid.height, grid.width), dtype=bool),
            )
        window, (r0, r1, c0, c1), aligned = plan
        try:
            if aligned:
                block = reader.read(indexes, window=window, out_dtype="float32")
            else:
                block = reader.read(
                    indexes,
                    window=window,
                    out_shape=(len(indexes), r1 - r0, c1 - c0),
                    resampling=resampling,
                    out_dtype="float32",
                )
        except RasterioIOError as err:
            raise UnreadableRasterError(
                source.path, f"cannot decode window {window} (corrupt or truncated file): {err}"
            ) from err
        ok = np.ones(block.shape[1:], dtype=bool)
        if len(indexes) > n_out:
            ok &= block[n_out] > 0
            block = block[:n_out]
        missing = None  # per band: nodata or non-finite
        if source.nodata is not None:
            nodata = np.float32(source.nodata)
            missing = np.isnan(block) if math.isnan(nodata) else block == nodata
        if source.is_float:
            nonfinite = ~np.isfinite(block) if missing is None else ~np.isfinite(block) & ~missing
            good = [not b for b in source.bad]
            bad = nonfinite[good].any(axis=0) & ok
            if bad.any() and self.nonfinite == "error":
                raise NonFiniteError(
                    source.path,
                    f"{int(bad.sum())} NaN/inf pixels in window {window} that are "
                    f"not the declared nodata ({source.nodata}); nonfinite='mask' masks them",
                )
            missing = nonfinite if missing is None else missing | nonfinite
        if missing is not None:
            if any(source.bad):  # bad bands (bbl=0) never invalidate a pixel; zero their gaps
                for row in np.flatnonzero(source.bad):
                    block[row][missing[row]] = 0.0
                missing = missing[[not b for b in source.bad]]
            ok &= ~missing.any(axis=0)
        if (r0, r1, c0, c1) == (0, grid.height, 0, grid.width):
            return block, ok
        data = np.zeros((n_out, grid.height, grid.width), dtype=np.float32)
        valid = np.zeros((grid.height, grid.width), dtype=bool)
        data[:, r0:r1, c0:c1] = block
        valid[r0:r1, c0:c1] = ok
        return data, valid
