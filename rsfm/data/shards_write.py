"""The writing side of ``rsfm data chip``: inputs, window plans, the LitData worker, the finish.

Each scene is read through :class:`~rsfm.data.raster.SensorRasterDataset` (band mapping, nodata,
NaN checks and label reading stay the data layer's own) in block-aligned groups of windows, cut
into ``size`` x ``size`` chips on a ``stride`` grid anchored at the scene's first pixel and
filtered by their nodata fraction; :class:`SceneChipper` is the ``fn`` that
:func:`litdata.optimize` runs in its workers; :func:`_finish` writes ``index.json``,
``band_stats.json`` and ``manifest.json`` from the scenes' journal records. The driver (one
``optimize`` run per scene, resume, CLI) is :mod:`rsfm.data.shards`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
import torch
from rasterio.crs import CRS

import rsfm
from rsfm.band_stats import BandStats
from rsfm.data.errors import RasterError
from rsfm.data.grid import find_rasters
from rsfm.data.raster import SensorRasterDataset, _open
from rsfm.sensors import Sensor

WORK_DIR = ".rsfm-chip"
INDEX = "index.json"
MANIFEST = "manifest.json"
BAND_STATS = "band_stats.json"
FORMAT = "rsfm-chip-shards"
FORMAT_VERSION = 1
GROUP_WIDTH_PX = 2048  # columns read at once (rounded up to whole blocks)
LOSSLESS_DTYPES = ("uint8", "int8", "uint16", "int16")  # exact through the float32 read
_TIME_TAGS = (
    "acquisition_datetime",
    "acquisition_time",
    "acquisition_date",
    "datetime",
    "sensing_time",
    "date_acquired",
    "start_datetime",
)


class ChipError(RuntimeError):
    """Chipping a scene failed (in a LitData worker); the message names the scene."""


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)  # atomic: a reader (or a resumed run) never sees half a file


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sensor_key(sensor: str | Sensor | None) -> Any:
    return sensor.to_dict() if isinstance(sensor, Sensor) else sensor


@dataclass
class _Options:
    size: int
    stride: int
    edge: str
    max_nodata: float
    sensor: Any
    pair_sensor: Any
    nonfinite: str
    chunk_bytes: int | str
    compression: str | None
    percentiles: tuple[float, float]
    stats_max_pixels: int
    stats_pixels_per_chip: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["sensor"], data["pair_sensor"] = (
            _sensor_key(self.sensor),
            _sensor_key(self.pair_sensor),
        )
        data["percentiles"] = list(self.percentiles)
        return data


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class SceneInput:
    """One scene to chip (what :func:`chip_scenes` accepts besides plain paths).

    Any object with a ``path`` (and optionally ``sensor``, ``datetime``, ``label``, ``pair``)
    works the same, e.g. the records of ``rsfm.data.inputs.resolve_inputs``.
    """

    path: str
    sensor: str | Sensor | None = None
    datetime: str | None = None
    label: str | None = None
    pair: str | None = None


def _expand(item: str | os.PathLike[str]) -> list[str]:
    """A file, a directory (searched for ``*.tif``) or a glob, as sorted file paths."""
    text = os.fspath(item)
    if any(ch in text for ch in "*?["):
        found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(f"{text}: no file matches")
        return found
    return [str(p) for p in find_rasters(text)]


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def expand_inputs(inputs: Iterable[Any]) -> list[SceneInput]:
    """Paths, directories, globs and objects with a ``.path`` as :class:`SceneInput` s, sorted
    by path (the order of the arguments does not change the output), duplicates dropped."""
    if isinstance(inputs, str | os.PathLike) or hasattr(inputs, "path"):
        inputs = [inputs]
    scenes: dict[str, SceneInput] = {}
    for item in inputs:
        if isinstance(item, str | os.PathLike):
            for path in _expand(item):
                scenes.setdefault(os.path.abspath(path), SceneInput(os.path.abspath(path)))
            continue
        path = os.fspath(item.path)
        path = path if "://" in path or path.startswith("/vsi") else os.path.abspath(path)
        label, pair = getattr(item, "label", None), getattr(item, "pair", None)
        scenes.setdefault(
            path,
            SceneInput(
                path,
                sensor=getattr(item, "sensor", None),
                datetime=_iso(getattr(item, "datetime", None)),
                label=None if label is None else os.path.abspath(os.fspath(label)),
                pair=None if pair is None else os.path.abspath(os.fspath(pair)),
            ),
        )
    if not scenes:
        raise FileNotFoundError("no input scene given")
    return [scenes[p] for p in sorted(scenes)]


def _companions(spec: Any) -> list[str]:
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    return sorted({os.path.abspath(p) for item in items for p in _expand(item)})


@dataclass(frozen=True)
class _Grid:
    crs: str
    transform: tuple[float, ...]
    width: int
    height: int

    def same(self, other: _Grid) -> bool:
        close = np.allclose(
            self.transform, other.transform, rtol=0, atol=1e-6 * abs(self.transform[0])
        )
        size = (self.width, self.height) == (other.width, other.height)
        return size and close and CRS.from_wkt(self.crs) == CRS.from_wkt(other.crs)


def _grid_of(path: str) -> _Grid:
    with _open(path) as src:
        if src.crs is None:
            raise RasterError(path, "the raster has no CRS (coordinate reference system)")
        return _Grid(src.crs.to_wkt(), tuple(src.transform)[:6], src.width, src.height)


def _name_score(scene: str, candidate: str) -> int:
    """2: same stem; 1: the candidate's stem is the scene's plus ``_``/``-``/``.`` and more."""
    s, c = Path(scene).stem, Path(candidate).stem
    if c == s:
        return 2
    return int(c.startswith(s) and len(c) > len(s) and c[len(s)] in "_-.")


def match_companions(
    scenes: Sequence[str], candidates: Sequence[str], role: str
) -> list[str | None]:
    """The ``role`` raster (label, pair) of each scene among ``candidates``.

    A candidate qualifies by name (same stem, or the scene's stem followed by ``_``, ``-`` or
    ``.``: ``t1.tif`` -> ``t1_label.tif``) or by lying on the scene's exact grid (same CRS,
    transform and size: ``tile_s2.tif`` <-> ``tile_s1.tif``). The best by (name, grid, shorter
    stem) wins; a tie is an error naming both. A candidate may serve several scenes (one label
    map for a time series). Scenes with no candidate get None.
    """
    if not candidates:
        return [None] * len(scenes)
    grids = {c: _grid_of(c) for c in candidates}
    found: list[str | None] = []
    for scene in scenes:
        grid = _grid_of(scene)
        ranked = []
        for cand in candidates:
            name, on_grid = _name_score(scene, cand), grid.same(grids[cand])
            if name or on_grid:
                ranked.append(((name, int(on_grid), -len(Path(cand).stem)), cand))
        ranked.sort(key=lambda r: r[0], reverse=True)
        if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
            raise RasterError(
                scene,
                f"two {role} rasters fit this scene equally well: {ranked[0][1]} and "
                f"{ranked[1][1]}; name the {role} <scene stem>_{role}.tif",
            )
        found.append(ranked[0][1] if ranked else None)
    return found


# ----------------------------------------------------------------------------- planning
def window_starts(length: int, size: int, stride: int, edge: str = "snap") -> list[int]:
    """Offsets of ``size`` windows every ``stride`` px from 0; ``edge="snap"`` adds one flush
    with the far edge when the grid leaves a strip uncovered, ``"drop"`` leaves it."""
    if length < size:
        return []
    starts = list(range(0, length - size + 1, stride))
    if edge == "snap" and starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _group(starts: list[int], unit: int) -> list[tuple[int, ...]]:
    groups: dict[int, list[int]] = {}
    for s in starts:
        groups.setdefault(s // unit, []).append(s)
    return [tuple(v) for _, v in sorted(groups.items())]


def read_groups(
    height: int, width: int, block: tuple[int, int], size: int, stride: int, edge: str
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Windows grouped into block-aligned reads: (row offsets, column offsets) per read.

    A tiled file is read in bands of whole block rows at least ``stride`` tall and about
    :data:`GROUP_WIDTH_PX` wide (whole blocks), so each block is decoded about once; a striped
    file one chip row at a time.
    """
    rows, cols = window_starts(height, size, stride, edge), window_starts(width, size, stride, edge)
    tiled = block[1] < width
    by, bx = block if tiled else (1, 1)
    unit_y = by * math.ceil(stride / by)
    unit_x = bx * math.ceil(max(stride, GROUP_WIDTH_PX) / bx)
    return [(r, c) for r in _group(rows, unit_y) for c in _group(cols, unit_x)]


