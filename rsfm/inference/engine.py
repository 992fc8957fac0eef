"""Streaming tiled inference over a GeoTIFF with any dense ``predict_fn``.

Data flow (see ``docs/tiled_inference.md``)::

    reader thread ── windowed reads, nodata mask, normalise, batch ──▶ bounded queue
    main thread   ── predict_fn (+ flip TTA) × blend window ──▶ row band (output + weight)
                  ── rows no later tile can touch: divide, argmax, nodata ──▶ writer

Peak memory does not depend on the raster's height: the row band holds ``tile_size * scale``
output rows of the full output width, the queue ``read_ahead`` batches, the writer one block row.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from filelock import FileLock, Timeout
from rasterio.errors import RasterioIOError
from tqdm.auto import tqdm

from rsfm.data.errors import (
    BandMismatchError,
    EmptyRasterError,
    MissingCRSError,
    RasterError,
    UnreadableRasterError,
)
from rsfm.inference.reader import END_OF_STREAM, TileBatch, TileReader, auto_cache_mb
from rsfm.inference.tiling import BLEND_MODES, BlendWindows, RowBand, Tile, TileGrid
from rsfm.inference.writer import ResumableGeoTiffWriter

PredictFn = Callable[[torch.Tensor], torch.Tensor]
Normalize = Callable[[torch.Tensor], torch.Tensor]
OUTPUT_KINDS = ("probabilities", "classes", "values", "embeddings")
# Dataset tag of class and probability outputs: the class names (index order) as a JSON list.
CLASS_NAMES_TAG = "CLASS_NAMES"
_DESCRIPTION_PREFIX = {"probabilities": "class", "values": "value", "embeddings": "embedding"}
# Options that cannot change the output's pixels stay out of the resume journal's digest.
_NOT_IN_DIGEST = ("progress", "resume", "read_ahead", "gdal_cache_mb", "device")


class OutputIsInputError(RasterError):
    """The output path is the input raster (same path, a symlink or a hard link to it)."""


class OutputPathError(RasterError):
    """The output cannot be written there (a directory, or a folder without write access)."""


class OutputLockedError(RasterError):
    """Another tiled run is writing the same output right now."""


def output_lock_path(output_path: Path) -> Path:
    """The lock file of a tiled run's output, under the temp folder (nothing is left beside the
    output): ``rsfm-tile-locks/<sha256 of the resolved output path>.lock``."""
    key = hashlib.sha256(str(Path(output_path).resolve()).encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / "rsfm-tile-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.lock"


def check_output_path(input_path: Path, output_path: Path) -> None:
    """Raise before anything is read or computed when ``output_path`` cannot take the result.

    Raises:
        OutputIsInputError: If both paths resolve to one file (symlinks followed) or name the
            same inode (hard links): writing would destroy the input.
        OutputPathError: If the output is a directory, or its nearest existing folder is not
            writable.
    """
    same = output_path.resolve() == input_path.resolve()
    if not same and output_path.exists() and input_path.exists():
        same = os.path.samefile(input_path, output_path)
    if same:
        raise OutputIsInputError(
            output_path,
            f"is the input raster {input_path}; writing it would destroy the input: "
            "choose another output path",
        )
    if output_path.is_dir():
        raise OutputPathError(
            output_path, f"is a directory; give a file name, e.g. {output_path / 'map.tif'}"
        )
    folder = output_path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(
            output_path,
            f"cannot be written: {folder} is a file, not a folder; choose another folder",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(
            output_path, f"cannot be written: no write access to {folder}; choose another folder"
        )


@dataclass(frozen=True)
class TileOptions:
    """How :class:`TiledPredictor` tiles, blends and writes (see :func:`tile_raster`)."""

    tile_size: int = 256
    overlap: int = 64
    batch_size: int = 8
    scale: int = 1
    output: str = "probabilities"
    out_dtype: str | None = None
    nodata: float | None = None
    tta_flips: bool = False
    blend: str = "hann"
    margin: int = 0
    softmax: bool = False
    num_classes: int | None = None
    band_names: tuple[str, ...] | None = None
    resume: bool = True
    resume_key: str | None = None
    progress: bool = True
    read_ahead: int = 2
    compress: str = "deflate"
    cog: bool = True
    block_size: int = 512
    overviews: bool = False
    checkpoint_rows: int = 256
    gdal_cache_mb: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {BLEND_MODES}, got {self.blend!r}")
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"need 0 <= overlap < tile_size, got {self.overlap}, {self.tile_size}")
        if self.margin < 0 or (self.margin and 2 * self.margin >= self.overlap):
            raise ValueError(f"need 0 <= 2 * margin < overlap, got {self.margin}, {self.overlap}")
        if self.scale < 1 or self.batch_size < 1 or self.read_ahead < 1:
            raise ValueError("scale, batch_size and read_ahead must be >= 1")
        if self.output in ("probabilities", "classes") and self.num_classes is None:
            object.__setattr__(self, "num_classes", len(self.band_names or ()) or None)


@dataclass
class TileReport:
    """What a run did, for logs, tests and benchmarks."""

    output_path: str
    tiles_total: int = 0
    tiles_predicted: int = 0
    tiles_skipped_nodata: int = 0
    tiles_resumed: int = 0
    batches: int = 0
    resumed_from_row: int = 0
    max_buffered_rows: int = 0
    buffer_rows: int = 0
    seconds: float = 0.0
    seconds_predict: float = 0.0
    seconds_waiting: float = 0.0
    seconds_writing: float = 0.0
    tiles_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view."""
        return asdict(self)


