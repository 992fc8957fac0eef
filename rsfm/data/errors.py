"""Errors raised by the data layer; every message names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class RasterError(ValueError):
    """A raster cannot be used as asked. ``str(err)`` starts with the file path.

    Attributes:
        path: The offending file.
        problem: What is wrong, in words.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingCRSError(RasterError):
    """The raster has no coordinate reference system."""


class UnreadableRasterError(RasterError):
    """The raster cannot be opened or a window cannot be decoded (corrupt / truncated)."""


class BandMismatchError(RasterError):
    """The raster's band count or wavelengths do not match the declared sensor or model."""


class NonFiniteError(RasterError):
    """The raster holds NaN or infinite values that are not its declared nodata."""


class EmptyWindowError(RasterError):
    """The requested window holds only nodata pixels."""


class EmptyRasterError(RasterError):
    """The whole raster holds only nodata pixels: nothing to train on."""
