"""Atomic, resumable GeoTIFF/COG output for streaming inference.

Rows arrive top to bottom. They are buffered until a full block row of the *work file* is
complete, then written once into ``<output>.partial.tif`` (a tiled, sparse, ZSTD-level-1
GeoTIFF beside the output) which is closed after every block row; a JSON journal
``<output>.partial.json`` then records how many rows are durable and a CRC-32 of each block row.
Closing after each block row keeps the work file a valid GeoTIFF at every journal update, so a
run killed at any point (exception, Ctrl-C, SIGTERM, SIGKILL) can resume.

At the end the work file is copied by GDAL's ``COG`` driver (or ``GTiff``, tiled) into
``<output>.tmp`` with the requested compression, then renamed onto the output. Because the final
file is always produced by the same single copy from the same pixels, a resumed run's output is
bit-identical to an uninterrupted run's. A journal whose parameters differ from the current run's
(or whose work file is missing, unreadable or fails its CRC check) is discarded and the run
starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

JOURNAL_VERSION = 1
WORK_BLOCK = 256  # columns per block of the work file; rows per block = ``checkpoint_rows``


def params_digest(params: dict[str, Any]) -> str:
    """SHA-256 of a JSON-serialisable parameter dict (keys sorted)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _params_difference(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """Which run parameters differ between a journal and this run, in words."""
    current = json.loads(json.dumps(current, default=str))  # the journal's JSON form
    if previous.get("resume_key") != current.get("resume_key"):
        return (
            f"it was written by {previous.get('resume_key') or 'an unnamed model'}, this run "
            f"uses {current.get('resume_key') or 'an unnamed model'}"
        )
    keys = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    return f"it was written with other options ({', '.join(keys) or 'format'})"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` via a fsynced temp file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class ResumableGeoTiffWriter:
    """Writes output rows in order into a work file, then finalises atomically.

    Args:
        output_path: Final GeoTIFF path.
        profile: rasterio profile of the output (``width``, ``height``, ``count``, ``dtype``,
            ``crs``, ``transform``, ``nodata``); tiling/compression keys are set here.
        params: The run's parameters; their digest ties the journal to this run.
        descriptions: Band descriptions of the output.
        tags: Dataset tags of the output.
        compress: Compression of the final file (GDAL name, e.g. ``"deflate"``, ``"zstd"``).
        cog: Finalise with GDAL's COG driver (else a tiled GTiff copy).
        block_size: Block side of the final file (256 or 512 are COG-friendly).
        overviews: Build internal overviews in the final file.
        overview_resampling: Resampling of the overviews (``"nearest"`` for classes).
        resume: Reuse a matching journal; False always starts over.
        checkpoint_rows: Output rows per work-file block row and journal update (multiple of
            16); also the size of the row buffer, so memory grows with it.
    """

    def __init__(
        self,
        output_path: str | os.PathLike[str],
        profile: dict[str, Any],
        params: dict[str, Any],
        *,
        descriptions: list[str] | None = None,
        tags: dict[str, str] | None = None,
        compress: str = "deflate",
        cog: bool = True,
        block_size: int = 512,
        overviews: bool = False,
        overview_resampling: str = "average",
        resume: bool = True,
        checkpoint_rows: int = 256,
    ) -> None:
        if checkpoint_rows <= 0 or checkpoint_rows % 16:
            raise ValueError(
                f"checkpoint_rows must be a positive multiple of 16, got {checkpoint_rows}"
            )
        self.block_rows = int(checkpoint_rows)
        self.output_path = Path(output_path)
        self.work_path = self.output_path.with_name(self.output_path.name + ".partial.tif")
        self.journal_path = self.output_path.with_name(self.output_path.name + ".partial.json")
        self.final_tmp = self.output_path.with_name(self.output_path.name + ".tmp")
        self.height, self.width = int(profile["height"]), int(profile["width"])
        self.count, self.dtype = int(profile["count"]), np.dtype(profile["dtype"])
        self.profile = {
            **profile,
            "driver": "GTiff",
            "tiled": True,
            "blockxsize": WORK_BLOCK,
            "blockysize": self.block_rows,
            "compress": "zstd",
            "zstd_level": 1,
            "sparse_ok": True,
            "bigtiff": "if_safer",
        }
        self.descriptions, self.tags = descriptions, tags or {}
        self.final_options = {
            "compress": compress,
            "blocksize" if cog else "blockxsize": block_size,
            **({} if cog else {"blockysize": block_size, "tiled": True}),
            "predictor": "yes" if cog else (3 if self.dtype.kind == "f" else 2),
            "bigtiff": "if_safer",
            "num_threads": "all_cpus",
        }
        if cog:
            self.final_options["overviews"] = "auto" if overviews else "none"
            self.final_options["resampling"] = overview_resampling
        self.cog, self.build_overviews, self.block_size = cog, overviews, block_size
        self.overview_resampling = overview_resampling
        self.params = {
            **params,
            "output_profile": _json_profile(profile),
            "checkpoint_rows": self.block_rows,
        }
        self.digest = params_digest(self.params)
        self.resume = resume
        self.rows_done = 0
        self.block_crcs: list[int] = []
        # Why an existing journal was not resumed (None: there was none, or it was resumed).
        self.restart_reason: str | None = None
        self._pending = np.empty((self.count, self.block_rows, self.width), dtype=self.dtype)
        self._pending_rows = 0

    # ------------------------------------------------------------------ start

    def open(self) -> int:
        """Resume from a matching journal or create a fresh work file.

        Returns:
            Output rows already durable (0 for a fresh start).
        """
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume and self._load_journal():
            return self.rows_done
        _remove(self.work_path, self.journal_path, self.final_tmp)
        with rasterio.open(self.work_path, "w", **self.profile) as dst:
            if self.descriptions:
                dst.descriptions = tuple(self.descriptions)
            if self.tags:
                dst.update_tags(**self.tags)
        self.rows_done, self.block_crcs = 0, []
        self._save_journal()
        return 0

    def _load_journal(self) -> bool:
        """Adopt the journal when it belongs to this run and the work file checks out; else
        leave the reason in :attr:`restart_reason` (when there was a journal at all)."""
        try:
            journal = json.loads(self.journal_path.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            return self._refuse("its journal is unreadable")
        if journal.get("version") != JOURNAL_VERSION:
            return self._refuse(f"its journal has format {journal.get('version')}")
        if journal.get("digest") != self.digest:
            return self._refuse(_params_difference(journal.get("params") or {}, self.params))
        crcs, rows_done = list(journal.get("block_crc32", [])), int(journal.get("rows_done", 0))
        damaged = "its work file no longer matches the journal"
        try:
            with rasterio.open(self.work_path) as src:
                if (src.height, src.width, src.count) != (self.height, self.width, self.count):
                    return self._refuse(damaged)
                for index, expected in enumerate(crcs):
                    top = index * self.block_rows
                    rows = min(self.block_rows, rows_done - top)
                    block = src.read(window=Window(0, top, self.width, rows))
                    if zlib.crc32(np.ascontiguousarray(block).tobytes()) != expected:
                        return self._refuse(damaged)
        except RasterioError:
            return self._refuse(damaged)
        if rows_done != min(len(crcs) * self.block_rows, self.height):
            return self._refuse(damaged)
        self.rows_done, self.block_crcs = rows_done, crcs
        return True

    def _refuse(self, reason: str) -> bool:
        self.restart_reason = f"the partial run at {self.work_path} is not resumed: {reason}"
        return False

    def _save_journal(self) -> None:
        _write_json_atomic(
            self.journal_path,
            {
                "version": JOURNAL_VERSION,
                "digest": self.digest,
                "params": self.params,
                "rows_done": self.rows_done,
                "block_crc32": self.block_crcs,
                "work_file": self.work_path.name,
            },
        )

    # ------------------------------------------------------------------ rows

    def append(self, first_row: int, rows: np.ndarray) -> None:
        """Add output rows ``[first_row, first_row + n)`` (``rows``: ``[count, n, width]``).

        Rows already durable (a resumed run recomputes a little above them) are dropped.
        """
        expected = self.rows_done + self._pending_rows
        if first_row > expected:
            raise RuntimeError(
                f"rows must arrive in order: got row {first_row}, expected {expected}"
            )
        rows = rows[:, expected - first_row :]
        while rows.shape[1]:
            take = min(self.block_rows - self._pending_rows, rows.shape[1])
            self._pending[:, self._pending_rows : self._pending_rows + take] = rows[:, :take]
            self._pending_rows += take
            rows = rows[:, take:]
            full = self._pending_rows == self.block_rows
            if full or self.rows_done + self._pending_rows == self.height:
                self._write_pending()

    def _write_pending(self) -> None:
        """Write the buffered block row, close the work file, then journal it."""
        block = self._pending[:, : self._pending_rows]
        with rasterio.open(self.work_path, "r+") as dst:
            dst.write(block, window=Window(0, self.rows_done, self.width, self._pending_rows))
        self.block_crcs.append(zlib.crc32(np.ascontiguousarray(block).tobytes()))
        self.rows_done += self._pending_rows
        self._pending_rows = 0
        self._save_journal()

    # ------------------------------------------------------------------ end

    def finish(self) -> Path:
        """Copy the complete work file into the final format and rename it onto the output."""
        if self.rows_done + self._pending_rows != self.height:
            raise RuntimeError(
                f"{self.output_path}: only {self.rows_done + self._pending_rows} of "
                f"{self.height} rows were written"
            )
        if self._pending_rows:
            self._write_pending()
        _remove(self.final_tmp)
        driver = "COG" if self.cog else "GTiff"
        rasterio.shutil.copy(self.work_path, self.final_tmp, driver=driver, **self.final_options)
        factors: list[int] = []  # halvings until the smallest fits one block (COG's AUTO)
        while max(self.height, self.width) / 2 ** len(factors) > self.block_size:
            factors.append(2 ** (len(factors) + 1))
        if self.build_overviews and not self.cog and factors:
            with rasterio.open(self.final_tmp, "r+") as dst:
                dst.build_overviews(factors, Resampling[self.overview_resampling])
        os.replace(self.final_tmp, self.output_path)
        _remove(self.work_path, self.journal_path)
        return self.output_path

    def discard(self) -> None:
        """Remove the work file, journal and unfinished final copy (failed, non-resumable run)."""
        _remove(self.work_path, self.journal_path, self.final_tmp)


def _json_profile(profile: dict[str, Any]) -> dict[str, Any]:
    """The parts of a profile that define the output, as JSON-friendly values."""
    keys = ("width", "height", "count", "dtype", "nodata")
    out: dict[str, Any] = {k: str(profile.get(k)) for k in keys}
    out["crs"] = profile["crs"].to_string() if profile.get("crs") is not None else None
    out["transform"] = list(profile["transform"])[:6] if profile.get("transform") else None
    return out