class TiledPredictor:
    """Runs a dense ``predict_fn`` over a GeoTIFF tile by tile and writes a GeoTIFF/COG.

    Args:
        predict_fn: ``image [B, C, T, T] -> output [B, K, T*scale, T*scale]`` (any float dtype,
            on ``options.device``); probabilities for ``"classes"``/``"probabilities"`` (or logits
            with ``softmax=True``).
        options: Tiling, blending and output options.
        normalize: Called on CPU float32 ``[B, C, T, T]`` batches in the reader thread (with
            one torch thread, so it overlaps the model without competing for its cores) before
            ``predict_fn`` (e.g. ``partial(stats.normalize, wavelengths=w)``); nodata pixels
            are 0 before and after it.
        notice: Called with messages the user should see (e.g. why a partial run beside the
            output was not resumed); default: a :class:`UserWarning`.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        options: TileOptions | None = None,
        normalize: Normalize | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.predict_fn = predict_fn
        self.notice = notice or (lambda message: warnings.warn(message, stacklevel=3))
        self.options = options or TileOptions()
        self.normalize = normalize
        self.device = torch.device(self.options.device)
        self.last_report: TileReport | None = None
        # The tiles of the batch being predicted (one per image row), for predict_fns that read
        # other rasters in the tile's footprint (e.g. a super-resolution reference).
        self.current_tiles: list[Tile] | None = None

    # ------------------------------------------------------------------ public

    def run(
        self,
        input_path: str | os.PathLike[str],
        output_path: str | os.PathLike[str],
        bands: Sequence[int] | None = None,
    ) -> TileReport:
        """Tile ``input_path`` (1-based ``bands``, default all) into ``output_path``.

        Raises:
            UnreadableRasterError / MissingCRSError / BandMismatchError / NonFiniteError /
                EmptyRasterError (every pixel of the file nodata): Bad input (the message names
                the file). Nothing is left at ``output_path``, not even a partial run.
        """
        input_path, output_path = Path(input_path), Path(output_path)
        check_output_path(input_path, output_path)
        cache_mb = self.options.gdal_cache_mb
        if cache_mb is None:
            cache_mb = auto_cache_mb(input_path)
        # GDAL's block cache defaults to 5% of RAM and fills with every decoded block: cap it so
        # memory does not grow with the raster (rasterio restores the old cap on exit).
        lock = FileLock(output_lock_path(output_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputLockedError(
                output_path,
                f"another rsfm tile run is writing it (lock {output_lock_path(output_path)}); "
                "wait for it to finish or choose another output",
            ) from None
        try:
            with rasterio.Env(**({"GDAL_CACHEMAX": cache_mb * 2**20} if cache_mb > 0 else {})):
                return self._run(input_path, output_path, bands)
        finally:  # the (empty) lock file stays: deleting it would race with a waiting run
            lock.release()

    def _run(self, input_path: Path, output_path: Path, bands: Sequence[int] | None) -> TileReport:
        opts, started = self.options, time.perf_counter()
        meta = self._inspect(input_path, bands)
        grid = TileGrid(meta["height"], meta["width"], opts.tile_size, opts.overlap)
        channels = self._channels(meta, input_path)
        writer = self._make_writer(input_path, output_path, meta, channels)
        report = TileReport(str(output_path), tiles_total=len(grid))
        rows_done = writer.open()
        if writer.restart_reason:
            self.notice(f"{writer.restart_reason}; starting over")
        start_row = grid.first_row_reaching(rows_done // opts.scale)
        report.resumed_from_row = rows_done
        try:
            if start_row < grid.n_rows:
                self._stream(input_path, meta["bands"], grid, start_row, channels, writer, report)
            every_tile_empty = report.tiles_skipped_nodata == len(grid)
            if every_tile_empty and report.tiles_predicted == 0:
                from rsfm.inference.input_checks import nodata_share

                if nodata_share(input_path, meta["bands"]) >= 1.0:  # the file itself is empty
                    raise EmptyRasterError(
                        input_path,
                        "every pixel is nodata in the bands read: nothing to predict; check "
                        "the file's nodata value and the bands fed",
                    )
            writer.finish()
        except BaseException as err:
            # A bad input (unreadable block, NaN, all nodata) leaves nothing at the output: its
            # partial run is of no use. An interruption or a crash keeps it for resuming.
            if not opts.resume or isinstance(err, RasterError):
                writer.discard()
            raise
        if report.tiles_predicted == 0 and report.tiles_skipped_nodata == len(grid):
            warnings.warn(  # nodata only as fed (e.g. a band blank everywhere): the caller decides
                f"{input_path}: every tile is nodata; the output is all nodata", stacklevel=2
            )
        report.seconds = time.perf_counter() - started
        done = report.tiles_predicted + report.tiles_skipped_nodata
        report.tiles_per_second = done / max(report.seconds, 1e-9)
        self.last_report = report
        return report

    # ------------------------------------------------------------------ setup

    def _inspect(self, path: Path, bands: Sequence[int] | None) -> dict[str, Any]:
        """Header checks: readable, has a CRS, ``bands`` exist."""
        if not path.is_file():
            raise UnreadableRasterError(path, "no such file")
        try:
            with rasterio.open(path) as src:
                meta = {
                    "height": src.height,
                    "width": src.width,
                    "count": src.count,
                    "crs": src.crs,
                    "transform": src.transform,
                    "descriptions": src.descriptions,
                }
        except RasterioIOError as err:
            raise UnreadableRasterError(path, f"cannot open as a raster ({err})") from err
        if meta["crs"] is None:
            raise MissingCRSError(path, "the raster has no CRS (coordinate reference system)")
        selected = list(range(1, meta["count"] + 1)) if bands is None else [int(b) for b in bands]
        wrong = [b for b in selected if not 1 <= b <= meta["count"]]
        if wrong or not selected:
            raise BandMismatchError(
                path,
                f"bands {list(selected)} asked for (1-based), but the file has "
                f"{meta['count']} bands",
            )
        meta["bands"] = selected
        return meta

    def _channels(self, meta: dict[str, Any], path: Path) -> int:
        """Channels of ``predict_fn``'s output: declared, else learnt from one zero tile."""
        opts = self.options
        if opts.num_classes:
            return int(opts.num_classes)
        if opts.band_names:
            return len(opts.band_names)
        size = opts.tile_size
        probe = torch.zeros(1, len(meta["bands"]), size, size, device=self.device)
        with torch.inference_mode():
            return int(self._check_output(self.predict_fn(probe), probe, path).shape[1])

    def _make_writer(
        self, input_path: Path, output_path: Path, meta: dict[str, Any], channels: int
    ) -> ResumableGeoTiffWriter:
        opts = self.options
        is_classes = opts.output == "classes"
        dtype = np.dtype(
            opts.out_dtype
            or (("uint8" if channels <= 255 else "uint16") if is_classes else "float32")
        )
        nodata = opts.nodata
        if nodata is None:
            nodata = float("nan") if dtype.kind == "f" else float(np.iinfo(dtype).max)
        if is_classes and dtype.kind in "ui" and 0 <= nodata < channels:
            raise ValueError(f"nodata {nodata} collides with class indexes 0..{channels - 1}")
        self._dtype, self._nodata = dtype, nodata
        if is_classes:
            descriptions = ["class"]
        elif opts.band_names:
            descriptions = list(opts.band_names)
        else:
            descriptions = [f"{_DESCRIPTION_PREFIX[opts.output]}_{k}" for k in range(channels)]
        tags = {"rsfm_output": opts.output, "rsfm_scale": str(opts.scale)}
        if opts.output in ("classes", "probabilities") and opts.band_names:
            tags[CLASS_NAMES_TAG] = json.dumps(list(opts.band_names))  # exact, any characters
            tags["rsfm_class_names"] = ",".join(opts.band_names)
        profile = {
            "width": meta["width"] * opts.scale,
            "height": meta["height"] * opts.scale,
            "count": 1 if is_classes else channels,
            "dtype": dtype.name,
            "crs": meta["crs"],
            "transform": meta["transform"] @ Affine.scale(1.0 / opts.scale),
            "nodata": nodata,
        }
        stat = input_path.stat()
        params = {
            "input": str(input_path.resolve()),
            "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "bands": meta["bands"],
            "channels": channels,
            "descriptions": descriptions,
            **{k: v for k, v in asdict(opts).items() if k not in _NOT_IN_DIGEST},
        }
        return ResumableGeoTiffWriter(
            output_path,
            profile,
            params,
            descriptions=descriptions,
            tags=tags,
            compress=opts.compress,
            cog=opts.cog,
            block_size=opts.block_size,
            overviews=opts.overviews,
            overview_resampling="nearest" if is_classes else "average",
            resume=opts.resume,
            checkpoint_rows=opts.checkpoint_rows,
        )

    # ------------------------------------------------------------------ streaming

    def _stream(
        self,
        path: Path,
        bands: list[int],
        grid: TileGrid,
        start_row: int,
        channels: int,
        writer: ResumableGeoTiffWriter,
        report: TileReport,
    ) -> None:
        """Batches are fixed slices of the row-major tile list (``[k*B, (k+1)*B)``), so a resumed
        run, which restarts at the batch holding ``start_row``'s first tile, batches every tile
        exactly as an uninterrupted run does (same floats, bit for bit)."""
        opts, scale = self.options, self.options.scale
        start_tile = start_row * grid.n_cols // opts.batch_size * opts.batch_size
        report.tiles_resumed = start_tile
        windows = BlendWindows(grid, opts.blend, scale, opts.margin)
        row = start_tile // grid.n_cols  # the tile row being accumulated
        band = RowBand(channels, grid, scale, grid.row_starts[row])
        report.buffer_rows = band.capacity * scale
        batches: queue.Queue = queue.Queue(maxsize=opts.read_ahead)
        stop = threading.Event()
        reader = TileReader(
            path, bands, grid, start_tile, opts.batch_size, self.normalize, batches, stop
        )
        bar = tqdm(
            total=len(grid), initial=start_tile, unit="tile", desc=path.name,
            disable=not opts.progress, dynamic_ncols=True,
        )  # fmt: skip

        def close_rows_before(next_row: int) -> None:
            """Flush the rows that tile rows before ``next_row`` finished."""
            nonlocal row
            while row < next_row:
                written = time.perf_counter()
                until = grid.final_until(row)
                for first, rows in band.flush(until, self._finish_rows):
                    writer.append(first, rows)
                report.seconds_writing += time.perf_counter() - written
                row += 1

        reader.start()
        try:
            with torch.inference_mode():
                while True:
                    waited = time.perf_counter()
                    item = batches.get()
                    report.seconds_waiting += time.perf_counter() - waited
                    if item is END_OF_STREAM:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    outputs = self._predict_batch(item, path, report)
                    for tile, output, valid in zip(item.kept, outputs, item.valid, strict=True):
                        close_rows_before(tile.grid_row)
                        crop = output[:, : tile.height * scale, : tile.width * scale]
                        band.add(tile, crop, windows.window(tile), valid)
                    close_rows_before(item.tiles[-1].grid_row)  # rows of skipped tiles
                    report.tiles_skipped_nodata += len(item.tiles) - len(item.kept)
                    bar.update(len(item.tiles))
                close_rows_before(grid.n_rows)
        finally:
            stop.set()
            reader.join()
            bar.close()
            report.max_buffered_rows = band.max_rows

    def _predict_batch(self, item: TileBatch, path: Path, report: TileReport) -> np.ndarray:
        """Run the model (with TTA) on a batch; float32 ``[n, K, T*s, T*s]`` on the CPU."""
        if item.image is None:
            return np.empty((0,), dtype=np.float32)
        began = time.perf_counter()
        image = item.image.to(self.device, non_blocking=True)
        self.current_tiles = list(item.kept)
        try:
            output = self._forward(image, path).float().cpu().numpy()
        finally:
            self.current_tiles = None
        report.seconds_predict += time.perf_counter() - began
        report.batches += 1
        report.tiles_predicted += len(item.kept)
        return output

    def _forward(self, image: torch.Tensor, path: Path) -> torch.Tensor:
        """``predict_fn`` with optional softmax and flip TTA (mean of un-flipped outputs)."""
        flips: list[tuple[int, ...]] = [()]
        if self.options.tta_flips:
            flips += [(-1,), (-2,), (-2, -1)]
        total = None
        for dims in flips:
            batch = image.flip(dims) if dims else image
            output = self._check_output(self.predict_fn(batch), batch, path)
            if self.options.softmax:
                output = output.float().softmax(dim=1)
            output = output.flip(dims) if dims else output
            total = output if total is None else total + output
        return total / len(flips) if len(flips) > 1 else total

    def _check_output(self, output: torch.Tensor, image: torch.Tensor, path: Path) -> torch.Tensor:
        size = image.shape[-1] * self.options.scale
        if (
            output.ndim != 4
            or output.shape[0] != image.shape[0]
            or output.shape[-2:] != (size, size)
        ):
            raise ValueError(
                f"{path}: predict_fn returned shape {tuple(output.shape)} for input "
                f"{tuple(image.shape)}; expected [B, K, {size}, {size}] "
                f"(scale={self.options.scale})"
            )
        return output

    def _finish_rows(self, values: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Blended rows → output dtype: divide by weight (or argmax), nodata where invalid."""
        covered = valid & (weight > 0)
        if self.options.output == "classes":
            # argmax(values / weight) == argmax(values) because the weight is one positive scalar
            result = values.argmax(axis=0)[None].astype(self._dtype)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                result = values / weight
            if self._dtype.kind in "ui":
                info = np.iinfo(self._dtype)
                result = np.clip(np.rint(np.nan_to_num(result)), info.min, info.max)
            result = result.astype(self._dtype)
        result[:, ~covered] = self._nodata
        return result


def tile_raster(
    predict_fn: PredictFn,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    bands: Sequence[int] | None = None,
    tile_size: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    scale: int = 1,
    output: str = "probabilities",
    out_dtype: str | None = None,
    nodata: float | None = None,
    tta_flips: bool = False,
    blend: str = "hann",
    margin: int = 0,
    normalize: Normalize | None = None,
    softmax: bool = False,
    num_classes: int | None = None,
    band_names: Sequence[str] | None = None,
    resume: bool = True,
    resume_key: str | None = None,
    progress: bool = True,
    read_ahead: int = 2,
    compress: str = "deflate",
    cog: bool = True,
    block_size: int = 512,
    overviews: bool = False,
    checkpoint_rows: int = 256,
    gdal_cache_mb: int | None = None,
    device: str = "cpu",
    notice: Callable[[str], None] | None = None,
) -> Path:
    """Run ``predict_fn`` over a GeoTIFF in overlapping, blended tiles; write a GeoTIFF/COG.

    Args:
        predict_fn: ``[B, C, T, T] -> [B, K, T*scale, T*scale]`` dense predictions.
        input_path: Input GeoTIFF (must have a CRS).
        output_path: Output path; written atomically (temp file + rename).
        bands: 1-based band indexes to read (default: all, in file order).
        tile_size: Model input side T.
        overlap: Pixels shared by neighbouring tiles.
        batch_size: Tiles per forward pass (fixed slices of the row-major tile list).
        scale: Output pixels per input pixel (super-resolution); the transform is rescaled.
        output: ``"probabilities"``, ``"classes"`` (blended probabilities, argmax at flush),
            ``"values"`` or ``"embeddings"``.
        out_dtype: Output dtype (default float32; uint8/uint16 for classes).
        nodata: Output nodata (default NaN for float, dtype max for integers).
        tta_flips: Average over horizontal, vertical and both flips.
        blend: ``"hann"``, ``"cosine"`` or ``"none"`` (see :mod:`rsfm.inference.tiling`).
        margin: Pixels of each tile's interior sides given weight 0 (``2 * margin < overlap``).
        normalize: Applied to CPU float32 batches (reader thread) before ``predict_fn``.
        softmax: Apply softmax over channels to ``predict_fn``'s output (logits models).
        num_classes: Classes for ``"classes"``/``"probabilities"``.
        band_names: Output band names; for classes/probabilities the class names, written as
            the band descriptions (probabilities) and the ``CLASS_NAMES`` tag (a JSON list).
        resume: Resume from a matching journal beside the output; False starts over.
        resume_key: Any string identifying model + normalisation (e.g. a checkpoint hash);
            part of the journal digest so a different model never resumes another's run.
        progress: Show a tqdm bar (tiles/s).
        read_ahead: Batches read ahead by the background reader.
        compress: Final file compression (GDAL name).
        cog: Write a Cloud-Optimized GeoTIFF (GDAL COG driver); else a tiled GTiff.
        block_size: Final block side.
        overviews: Build internal overviews.
        checkpoint_rows: Output rows between journal checkpoints (multiple of 16).
        gdal_cache_mb: GDAL block-cache cap during the run (None: two input block rows across
            the width + 8 MB, at least 64 MB; 0: leave GDAL's own setting).
        device: Torch device the batches are moved to.
        notice: Called with messages for the user (default: a :class:`UserWarning`).

    Returns:
        ``output_path``.
    """
    options = TileOptions(
        tile_size=tile_size, overlap=overlap, batch_size=batch_size, scale=scale, output=output,
        out_dtype=out_dtype, nodata=nodata, tta_flips=tta_flips, blend=blend, margin=margin,
        softmax=softmax,
        num_classes=num_classes, band_names=tuple(band_names) if band_names else None,
        resume=resume, resume_key=resume_key, progress=progress, read_ahead=read_ahead,
        compress=compress, cog=cog, block_size=block_size, overviews=overviews,
        checkpoint_rows=checkpoint_rows, gdal_cache_mb=gdal_cache_mb, device=device,
    )  # fmt: skip
    TiledPredictor(predict_fn, options, normalize, notice).run(input_path, output_path, bands)
    return Path(output_path)


__all__ = [
    "OutputIsInputError",
    "OutputPathError",
    "TileOptions",
    "TileReport",
    "TiledPredictor",
    "check_output_path",
    "tile_raster",
]
