"""Remote rasters through GDAL's virtual file systems: paths, tuned options and clear errors.

rasterio opens ``http(s)://`` COGs through GDAL's ``/vsicurl/`` and object stores through
``/vsis3/``, ``/vsigs/`` and ``/vsiaz/``; this module only names those paths, sets GDAL's
network options for training-style access (many small windowed reads) and turns GDAL's and
urllib's failures into the data layer's one-line errors (see ``rsfm.data.errors``).
"""

from __future__ import annotations

import os
import re
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import rasterio
from rasterio.errors import RasterioIOError

from rsfm.data.errors import (
    HTTPStatusError,
    InputSourceError,
    MissingCredentialsError,
    UnreachableURLError,
    UnreadableInputError,
)

# URL scheme -> GDAL virtual file system prefix (the bucket/container stays in the path).
_VSI_PREFIXES = {
    "http": "/vsicurl/",
    "https": "/vsicurl/",
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
}
_NETWORK_VSI = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift")

# What /vsicurl/ may fetch (see GDAL_REMOTE_OPTIONS): raster extensions, and "{noext}" (GDAL's
# token for a URL path without extension, e.g. an API endpoint serving a COG). Sidecars all
# have other extensions. A URL outside the list needs the option widened; `explain_error` says.
RASTER_EXTENSIONS = (".tif", ".tiff", ".TIF", ".TIFF", ".vrt", ".jp2", ".JP2", "{noext}")

