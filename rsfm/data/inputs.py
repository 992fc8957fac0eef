"""Raster inputs from anything GDAL can open: local files, globs, lists, URLs, object stores, STAC.

``resolve_inputs`` turns what a user writes on a command line or in a config into
``RasterInput`` records: the path GDAL opens plus whatever band metadata is known. A STAC item
becomes one VRT (``rsfm.data.stac``) that stacks its band assets and carries their wavelengths
as GDAL band tags, so every reader of the data layer sees the bands without knowing STAC.

Spec forms (one string each; see docs/scale.md):

- ``scene.tif``, ``scenes/`` (``*.tif`` searched recursively), ``scenes/**/*.tif`` (a glob)
- ``@list.txt`` or ``list.txt``: one spec per line (``#`` comments; relative paths are taken
  from the list's folder)
- ``https://host/scene.tif`` -> ``/vsicurl/...``; ``s3://bucket/key.tif`` -> ``/vsis3/...``
  (also ``gs://``, ``az://``); ``/vsi...`` GDAL paths as they are
- STAC JSON, local or ``http(s)://``: a Catalog, Collection, Item or ItemCollection
  (``*.json``), or a folder holding ``catalog.json`` / ``collection.json``
- a STAC API search: ``stac+https://api.example/v1?collections=c&bbox=w,s,e,n&datetime=a/b``
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import rasterio

from rsfm.data.grid import find_rasters
from rsfm.data.remote import gdal_path, is_remote, open_raster
from rsfm.sensors import Sensor, get_sensor

_LIST_SUFFIXES = (".txt",)
_STAC_SUFFIXES = (".json", ".geojson")
_STAC_ROOTS = ("catalog.json", "collection.json")
_MAX_LIST_DEPTH = 8  # lists naming lists; deeper is almost surely a list that names itself


@dataclass(frozen=True)
class RasterInput:
    """One raster to read, as GDAL opens it, with the band metadata known about it.

    Attributes:
        path: What ``rasterio.open`` opens: a local file, a ``/vsicurl/`` / ``/vsis3/`` path,
            or (for a STAC item) a VRT file stacking its band assets.
        source: The name as the user or the catalogue wrote it (used in error messages).
        sensor: Band table (centre wavelength, FWHM, native GSD per band, in ``path``'s band
            order), when known: from STAC band metadata or the ``sensor`` given.
        nodatavals: Per-band nodata (None: none declared); empty when unknown.
        scales: Per-band scale (physical = raw * scale + offset); empty when unknown.
        offsets: Per-band offset; empty when unknown.
        assets: Per band, the STAC asset key it comes from (empty outside STAC).
        hrefs: GDAL paths of the files behind ``path`` (the assets of a STAC item's VRT).
        item_id: STAC item id.
        datetime: Acquisition time (STAC ``datetime`` or ``start_datetime``).
        crs: CRS declared by STAC (``proj:``), as ``EPSG:n`` or WKT.
    """

    path: str
    source: str
    sensor: Sensor | None = None
    nodatavals: tuple[float | None, ...] = ()
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    assets: tuple[str, ...] = ()
    hrefs: tuple[str, ...] = field(default_factory=tuple)
    item_id: str | None = None
    datetime: datetime | None = None
    crs: str | None = None

    @property
    def remote(self) -> bool:
        """Whether reading it goes over the network."""
        return is_remote(self.path) or any(is_remote(h) for h in self.hrefs)

    @property
    def wavelengths(self) -> np.ndarray | None:
        """Centre wavelengths (nm, float32) in band order, when the sensor is known."""
        return None if self.sensor is None else self.sensor.wavelengths

    @property
    def nodata(self) -> float | None:
        """The nodata value shared by every band (None when undeclared or bands differ)."""
        values = {v for v in self.nodatavals}
        return values.pop() if len(values) == 1 else None


def resolve_inputs(
    specs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    sensor: str | Sensor | None = None,
    assets: Sequence[str] | None = None,
    check: bool = True,
    vrt_dir: str | os.PathLike[str] | None = None,
) -> list[RasterInput]:
    """Expand input specs (see the module docstring) into rasters, in order, without repeats.

    Args:
        specs: One spec or a sequence of them.
        sensor: Registered sensor name or ``Sensor`` describing the bands: attached to plain
            rasters; for STAC it replaces the assets' band metadata (needed when they have none).
        assets: STAC asset keys to stack, in this band order (default: every data asset with
            band metadata, in the item's order).
        check: Open each plain remote raster's header now, so an unreachable URL, a 403 or a
            404 fails here with a clear error rather than inside a DataLoader worker.
        vrt_dir: Where STAC items' VRTs are written (default ``$RSFM_CACHE/vrt``, else
            ``~/.cache/rsfm/vrt``).

    Raises:
        FileNotFoundError: A local path or glob that matches nothing.
        rsfm.data.errors.InputSourceError: Its subclasses name the URL and the fix:
            unreachable server, HTTP 403/404, missing credentials, an unusable STAC object, a
            STAC asset without band metadata and no ``sensor``, an item without a CRS.
    """
    items = [specs] if isinstance(specs, str | os.PathLike) else list(specs)
    options = {
        "sensor": None if sensor is None else get_sensor(sensor),
        "assets": None if assets is None else list(assets),
        "check": check,
        "vrt_dir": vrt_dir,
    }
    out: list[RasterInput] = []
    seen: set[str] = set()
    for spec in items:
        for found in _expand(str(spec), None, 0, options):
            if found.path not in seen:
                seen.add(found.path)
                out.append(found)
    return out


def input_paths(
    specs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], **kwargs: Any
) -> list[str]:
    """``resolve_inputs(specs, **kwargs)`` as the GDAL paths to open (for path-based readers)."""
    return [found.path for found in resolve_inputs(specs, **kwargs)]


@contextmanager
def open_input(
    spec: str | os.PathLike[str] | RasterInput, **kwargs: Any
) -> Iterator[rasterio.io.DatasetReader]:
    """Open one input (a spec resolving to exactly one raster, or a ``RasterInput``).

    The dataset is read under the tuned GDAL options and failures get the data layer's
    one-line errors naming the input (``rsfm.data.remote.open_raster``).

    Args:
        spec: The input.
        **kwargs: Passed to ``resolve_inputs`` (``sensor``, ``assets``, ``vrt_dir``).

    Raises:
        ValueError: If the spec names several rasters.
    """
    if isinstance(spec, RasterInput):
        found = spec
    else:
        resolved = resolve_inputs([spec], **{"check": False, **kwargs})
        if len(resolved) != 1:
            raise ValueError(
                f"{spec}: names {len(resolved)} rasters; open_input opens one "
                "(use resolve_inputs for many)"
            )
        found = resolved[0]
    with open_raster(found.path, source=found.source) as dataset:
        yield dataset


def _expand(spec: str, base: Path | None, depth: int, options: dict) -> Iterator[RasterInput]:
    """Inputs named by one spec; ``base`` is the folder of the list that named it."""
    spec = spec.strip()
    if spec.startswith("@"):
        yield from _from_list(_local(spec[1:], base), depth, options)
        return
    if spec.startswith("stac+"):
        from rsfm.data import stac  # stac builds RasterInputs from this module

        yield from stac.search_inputs(spec[len("stac+") :], **_stac_options(options))
        return
    if spec.startswith("/vsi"):
        yield _plain(spec, spec, options)
        return
    scheme = urlsplit(spec).scheme
    if len(scheme) > 1:  # a URL (a one-letter scheme is a Windows drive)
        if _suffix(urlsplit(spec).path) in _STAC_SUFFIXES:
            yield from _from_stac(spec, options)
        else:
            yield _plain(gdal_path(spec), spec, options)
        return
    yield from _from_local(_local(spec, base), depth, options)


def _from_local(path: Path, depth: int, options: dict) -> Iterator[RasterInput]:
    text = str(path)
    if glob.has_magic(text):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise FileNotFoundError(f"{text}: no file matches this pattern")
        for match in matches:
            yield from _from_local(Path(match), depth, options)
        return
    if path.is_dir():
        root = next((path / n for n in _STAC_ROOTS if (path / n).is_file()), None)
        if root is not None:
            yield from _from_stac(str(root), options)
            return
        for file in find_rasters(path):
            yield _plain(str(file), str(file), options)
        return
    suffix = _suffix(text)
    if suffix in _LIST_SUFFIXES:
        yield from _from_list(path, depth, options)
    elif suffix in _STAC_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        yield from _from_stac(str(path), options)
    else:
        (file,) = find_rasters(path)  # raises FileNotFoundError naming a missing path
        yield _plain(str(file), str(file), options)


def _from_list(path: Path, depth: int, options: dict) -> Iterator[RasterInput]:
    if depth >= _MAX_LIST_DEPTH:
        raise ValueError(f"{path}: lists nested deeper than {_MAX_LIST_DEPTH} (a loop?)")
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read the input list ({err.strerror})") from err
    specs = [line.strip() for line in lines]
    specs = [s for s in specs if s and not s.startswith("#")]
    if not specs:
        raise FileNotFoundError(f"{path}: the input list names no file")
    for spec in specs:
        yield from _expand(spec, path.parent, depth + 1, options)


def _from_stac(href: str, options: dict) -> Iterator[RasterInput]:
    from rsfm.data import stac  # stac builds RasterInputs from this module

    yield from stac.stac_inputs(href, **_stac_options(options))


def _plain(path: str, source: str, options: dict) -> RasterInput:
    """A raster outside STAC: the given sensor (if any); remote headers checked on request."""
    found = RasterInput(path=path, source=source, sensor=options["sensor"])
    if options["check"] and found.remote:
        with open_raster(path, source=source):
            pass
    return found


def _stac_options(options: dict) -> dict:
    return {k: options[k] for k in ("sensor", "assets", "vrt_dir")}


def _local(spec: str, base: Path | None) -> Path:
    path = Path(os.path.expanduser(spec))
    return path if base is None or path.is_absolute() else base / path


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()
