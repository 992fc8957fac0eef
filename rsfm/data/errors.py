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


class InputSourceError(RasterError):
    """An input named by a URL, a GDAL path or a STAC href cannot be used.

    ``str(err)`` starts with the name exactly as given (``RasterError`` would fold it into a
    ``Path``, turning ``https://`` into ``https:/``) and fits on one line.

    Attributes:
        source: The URL, GDAL path or STAC href as the user or the catalogue wrote it.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        problem = " ".join(str(problem).split())  # one line, whatever GDAL or a server said
        super().__init__(source, problem)
        self.source = str(source)
        self.args = (f"{self.source}: {problem}",)


class UnreadableInputError(InputSourceError, UnreadableRasterError):
    """An input cannot be opened as a raster (not found locally, not a raster, not fetched)."""


class UnreachableURLError(InputSourceError, UnreadableRasterError):
    """The server cannot be reached (connection refused, unknown host, timeout)."""


class HTTPStatusError(InputSourceError, UnreadableRasterError):
    """The server answered with an HTTP error (403 forbidden, 404 not found, ...).

    Attributes:
        status: The HTTP status code.
    """

    def __init__(self, source: str | Path, problem: str, status: int) -> None:
        self.status = status
        super().__init__(source, problem)


class MissingCredentialsError(InputSourceError, UnreadableRasterError):
    """An object store (s3://, gs://, az://) needs credentials that are not configured."""


class StacError(InputSourceError, UnreadableRasterError):
    """A STAC catalogue, item or search cannot be read or is not usable as an input."""


class MissingBandMetadataError(InputSourceError, BandMismatchError):
    """A STAC asset has no band metadata (no centre wavelength) and no sensor was given."""


class ItemMissingCRSError(InputSourceError, MissingCRSError):
    """A STAC item has no ``proj:`` CRS and its raster has none either."""


class InputBandMismatchError(InputSourceError, BandMismatchError):
    """A STAC item's assets do not fit the given sensor or each other (band count, CRS)."""