#: GDAL options for remote reads, each with why. Values are strings, as GDAL reads them.
GDAL_REMOTE_OPTIONS: dict[str, str] = {
    # Never list the "directory" of a remote file: a listing is a full GET of the folder URL
    # (or a paged bucket listing) before the first pixel. TRUE rather than EMPTY_DIR, because
    # EMPTY_DIR also hides *local* sidecars (.aux.xml band descriptions, .ovr) when these
    # options are set process-wide; with the extension list below TRUE makes the same 3
    # requests per remote open as EMPTY_DIR (GDAL's defaults: 23, measured on loopback).
    "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",
    # Only raster files exist remotely: no HEAD probes for .aux.xml, .aux, .msk, .xml, .ovr.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ",".join(RASTER_EXTENSIONS),
    # One request covers a COG's whole header (IFDs and tile offsets of most scenes) at open.
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    # Adjacent tiles of one window come back in one Range request instead of one per tile.
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    # HTTP/2 servers (S3, GCS, most CDNs) serve a window's tile requests on one connection.
    "GDAL_HTTP_MULTIPLEX": "YES",
    # Retry transient failures (GDAL's default codes 429, 500, 502, 503, 504 and dropped
    # connections; never 403/404) with exponential backoff: GDAL doubles the delay each try,
    # with jitter, so 0.5 s -> ~1 -> ~2 -> ~4 -> ~8 s, ~15 s in all before the error.
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    # A dead host fails in seconds rather than after the OS TCP timeout (minutes).
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "60",
    # Per-handle read-ahead cache, so small reads of one file reuse fetched bytes ...
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(16 * 2**20),
    # ... and /vsicurl/'s process-wide block cache, shared by every remote file (headers and
    # tiles of overlapping windows are fetched once).
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 2**20),
    # GDAL's decoded-block cache, in bytes (a number below 100000 would mean MB to GDAL but
    # bytes to rasterio.Env). Its default is 5 % of RAM per process: with 8 loader workers on
    # a 1 TB node that is 400 GB of potential cache; 256 MB per worker is plenty for windows.
    "GDAL_CACHEMAX": str(256 * 2**20),
}


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read over the network (a URL or a network GDAL file system)."""
    text = str(path)
    if urlsplit(text).scheme in _VSI_PREFIXES:
        return True
    return any(part in text for part in _NETWORK_VSI)


def gdal_path(href: str | os.PathLike[str]) -> str:
    """The path GDAL opens for ``href``.

    ``http(s)://host/a.tif`` -> ``/vsicurl/http(s)://host/a.tif``; ``s3://bucket/key`` ->
    ``/vsis3/bucket/key`` (likewise ``gs://`` -> ``/vsigs/``, ``az://`` -> ``/vsiaz/``);
    ``file:///x.tif`` -> ``/x.tif``; GDAL paths (``/vsi...``) and local paths unchanged.

    Raises:
        ValueError: For a URL scheme GDAL cannot read here (e.g. ``ftp://``).
    """
    text = str(href)
    parts = urlsplit(text)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return text
    if parts.scheme == "file":
        return parts.path
    prefix = _VSI_PREFIXES.get(parts.scheme)
    if prefix is None:
        raise ValueError(
            f"{text}: unsupported URL scheme {parts.scheme!r}; use http(s)://, s3://, gs://, "
            "az://, a local path or a GDAL /vsi... path"
        )
    if prefix == "/vsicurl/":
        return prefix + text
    return prefix + parts.netloc + parts.path


def gdal_options(**overrides: Any) -> dict[str, str]:
    """``GDAL_REMOTE_OPTIONS`` less what the environment already sets, plus ``overrides``.

    A variable the user exported (``GDAL_HTTP_MAX_RETRY=10 rsfm fit ...``) wins over the
    defaults here; ``overrides`` win over both.
    """
    options = {k: v for k, v in GDAL_REMOTE_OPTIONS.items() if k not in os.environ}
    options.update({k: str(v) for k, v in overrides.items()})
    return options


def gdal_env(**overrides: Any) -> rasterio.Env:
    """A ``rasterio.Env`` with the tuned remote options (see ``gdal_options``).

    Scoped to the ``with`` block and this process; for DataLoader workers and subprocesses use
    ``set_gdal_defaults`` once instead.
    """
    options: dict[str, Any] = gdal_options(**overrides)
    if "GDAL_CACHEMAX" in options:  # rasterio.Env wants an int (bytes) here
        options["GDAL_CACHEMAX"] = int(options["GDAL_CACHEMAX"])
    return rasterio.Env(**options)


def set_gdal_defaults() -> dict[str, str]:
    """Export the tuned options as environment variables, keeping any already set.

    GDAL reads configuration from the environment whenever an option is not set in-process, so
    this reaches every later open in this process, forked or spawned DataLoader workers and
    subprocesses alike. Call it once before building datasets over remote inputs.

    Returns:
        The options this call added.
    """
    added = {k: v for k, v in GDAL_REMOTE_OPTIONS.items() if k not in os.environ}
    os.environ.update(added)
    return added


_STATUS = re.compile(r"HTTP (?:response code|error code)\s*[:=]?\s*(\d{3})", re.IGNORECASE)
_S3_CODES = {
    "AccessDenied": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "AuthenticationFailed": 403,
    "NoSuchKey": 404,
    "NoSuchBucket": 404,
    "BlobNotFound": 404,
    "ContainerNotFound": 404,
}
_CREDENTIALS = re.compile(
    r"(AWS_SECRET_ACCESS_KEY|GS_SECRET_ACCESS_KEY|AZURE_STORAGE|GOOGLE_APPLICATION_CREDENTIALS)"
    r".*not (?:defined|set)|credentials",
    re.IGNORECASE,
)

_UNREACHABLE = re.compile(
    r"CURL error|Could not resolve host|Connection refused|Failed to establish a new connection"
    r"|Max retries exceeded|Name or service not known|timed out",
    re.IGNORECASE,
)


def status_problem(status: int, source: str) -> str:
    """What an HTTP status means for an input, and the fix."""
    if status == 404:
        return (
            "not found (HTTP 404): check the URL or object key (a STAC asset href may be stale, "
            "or relative to a catalogue that moved)"
        )
    if status in (401, 403):
        store = "bucket" if not source.startswith(("http://", "https://")) else "server"
        return (
            f"access denied (HTTP {status}): the {store} wants credentials or a signed URL "
            "(S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or AWS_NO_SIGN_REQUEST="
            "YES for a public bucket; Planetary Computer: sign the hrefs)"
        )
    return f"the server answered HTTP {status}"


def _http_error(source: str, status: int) -> HTTPStatusError:
    return HTTPStatusError(source, status_problem(status, source), status)


def _unreachable(source: str, detail: str) -> UnreachableURLError:
    return UnreachableURLError(
        source,
        f"cannot reach the server ({detail}): check the host and port, the network or proxy "
        "(GDAL_HTTP_PROXY / HTTPS_PROXY); transient failures were already retried",
    )


def explain_error(source: str, err: BaseException) -> InputSourceError:
    """The data layer's one-line error for a failed open or read of ``source``.

    Understands GDAL's messages (``HTTP response code: 404``, ``CURL error: ...``, S3/Azure XML
    error codes, missing credentials), urllib's (``HTTPError``, ``URLError``) and requests'
    (``ConnectionError``, responses with a status code), following ``__cause__`` chains.

    Args:
        source: The URL or path as the user (or the catalogue) named it.
        err: The exception raised by rasterio, pystac or pystac-client.
    """
    for exc in _chain(err):
        if isinstance(exc, urllib.error.HTTPError):
            return _http_error(source, exc.code)
        if isinstance(exc, urllib.error.URLError):
            return _unreachable(source, str(exc.reason))
        status = getattr(exc, "status_code", None)  # pystac-client's APIError
        status = status or getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 400:
            return _http_error(source, status)
        if isinstance(exc, ConnectionError) or type(exc).__name__ == "ConnectionError":
            return _unreachable(source, _first_line(exc))
    message = " ".join(str(err).split())
    match = _STATUS.search(message)
    if match:
        return _http_error(source, int(match[1]))
    for code, status in _S3_CODES.items():
        if code in message:
            return _http_error(source, status)
    if _CREDENTIALS.search(message):
        return MissingCredentialsError(
            source,
            "no credentials for this object store: set AWS_NO_SIGN_REQUEST=YES for a public "
            "bucket, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE (GCS: "
            f"GOOGLE_APPLICATION_CREDENTIALS; Azure: AZURE_STORAGE_*) ({message})",
        )
    if _UNREACHABLE.search(message):
        return _unreachable(source, message.replace("CURL error: ", ""))
    key = "CPL_VSIL_CURL_ALLOWED_EXTENSIONS"
    allowed = os.environ.get(key, GDAL_REMOTE_OPTIONS[key]).split(",")
    suffix = PurePosixPath(urlsplit(source).path).suffix or "{noext}"
    if is_remote(source) and "does not exist" in message and suffix not in allowed:
        return UnreadableInputError(
            source,
            f"{key}={','.join(allowed)} keeps GDAL from fetching a URL ending in {suffix!r}: "
            f"add it to {key}",
        )
    if any(isinstance(e, FileNotFoundError) for e in _chain(err)) or "No such file" in message:
        return UnreadableInputError(source, "no such file")
    return UnreadableInputError(source, f"cannot open as a raster ({message})")


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    exc: BaseException | None = err
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


@contextmanager
def open_raster(
    path: str | os.PathLike[str], source: str | None = None, **kwargs: Any
) -> Iterator[rasterio.io.DatasetReader]:
    """``rasterio.open`` under ``gdal_env`` raising the data layer's errors (named ``source``).

    Errors while the block runs (a read that hits a 404 or a dropped server) get the same
    treatment.

    Args:
        path: What GDAL opens (a local path or ``/vsi...`` path; URLs are mapped by
            ``gdal_path``).
        source: The name for error messages (default: ``path``).
        **kwargs: Passed to ``rasterio.open``.
    """
    name = str(source or path)
    with gdal_env():
        try:
            with rasterio.open(gdal_path(path), **kwargs) as dataset:
                yield dataset
        except RasterioIOError as err:
            raise explain_error(name, err) from err
