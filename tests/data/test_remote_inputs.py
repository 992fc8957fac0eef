"""Remote rasters over loopback HTTP: /vsicurl/ reads equal the local file, fetch only part of
it, retry transient errors with backoff, and a refused connection / 403 / 404 get clear errors.
Also local specs (folders, globs, lists) and s3:// through GDAL's /vsis3/ on the same server."""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from rsfm.data.errors import HTTPStatusError, UnreachableURLError, UnreadableRasterError
from rsfm.data.inputs import RasterInput, input_paths, open_input, resolve_inputs
from rsfm.data.remote import GDAL_REMOTE_OPTIONS, gdal_options, gdal_path, set_gdal_defaults
from rsfm.sensors import get_sensor

UTM33N = "EPSG:32633"


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's folder with HTTP Range support; routes answer JSON endpoints."""

    protocol_version = "HTTP/1.1"  # keep-alive, like real object stores

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(body=True, payload=self.rfile.read(length))

    def _serve(self, body: bool, payload: bytes | None = None) -> None:
        server: RangeServer = self.server.owner  # type: ignore[attr-defined]
        path = unquote(urlsplit(self.path).path)
        server.requests.append((self.command, path, self.headers.get("Range"), time.time()))
        route = server.routes.get(path)
        file = server.root / path.lstrip("/")
        status, data = 200, b""
        if path in server.forbidden:
            status = 403
        elif self.command == "GET" and server.fail:
            status = server.fail.pop(0)
        elif route is not None:
            data = route(payload)
        elif file.is_file():
            data = file.read_bytes()
        else:
            status = 404
        rng = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if status == 200 and rng:
            start = int(rng[1])
            end = min(int(rng[2]) if rng[2] else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            data = data[start : end + 1]
        else:
            self.send_response(status)
            data = data if status == 200 else b""
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            self.wfile.write(data)
            server.bytes_sent += len(data)


class RangeServer:
    """A threaded HTTP server on 127.0.0.1 (an ephemeral port) serving ``root``.

    Attributes:
        requests: (method, path, Range header, time) of every request.
        bytes_sent: Body bytes sent.
        fail: Statuses to answer the next GET requests with (transient errors).
        forbidden: Paths answered 403.
        routes: Path -> function(request body or None) -> response bytes (JSON endpoints).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str, str | None, float]] = []
        self.bytes_sent = 0
        self.fail: list[int] = []
        self.forbidden: set[str] = set()
        self.routes: dict[str, Callable[[bytes | None], bytes]] = {}
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RangeServer]:
    # Fail in seconds, not hang: this server shares the test's GIL, and a GDAL call that holds
    # it during HTTP (rasterio's probes for .aux.xml sidecars, which the tuned options stop)
    # starves the server until curl times out.
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "2")  # enough for the two 503s below
    root = tmp_path / "www"
    root.mkdir()
    httpd = RangeServer(root)
    yield httpd
    httpd.close()


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    res: float = 10.0,
    origin: tuple[float, float] = (500_000.0, 5_000_000.0),
    crs: str | None = UTM33N,
    nodata: float | None = None,
    blocksize: int = 256,
) -> Path:
    """Write ``data`` [C,H,W] as a deflate COG (rasterio's COG driver)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "COG",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        "transform": from_origin(origin[0], origin[1], res, res),
        "blocksize": blocksize,
        "compress": "DEFLATE",
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def scene(bands: int = 3, size: int = 1024, seed: int = 0) -> np.ndarray:
    """Noisy uint16 values (so deflate cannot shrink a tile to nothing)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 10_000, size=(bands, size, size), dtype=np.uint16)


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gdal_paths_name_the_virtual_file_systems() -> None:
    assert gdal_path("https://h/a/b.tif") == "/vsicurl/https://h/a/b.tif"
    assert gdal_path("s3://bucket/a/b.tif") == "/vsis3/bucket/a/b.tif"
    assert gdal_path("gs://bucket/b.tif") == "/vsigs/bucket/b.tif"
    assert gdal_path("az://container/b.tif") == "/vsiaz/container/b.tif"
    assert gdal_path("file:///data/b.tif") == "/data/b.tif"
    assert gdal_path("/vsizip/x.zip/b.tif") == "/vsizip/x.zip/b.tif"
    assert gdal_path("rel/b.tif") == "rel/b.tif"
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        gdal_path("ftp://h/b.tif")


def test_cog_over_http_reads_like_the_local_file_and_fetches_only_part(
    server: RangeServer,
) -> None:
    data = scene()
    local = write_cog(server.root / "scene.tif", data)
    (found,) = resolve_inputs([server.url("scene.tif")], sensor="landsat8_sr")
    assert isinstance(found, RasterInput)
    assert found.path == f"/vsicurl/{server.url('scene.tif')}" and found.remote
    assert found.sensor is get_sensor("landsat8_sr")
    windows = [Window(0, 0, 64, 64), Window(300, 517, 100, 37), Window(960, 960, 64, 64)]
    with rasterio.open(local) as ref:
        expected = [ref.read(window=w) for w in windows]
        crs, transform = ref.crs, ref.transform
    server.requests.clear()
    server.bytes_sent = 0
    with open_input(found) as ds:
        assert ds.crs == crs and ds.transform == transform
        for window, want in zip(windows, expected, strict=True):
            np.testing.assert_array_equal(ds.read(window=window), want)  # bit for bit
    gets = [r for r in server.requests if r[0] == "GET"]
    assert gets and all(r[2] and r[2].startswith("bytes=") for r in gets)  # only Range GETs
    # Only the raster itself was asked for: no directory listing, no .aux.xml/.ovr/.msk probes.
    assert {r[1] for r in server.requests} == {"/scene.tif"}
    assert len(gets) <= 6 and server.bytes_sent < 0.25 * local.stat().st_size


def test_transient_errors_are_retried_with_backoff(
    server: RangeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cog(server.root / "flaky.tif", scene(1, 256))
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.1")  # the environment wins over defaults
    server.fail = [503, 503]
    with open_input(server.url("flaky.tif")) as ds:
        assert ds.read(1).shape == (256, 256)
    times = [r[3] for r in server.requests if r[0] == "GET"]
    assert len(times) >= 3 and not server.fail
    first, second = times[1] - times[0], times[2] - times[1]
    assert first >= 0.09 and second >= 0.18  # the delay doubles between tries


def test_refused_connection_names_the_url_and_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/scene.tif"
    with pytest.raises(UnreachableURLError) as info:
        resolve_inputs([url])
    message = str(info.value)
    assert message.startswith(f"{url}: cannot reach the server") and "\n" not in message
    assert "check the host and port" in message
    assert isinstance(info.value, UnreadableRasterError)  # callers catching the base still work


def test_404_and_403_are_clear(server: RangeServer) -> None:
    url = server.url("missing.tif")
    with pytest.raises(HTTPStatusError) as info:
        resolve_inputs([url])
    assert info.value.status == 404
    assert str(info.value).startswith(f"{url}: not found (HTTP 404)")
    write_cog(server.root / "secret.tif", scene(1, 64))
    server.forbidden.add("/secret.tif")
    with pytest.raises(HTTPStatusError, match=r"access denied \(HTTP 403\).*credentials") as info:
        resolve_inputs([server.url("secret.tif")])
    assert info.value.status == 403 and "\n" not in str(info.value)


def test_a_url_without_extension_reads_unless_the_extensions_exclude_it(
    server: RangeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", raising=False)
    data = scene(1, 64)
    write_cog(server.root / "cog", data)  # e.g. an API endpoint serving a COG
    with open_input(server.url("cog")) as ds:
        np.testing.assert_array_equal(ds.read(), data)
    server.requests.clear()
    monkeypatch.setenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif")
    with pytest.raises(UnreadableRasterError) as info:
        resolve_inputs([server.url("cog?v=2")])
    assert str(info.value) == (
        f"{server.url('cog?v=2')}: CPL_VSIL_CURL_ALLOWED_EXTENSIONS=.tif keeps GDAL from "
        "fetching a URL ending in '{noext}': add it to CPL_VSIL_CURL_ALLOWED_EXTENSIONS"
    )
    assert not server.requests  # GDAL did not even ask


def test_s3_urls_read_through_vsis3(server: RangeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = scene(2, 256, seed=3)
    write_cog(server.root / "bucket" / "tiles" / "a.tif", data)
    for key, value in {
        "AWS_S3_ENDPOINT": f"127.0.0.1:{server.port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_NO_SIGN_REQUEST": "YES",
    }.items():
        monkeypatch.setenv(key, value)
    (found,) = resolve_inputs(["s3://bucket/tiles/a.tif"])
    assert found.path == "/vsis3/bucket/tiles/a.tif"
    with open_input(found) as ds:
        np.testing.assert_array_equal(ds.read(), data)
    assert {r[1] for r in server.requests} == {"/bucket/tiles/a.tif"}
    with pytest.raises(HTTPStatusError, match="HTTP 404"):
        resolve_inputs(["s3://bucket/tiles/none.tif"])


def test_local_folders_globs_and_lists(server: RangeServer, tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    a = write_cog(folder / "a.tif", scene(1, 32))
    b = write_cog(folder / "sub" / "b.tif", scene(1, 32, seed=1))
    write_cog(server.root / "c.tif", scene(1, 32, seed=2))
    listing = folder / "inputs.txt"
    listing.write_text(f"# scenes\nsub/b.tif\n\n{server.url('c.tif')}\n")
    assert input_paths([str(folder)]) == [str(a), str(b)]
    assert input_paths([str(folder / "**" / "*.tif")]) == [str(a), str(b)]
    remote = f"/vsicurl/{server.url('c.tif')}"
    assert input_paths([f"@{listing}", str(a)]) == [str(b), remote, str(a)]
    assert input_paths([str(listing), str(b)]) == [str(b), remote]  # repeats dropped
    with pytest.raises(FileNotFoundError, match="nope.tif: no such file"):
        resolve_inputs([str(folder / "nope.tif")])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        resolve_inputs([str(folder / "*.jp2")])


def test_gdal_options_keep_what_the_environment_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in GDAL_REMOTE_OPTIONS:
        monkeypatch.delenv(key, raising=False)  # restored (removed) after the test
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")
    options = gdal_options(GDAL_CACHEMAX=64 * 2**20)
    assert "GDAL_HTTP_MAX_RETRY" not in options and options["GDAL_CACHEMAX"] == str(64 * 2**20)
    assert options["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
    added = set_gdal_defaults()
    assert "GDAL_HTTP_MAX_RETRY" not in added
    import os

    assert os.environ["GDAL_HTTP_MAX_RETRY"] == "9"
    assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "TRUE"