def _file_time(path: str) -> str | None:
    """Acquisition time from the file's tags (never TIFFTAG_DATETIME: that is file creation)."""
    with _open(path) as src:
        tags = {k.lower(): v for k, v in src.tags().items()}
    for key in _TIME_TAGS:
        if tags.get(key):
            return tags[key]
    return None


def _crs_string(crs: CRS) -> str:
    """``EPSG:<code>`` when that code is exactly the CRS, else its WKT."""
    code = crs.to_epsg()
    if code is not None and CRS.from_epsg(code) == crs:
        return f"EPSG:{code}"
    return crs.to_wkt()


def _fingerprint(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:  # a GDAL path: no local stat
        return {"path": path}
    return {"path": path, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class ScenePlan:
    """How one scene is cut (picklable: it travels to LitData's workers)."""

    ordinal: int
    path: str
    sensor: str | Sensor | None
    label: str | None
    pair: str | None
    time: str
    pair_time: str
    height: int
    width: int
    block: tuple[int, int]
    dtype: str
    crs: str
    transform: tuple[float, ...]
    groups: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def windows(self) -> int:
        return sum(len(r) * len(c) for r, c in self.groups)

    @property
    def key(self) -> str:
        return f"{self.ordinal:06d}"


def _plan_scene(
    ordinal: int, scene: SceneInput, sensor: Any, size: int, stride: int, edge: str
) -> ScenePlan:
    with _open(scene.path) as src:
        if src.crs is None:
            raise RasterError(scene.path, "the raster has no CRS (coordinate reference system)")
        t = src.transform
        if t.b != 0 or t.d != 0 or t.e >= 0:
            raise RasterError(
                scene.path,
                f"the grid is rotated or south-up ({tuple(t)[:6]}); chips need a north-up grid "
                "(gdalwarp it first)",
            )
        block = tuple(src.block_shapes[0])
        height, width, dtype, crs = src.height, src.width, src.dtypes[0], src.crs
    pair_time = ""
    if scene.pair is not None:
        main, other = _grid_of(scene.path), _grid_of(scene.pair)
        if not main.same(other):
            raise RasterError(
                scene.pair,
                f"not on the grid of its scene {scene.path} (size {other.width}x{other.height} "
                f"vs {main.width}x{main.height}, transform {other.transform} vs "
                f"{main.transform}); a pair must be co-registered on the same grid",
            )
        pair_time = _file_time(scene.pair) or ""
    return ScenePlan(
        ordinal=ordinal,
        path=scene.path,
        sensor=scene.sensor if scene.sensor is not None else sensor,
        label=scene.label,
        pair=scene.pair,
        time=scene.datetime or _file_time(scene.path) or "",
        pair_time=pair_time,
        height=height,
        width=width,
        block=(int(block[0]), int(block[1])),
        dtype=str(dtype),
        crs=_crs_string(crs),
        transform=tuple(t)[:6],
        groups=read_groups(height, width, (int(block[0]), int(block[1])), size, stride, edge),
    )


# ----------------------------------------------------------------------------- the worker
BASE_KEYS = (
    "image", "valid", "wavelengths", "gsd", "sensor", "crs", "bounds", "transform", "time",
    "source", "window",
)  # fmt: skip
MASK_KEYS = ("mask", "label_source")
PAIR_KEYS = (
    "pair_image", "pair_valid", "pair_wavelengths", "pair_gsd", "pair_sensor", "pair_time",
    "pair_source",
)  # fmt: skip


def sample_keys(with_mask: bool, with_pair: bool) -> list[str]:
    """The keys of every stored chip of a run."""
    return [*BASE_KEYS, *(MASK_KEYS if with_mask else ()), *(PAIR_KEYS if with_pair else ())]


def _query(transform: tuple[float, ...], r0: int, r1: int, c0: int, c1: int) -> tuple:
    a, _, c, _, e, f = transform
    left, right = c + c0 * a, c + c1 * a
    top, bottom = f + r0 * e, f + r1 * e
    return (slice(left, right, a), slice(bottom, top, -e))


def _text(value: str) -> bytes:
    """Strings are stored as UTF-8 bytes: LitData serialises a str naming an existing file
    (a scene path, or a sensor name that happens to be a file in the working directory) as
    that file's content."""
    return value.encode("utf-8")


def _mask_dtype(mask: np.ndarray) -> np.ndarray:
    info = np.iinfo(np.int16)
    if mask.size and info.min <= mask.min() and mask.max() <= info.max:
        return mask.astype(np.int16)
    return mask


class SceneChipper:
    """The LitData ``fn`` of one scene: an item (a block-aligned group of windows) -> chips.

    Each item also leaves ``<items_dir>/<group>.npz``: its counts and the pixels it adds to the
    band statistics (gathered by the main process when the scene's run ends).
    """

    def __init__(
        self,
        plan: ScenePlan,
        size: int,
        max_nodata: float,
        nonfinite: str,
        pair_sensor: Any,
        pixels_per_chip: int,
        seed: int,
        items_dir: str,
        with_mask: bool = False,
    ) -> None:
        self.plan = plan
        self.size = size
        self.max_nodata = max_nodata
        self.pixels_per_chip = pixels_per_chip
        self.seed = seed
        self.items_dir = items_dir
        label = [plan.label] if plan.label else None
        self.dataset = SensorRasterDataset(
            plan.path, sensor=plan.sensor, label_paths=label, skip_empty=True, nonfinite=nonfinite
        )
        self.pair_dataset = None
        if plan.pair is not None:
            self.pair_dataset = SensorRasterDataset(
                plan.pair, sensor=pair_sensor, skip_empty=True, nonfinite=nonfinite
            )
        self.store_dtype = np.dtype(plan.dtype if plan.dtype in LOSSLESS_DTYPES else "float32")
        self.with_mask = with_mask or label is not None  # every chip of a run has one layout

    @property
    def sensor(self) -> str:
        return self.dataset.sensor.name

    @property
    def pair_sensor(self) -> str | None:
        return None if self.pair_dataset is None else self.pair_dataset.sensor.name

    def _read(self, dataset: SensorRasterDataset, r0: int, r1: int, c0: int, c1: int) -> dict:
        sample = dataset.read(_query(self.plan.transform, r0, r1, c0, c1), normalize=False)
        if sample is None:  # the whole group is nodata
            n = len(dataset.sensor)
            sample = {
                "image": torch.zeros(n, r1 - r0, c1 - c0),
                "valid": torch.zeros(r1 - r0, c1 - c0, dtype=torch.bool),
            }
        return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in sample.items()}

    def _pixels(self, image: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        values = image[:, valid]
        if values.shape[1] > self.pixels_per_chip:
            keep = np.sort(rng.choice(values.shape[1], self.pixels_per_chip, replace=False))
            values = values[:, keep]
        return values.astype(np.float32)

    def __call__(self, item: tuple[int, tuple[int, ...], tuple[int, ...]]) -> Iterator[dict]:
        group, rows, cols = item
        plan, size = self.plan, self.size
        r0, r1, c0, c1 = rows[0], rows[-1] + size, cols[0], cols[-1] + size
        main = self._read(self.dataset, r0, r1, c0, c1)
        pair = self._read(self.pair_dataset, r0, r1, c0, c1) if self.pair_dataset else None
        counts = {"windows": len(rows) * len(cols), "chips": 0, "nodata": 0, "pair_nodata": 0}
        pixels: dict[str, list[np.ndarray]] = {"image": [], "pair": []}
        transform = rasterio.Affine(*plan.transform)
        for row in rows:
            for col in cols:
                cut = (slice(row - r0, row - r0 + size), slice(col - c0, col - c0 + size))
                valid = main["valid"][cut]
                if 1.0 - valid.mean() > self.max_nodata or not valid.any():
                    counts["nodata"] += 1
                    continue
                if pair is not None:
                    pair_valid = pair["valid"][cut]
                    if 1.0 - pair_valid.mean() > self.max_nodata or not pair_valid.any():
                        counts["pair_nodata"] += 1
                        continue
                window = rasterio.windows.Window(col, row, size, size)
                image = main["image"][(slice(None), *cut)]
                rng = np.random.default_rng([self.seed, plan.ordinal, row, col])
                pixels["image"].append(self._pixels(image, valid, rng))
                chip = {
                    "image": np.ascontiguousarray(image.astype(self.store_dtype)),
                    "valid": np.ascontiguousarray(valid),
                    "wavelengths": np.asarray(main["wavelengths"], dtype=np.float32),
                    "gsd": float(main["gsd"]),
                    "sensor": _text(self.sensor),
                    "crs": _text(plan.crs),
                    "bounds": np.array(rasterio.windows.bounds(window, transform), np.float64),
                    "transform": np.array(
                        tuple(rasterio.windows.transform(window, transform))[:6], np.float64
                    ),
                    "time": _text(plan.time),
                    "source": _text(plan.path),
                    "window": np.array([col, row, size, size], np.int64),
                }
                if self.with_mask:  # -1 (unlabelled) where the scene has no label raster
                    mask = main["mask"][cut] if "mask" in main else np.full((size, size), -1)
                    chip["mask"] = np.ascontiguousarray(_mask_dtype(mask))
                    chip["label_source"] = _text(plan.label or "")
                if pair is not None:
                    pair_image = pair["image"][(slice(None), *cut)]
                    pixels["pair"].append(self._pixels(pair_image, pair_valid, rng))
                    chip["pair_image"] = np.ascontiguousarray(pair_image.astype(np.float32))
                    chip["pair_valid"] = np.ascontiguousarray(pair_valid)
                    chip["pair_wavelengths"] = np.asarray(pair["wavelengths"], dtype=np.float32)
                    chip["pair_gsd"] = float(pair["gsd"])
                    chip["pair_sensor"] = _text(self.pair_sensor)
                    chip["pair_time"] = _text(plan.pair_time)
                    chip["pair_source"] = _text(plan.pair)
                counts["chips"] += 1
                yield chip
        self._report(group, counts, pixels)

    def _report(self, group: int, counts: dict[str, int], pixels: dict) -> None:
        arrays = {f"count_{k}": np.int64(v) for k, v in counts.items()}
        n_bands = {"image": len(self.dataset.sensor)}
        if self.pair_dataset is not None:
            n_bands["pair"] = len(self.pair_dataset.sensor)
        for role, n in n_bands.items():
            parts = pixels[role]
            arrays[role] = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.float32)
        tmp = os.path.join(self.items_dir, f"{group:06d}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, os.path.join(self.items_dir, f"{group:06d}.npz"))


# ----------------------------------------------------------------------------- finishing
def _band_stats(records: list[dict[str, Any]], work: Path, opts: _Options) -> dict[str, BandStats]:
    """Per sensor: clip percentiles, then mean / std of the clipped pixels (as rsfm.data.stats)."""
    values: dict[str, list[np.ndarray]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for record in records:
        if not record["chips"]:
            continue
        with np.load(work / "scenes" / f"{record['ordinal']:06d}.npz") as arrays:
            for role, sensor in record["sensors"].items():
                name = sensor["name"]
                if name in facts and facts[name]["wavelengths"] != sensor["wavelengths"]:
                    raise RasterError(
                        record["source"],
                        f"sensor {name!r} has wavelengths {sensor['wavelengths']} here but "
                        f"{facts[name]['wavelengths']} in another scene; name them apart",
                    )
                facts[name] = sensor
                if role in arrays:
                    values.setdefault(name, []).append(arrays[role])
    stats = {}
    rng = np.random.default_rng(opts.seed)
    for name, parts in values.items():
        pixels = np.concatenate(parts, axis=1).astype(np.float64)
        if pixels.shape[1] == 0:
            continue
        if pixels.shape[1] > opts.stats_max_pixels:
            keep = np.sort(rng.choice(pixels.shape[1], opts.stats_max_pixels, replace=False))
            pixels = pixels[:, keep]
        low, high = np.percentile(pixels, opts.percentiles, axis=1)
        clipped = np.clip(pixels, low[:, None], high[:, None])
        stats[name] = BandStats(
            band_names=facts[name]["band_names"],
            wavelengths=facts[name]["wavelengths"],
            low=low.tolist(),
            high=high.tolist(),
            mean=clipped.mean(axis=1).tolist(),
            std=clipped.std(axis=1).tolist(),
            percentiles=opts.percentiles,
            sensor=name,
            n_pixels=int(pixels.shape[1]),
        )
    return stats


def _merged_index(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One LitData index over every scene's chunks (their sample layout must agree)."""
    config, first, chunks = None, None, []
    for record in records:
        if not record["chunks"]:
            continue
        mine = {k: record["config"].get(k) for k in ("data_format", "data_spec", "compression")}
        if config is None:
            config, first = record["config"], record
        elif mine != {k: config.get(k) for k in mine}:
            raise ChipError(
                f"{record['source']}: its chips are laid out differently from those of "
                f"{first['source']} ({mine['data_format']} vs {config['data_format']}); chip "
                "scenes of different kinds into different folders"
            )
        chunks.extend(record["chunks"])
    return {"chunks": chunks, "config": config}


def _finish(
    out: Path, work: Path, plans: list[ScenePlan], opts: _Options, plan_digest: str
) -> dict[str, Any]:
    records = [json.loads((work / "scenes" / f"{p.key}.json").read_text()) for p in plans]
    index = _merged_index(records)
    chips = sum(r["chips"] for r in records)
    skipped = {k: sum(r["skipped"][k] for r in records) for k in ("nodata", "pair_nodata")}
    if not chips:
        raise ChipError(
            f"{out}: no chip to write: {len(plans)} scene(s), {sum(r['windows'] for r in records)}"
            f" window(s), skipped {skipped} (more than --max-nodata {opts.max_nodata} nodata); "
            "nothing written"
        )
    referenced = {c["filename"] for c in index["chunks"]}
    for path in out.glob("chunk-*"):
        if path.name not in referenced:  # left by a run killed between a scene's renames
            path.unlink()
    files = {
        name: {"sha256": _sha256(out / name), "bytes": (out / name).stat().st_size}
        for name in sorted(referenced)
    }
    # updated_at keys LitData's cache of remote copies: a digest of the content, not a clock.
    index["updated_at"] = hashlib.sha256(
        "".join(files[n]["sha256"] for n in sorted(files)).encode()
    ).hexdigest()[:16]
    _write_json(out / INDEX, index)
    stats = _band_stats(records, work, opts)
    _write_json(out / BAND_STATS, {name: s.to_dict() for name, s in sorted(stats.items())})
    for name in (INDEX, BAND_STATS):
        files[name] = {"sha256": _sha256(out / name), "bytes": (out / name).stat().st_size}
    import litdata

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rsfm_version": rsfm.__version__,
        "litdata_version": litdata.__version__,
        "plan_sha256": plan_digest,
        "options": opts.to_dict(),
        "counts": {
            "scenes": len(plans),
            "scenes_with_chips": sum(1 for r in records if r["chips"]),
            "scenes_smaller_than_a_chip": sum(1 for r in records if not r["windows"]),
            "windows": sum(r["windows"] for r in records),
            "chips": chips,
            "skipped": skipped,
        },
        "sensors": {
            name: sum(
                r["chips"] for r in records if r["sensors"].get("image", {}).get("name") == name
            )
            for name in sorted({r["sensors"]["image"]["name"] for r in records if r["sensors"]})
        },
        "sample_keys": sample_keys(
            any(r["label"] for r in records), any(r["pair"] for r in records)
        ),
        "scenes": [
            {
                k: r[k]
                for k in (
                    "source",
                    "label",
                    "pair",
                    "time",
                    "layout",
                    "windows",
                    "chips",
                    "skipped",
                )
            }
            | {
                "sensor": r["sensors"].get("image", {}).get("name"),
                "chunks": [c["filename"] for c in r["chunks"]],
            }
            for r in records
        ],
        "files": files,
        "finished_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    _write_json(out / MANIFEST, manifest)
    return manifest
