"""STAC items as raster inputs: assets mapped to bands by their metadata, stacked in a VRT.

Catalogs, collections, items and item collections are read with pystac, API searches run with
pystac-client. Each item becomes one ``RasterInput`` whose ``path`` is a small VRT file: one
band per band of the chosen assets, in asset order, each carrying its centre wavelength / FWHM
(GDAL ``wavelength`` / ``fwhm`` tags, nm), name, nodata, scale and offset, so the data layer's
readers (``sensor_from_raster``, ``SensorRasterDataset``) see the bands without STAC. Band
metadata comes from STAC 1.0 ``eo:bands`` + ``raster:bands``, STAC 1.1 ``bands``, or the SAR
extension (``sar:polarizations`` with ``sar:center_frequency`` / ``sar:frequency_band``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import pystac
from affine import Affine
from pystac.utils import make_absolute_href
from rasterio.crs import CRS
from rasterio.transform import array_bounds

from rsfm.data.errors import (
    InputBandMismatchError,
    ItemMissingCRSError,
    MissingBandMetadataError,
    StacError,
    UnreadableInputError,
)
from rsfm.data.grid import canonical_band_name, gsd_metres
from rsfm.data.inputs import RasterInput
from rsfm.data.remote import explain_error, gdal_path, open_raster
from rsfm.sensors import Band, Sensor, radar_wavelength_nm

_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
_NOT_BANDS = {"thumbnail", "overview", "metadata", "visual"}  # roles left out by default
_SAR_GHZ = {"P": 0.435, "L": 1.27, "S": 3.2, "C": 5.405, "X": 9.65, "KU": 13.5, "KA": 35.75}
_POLARISATIONS = ("VV", "VH", "HH", "HV")
_SEARCH_KEYS = ("collections", "bbox", "datetime", "ids", "max_items", "limit", "query", "filter")


@dataclass
class _Band:
    """One band of an asset, as STAC describes it (None: not said)."""

    name: str
    center_nm: float | None
    fwhm_nm: float
    gsd_m: float | None
    nodata: float | None
    scale: float
    offset: float
    dtype: str | None


@dataclass
class _Grid:
    """Where an asset's pixels lie."""

    width: int
    height: int
    transform: Affine
    crs: CRS | None
    dtype: str
    count: int
    block: tuple[int, int] | None = None


def stac_inputs(href: str, **options: Any) -> list[RasterInput]:
    """Inputs for every item of a STAC Catalog / Collection / Item / ItemCollection JSON.

    Args:
        href: Local path or ``http(s)://`` URL of the JSON.
        **options: ``item_input``'s ``sensor``, ``assets`` and ``vrt_dir``.

    Raises:
        StacError: If the JSON cannot be read or is no STAC object with items.
    """
    try:
        data = pystac.StacIO.default().read_json(href)
    except Exception as err:  # pystac wraps urllib's errors in a bare Exception
        raise _read_error(href, err) from err
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
        else:
            obj = pystac.read_dict(data, href=href)
            if isinstance(obj, pystac.Item):
                items = [obj]
            else:
                items = list(obj.get_items(recursive=True))
    except Exception as err:
        raise StacError(href, f"not a usable STAC object ({_one_line(err)})") from err
    if not items:
        raise StacError(href, "the STAC object holds no items")
    return [item_input(item, base=href, **options) for item in items]


def parse_search(url: str) -> tuple[str, dict[str, Any]]:
    """``https://api/v1?collections=a,b&bbox=w,s,e,n&datetime=x/y`` -> (API root, search args).

    Keys: ``collections``, ``ids`` (comma lists), ``bbox`` (4 numbers), ``datetime`` (RFC 3339
    instant or interval), ``max_items`` (default: every match), ``limit`` (page size),
    ``query`` (JSON, the query extension), ``filter`` (CQL2 text).

    Raises:
        StacError: For an unknown key or a malformed value.
    """
    parts = urlsplit(url)
    root = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    params: dict[str, Any] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        value = values[-1]
        if key not in _SEARCH_KEYS:
            raise StacError(url, f"unknown search parameter {key!r}; known: {list(_SEARCH_KEYS)}")
        try:
            if key in ("collections", "ids"):
                params[key] = [v for v in value.split(",") if v]
            elif key == "bbox":
                params[key] = [float(v) for v in value.split(",")]
                if len(params[key]) != 4:
                    raise ValueError("bbox needs 4 numbers: west,south,east,north")
            elif key in ("max_items", "limit"):
                params[key] = int(value)
            elif key == "query":
                params[key] = json.loads(value)
            elif key == "filter":
                params.update(filter=value, filter_lang="cql2-text")
            else:
                params[key] = value
        except ValueError as err:
            raise StacError(url, f"bad {key}={value!r}: {err}") from err
    return root, params


def search_inputs(url: str, **options: Any) -> list[RasterInput]:
    """Inputs for the items a STAC API search returns (``parse_search`` reads the URL;
    ``options`` are ``item_input``'s).

    Raises:
        StacError: If the API has no item search or the search finds nothing;
            ``UnreachableURLError`` / ``HTTPStatusError`` when the API cannot be reached.
    """
    import pystac_client  # noqa: PLC0415 -- only searches need it

    root, params = parse_search(url)
    try:
        client = pystac_client.Client.open(root)
        items = list(client.search(**params).items())
    except Exception as err:
        if type(err).__name__ == "DoesNotConformTo":
            raise StacError(root, "the STAC API does not offer item search") from err
        raise _read_error(root, err) from err
    if not items:
        raise StacError(url, "the search matched no item: widen bbox / datetime / collections")
    return [item_input(item, base=root, **options) for item in items]


def item_input(
    item: pystac.Item,
    *,
    sensor: Sensor | None = None,
    assets: Sequence[str] | None = None,
    vrt_dir: str | os.PathLike[str] | None = None,
    base: str | None = None,
) -> RasterInput:
    """One item as a ``RasterInput`` whose path is a VRT stacking its band assets.

    Args:
        item: The STAC item.
        sensor: When given, its bands describe the stacked bands (matched by name to the band
            or asset names when all match, else by position; the counts must agree); STAC still
            gives nodata / scale / offset. When None, every band needs a centre wavelength.
        assets: Asset keys in band order (default: the item's data assets with band metadata,
            duplicates (e.g. a JP2 twin of a COG) dropped).
        vrt_dir: Folder for the VRT.
        base: Where the item was read from, to resolve relative hrefs and name it in errors.

    Raises:
        MissingBandMetadataError: A band without centre wavelength and no ``sensor``.
        ItemMissingCRSError: No ``proj:`` CRS on the item and none in the raster.
        InputBandMismatchError: Sensor band count differs, or assets in different CRSs.
        StacError: A requested asset is missing, or the item has no raster asset.
    """
    source = item.get_self_href() or (f"{base}#{item.id}" if base else item.id)
    chosen = _pick_assets(item, assets, source)
    hrefs = [_href(asset, base) for _, asset in chosen]
    described = [_asset_bands(key, asset, item) for key, asset in chosen]
    if sensor is None:
        _require_wavelengths(item, chosen, described, hrefs)
    triples = zip(chosen, described, hrefs, strict=True)
    grids = [_grid(item, asset, bands, href) for (_, asset), bands, href in triples]
    for i, ((key, asset), grid) in enumerate(zip(chosen, grids, strict=True)):
        if not _declares_bands(asset) and grid.count > 1:  # the raster says how many
            described[i] = [
                replace(described[i][0], name=f"{key}_{j + 1}") for j in range(grid.count)
            ]
        if grid.count < len(described[i]):
            raise StacError(
                source, f"asset {key!r} declares {len(described[i])} bands, has {grid.count}"
            )
    keys = tuple(key for (key, _), bands in zip(chosen, described, strict=True) for _ in bands)
    flat = [band for bands in described for band in bands]
    crs = _item_crs(item, source, grids, chosen, hrefs)
    for bands, grid in zip(described, grids, strict=True):  # no GSD in STAC: the pixel size
        for band in bands:
            t = grid.transform
            band.gsd_m = band.gsd_m or gsd_metres(crs, (abs(t.a), abs(t.e)))
    band_table = _band_table(item, chosen, described, flat, sensor, source)
    rows = [
        (band, key, grid, href, index)
        for (key, _), bands, grid, href in zip(chosen, described, grids, hrefs, strict=True)
        for index, band in enumerate(bands, start=1)
    ]
    xml = _vrt_xml(item, rows, band_table, crs)
    when = item.datetime or item.common_metadata.start_datetime
    return RasterInput(
        path=str(_write_vrt(xml, item.id, vrt_dir)),
        source=source,
        sensor=band_table,
        nodatavals=tuple(b.nodata for b in flat),
        scales=tuple(b.scale for b in flat),
        offsets=tuple(b.offset for b in flat),
        assets=keys,
        hrefs=tuple(gdal_path(h) for h in hrefs),
        item_id=item.id,
        datetime=when,
        crs=crs.to_string(),
    )


# --------------------------------------------------------------------------- band metadata


def _pick_assets(
    item: pystac.Item, keys: Sequence[str] | None, source: str
) -> list[tuple[str, pystac.Asset]]:
    if keys is not None:
        missing = [k for k in keys if k not in item.assets]
        if missing:
            raise StacError(
                source, f"item {item.id!r} has no asset(s) {missing}; it has {list(item.assets)}"
            )
        return [(k, item.assets[k]) for k in keys]
    rasters = [(k, a) for k, a in item.assets.items() if _is_raster(a)]
    data = [(k, a) for k, a in rasters if not _NOT_BANDS & set(a.roles or [])] or rasters
    described = [(k, a) for k, a in data if _has_wavelengths(k, a, item)] or data
    chosen: dict[tuple, tuple[str, pystac.Asset]] = {}
    for key, asset in described:  # one asset per band set: a COG beats its JP2 twin
        bands = tuple((b.name, b.center_nm) for b in _asset_bands(key, asset, item))
        identity = bands if any(c is not None for _, c in bands) else (key,)
        if identity not in chosen or (_is_cog(asset) and not _is_cog(chosen[identity][1])):
            chosen[identity] = (key, asset)
    if not chosen:
        raise StacError(source, f"item {item.id!r} has no raster (GeoTIFF/COG/JP2) asset")
    order = list(item.assets)
    return sorted(chosen.values(), key=lambda pair: order.index(pair[0]))


def _is_raster(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    if "tiff" in media or "jp2" in media or "x-vrt" in media:
        return True
    return not media and os.path.splitext(urlsplit(asset.href).path)[1].lower() in (
        _RASTER_SUFFIXES
    )


def _is_cog(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    return "tiff" in media or urlsplit(asset.href).path.lower().endswith((".tif", ".tiff"))


def _has_wavelengths(key: str, asset: pystac.Asset, item: pystac.Item) -> bool:
    return any(b.center_nm is not None for b in _asset_bands(key, asset, item))


def _asset_bands(key: str, asset: pystac.Asset, item: pystac.Item) -> list[_Band]:
    """The asset's bands from eo:bands + raster:bands (STAC 1.0) or bands (STAC 1.1)."""
    fields = asset.extra_fields
    eo = fields.get("eo:bands") or []
    raster = fields.get("raster:bands") or []
    unified = fields.get("bands") or []
    count = max(len(eo), len(raster), len(unified), 1)
    props = item.properties
    out = []
    for i in range(count):
        e = eo[i] if i < len(eo) and isinstance(eo[i], dict) else {}
        r = raster[i] if i < len(raster) and isinstance(raster[i], dict) else {}
        u = unified[i] if i < len(unified) and isinstance(unified[i], dict) else {}
        name = e.get("name") or u.get("name") or (key if count == 1 else f"{key}_{i + 1}")
        center = _first(e.get("center_wavelength"), u.get("eo:center_wavelength"))
        fwhm = _first(e.get("full_width_half_max"), u.get("eo:full_width_half_max"))
        center_nm = None if center is None else float(center) * 1000.0  # STAC says micrometres
        if center_nm is None:
            center_nm = _sar_wavelength(name, key, asset, props, count)
        gsd = _first(r.get("spatial_resolution"), u.get("raster:spatial_resolution"))
        gsd = _first(gsd, fields.get("gsd"), props.get("gsd"))
        out.append(
            _Band(
                name=str(name),
                center_nm=center_nm,
                fwhm_nm=0.0 if fwhm is None else float(fwhm) * 1000.0,
                gsd_m=None if gsd is None else float(gsd),
                nodata=_number(_first(r.get("nodata"), u.get("nodata"), fields.get("nodata"))),
                scale=float(_first(r.get("scale"), u.get("raster:scale"), 1.0)),
                offset=float(_first(r.get("offset"), u.get("raster:offset"), 0.0)),
                dtype=_first(r.get("data_type"), u.get("data_type"), fields.get("data_type")),
            )
        )
    return out


def _sar_wavelength(
    name: str, key: str, asset: pystac.Asset, props: dict, count: int
) -> float | None:
    """Signed radar wavelength (rsfm.sensors' SAR convention) of a one-polarisation band."""
    pols = asset.extra_fields.get("sar:polarizations") or []
    if count == 1 and len(pols) != 1:
        pols = [p for p in _POLARISATIONS if p in (name.upper(), key.upper())]
    if count != 1 or len(pols) != 1 or str(pols[0]).upper() not in _POLARISATIONS:
        return None
    ghz = asset.extra_fields.get("sar:center_frequency") or props.get("sar:center_frequency")
    band = asset.extra_fields.get("sar:frequency_band") or props.get("sar:frequency_band")
    ghz = ghz or _SAR_GHZ.get(str(band).upper())
    return None if ghz is None else radar_wavelength_nm(float(ghz), str(pols[0]))


def _declares_bands(asset: pystac.Asset) -> bool:
    return any(asset.extra_fields.get(k) for k in ("eo:bands", "raster:bands", "bands"))


def _require_wavelengths(
    item: pystac.Item,
    chosen: list[tuple[str, pystac.Asset]],
    described: list[list[_Band]],
    hrefs: list[str],
) -> None:
    for (key, _), bands, href in zip(chosen, described, hrefs, strict=True):
        if any(b.center_nm is None for b in bands):
            raise MissingBandMetadataError(
                href,
                f"asset {key!r} of STAC item {item.id!r} has no band metadata (no eo:bands "
                "center_wavelength, bands[].eo:center_wavelength or sar:polarizations): pass "
                "--sensor NAME (`rsfm data sensors`) or choose described assets",
            )


def _band_table(
    item: pystac.Item,
    chosen: list[tuple[str, pystac.Asset]],
    described: list[list[_Band]],
    flat: list[_Band],
    sensor: Sensor | None,
    source: str,
) -> Sensor:
    """The stacked bands as a Sensor: the given one (matched to the assets) or from STAC."""
    if sensor is not None:
        if len(sensor.bands) != len(flat):
            raise InputBandMismatchError(
                source,
                f"sensor {sensor.name!r} has {len(sensor.bands)} bands, the chosen assets of "
                f"item {item.id!r} have {len(flat)} ({[k for k, _ in chosen]}); pick assets= "
                "in the sensor's band order",
            )
        by_name = {canonical_band_name(b.name): b for b in sensor.bands}
        names = [canonical_band_name(b.name) for b in flat]
        keyed = [
            canonical_band_name(k) for (k, _), bs in zip(chosen, described, strict=True) for _ in bs
        ]
        for candidate in (names, keyed):
            if all(n in by_name for n in candidate) and len(set(candidate)) == len(candidate):
                return Sensor(sensor.name, sensor.modality, tuple(by_name[n] for n in candidate))
        return sensor
    bands = tuple(Band(b.name, float(b.center_nm), b.fwhm_nm, float(b.gsd_m)) for b in flat)
    sar = all(b.is_sar for b in bands)
    modality = "sar" if sar else "hyperspectral" if len(bands) > 30 else "optical"
    name = item.collection_id or "stac"
    return Sensor(name, modality, bands, f"described by STAC item {item.id}")


# --------------------------------------------------------------------------- grids and CRS


def _grid(item: pystac.Item, asset: pystac.Asset, bands: list[_Band], href: str) -> _Grid:
    """The asset's grid from ``proj:`` fields, else from the raster's header."""
    fields, props = asset.extra_fields, item.properties
    shape = fields.get("proj:shape") or props.get("proj:shape")
    transform = fields.get("proj:transform") or props.get("proj:transform")
    crs = _stac_crs(fields) or _stac_crs(props)
    dtypes = {b.dtype for b in bands}
    if shape and transform and crs is not None and None not in dtypes and len(dtypes) == 1:
        affine = Affine(*[float(v) for v in transform[:6]])
        return _Grid(int(shape[1]), int(shape[0]), affine, crs, str(dtypes.pop()), len(bands))
    with open_raster(gdal_path(href), source=href) as ds:
        height, width = ds.block_shapes[0]
        return _Grid(
            ds.width, ds.height, ds.transform, ds.crs, ds.dtypes[0], ds.count, (width, height)
        )


def _stac_crs(fields: dict) -> CRS | None:
    for key in ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson"):
        value = fields.get(key)
        if value:
            if key == "proj:epsg":
                value = f"EPSG:{value}"
            return CRS.from_user_input(json.dumps(value) if isinstance(value, dict) else value)
    return None


def _item_crs(
    item: pystac.Item,
    source: str,
    grids: list[_Grid],
    chosen: list[tuple[str, pystac.Asset]],
    hrefs: list[str],
) -> CRS:
    stated = _stac_crs(item.properties)
    crss = [g.crs or stated for g in grids]
    for (key, _), crs, href in zip(chosen, crss, hrefs, strict=True):
        if crs is None:
            raise ItemMissingCRSError(
                source,
                f"STAC item {item.id!r} has no proj:code / proj:epsg / proj:wkt2 and its asset "
                f"{key!r} ({href}) has no CRS either: add the projection extension to the item "
                "or georeference the raster",
            )
    if len({c.to_wkt() for c in crss}) > 1:
        raise InputBandMismatchError(
            source,
            f"the chosen assets of item {item.id!r} lie in different CRSs "
            f"({sorted({c.to_string() for c in crss})}): choose assets= of one CRS",
        )
    for grid in grids:
        if grid.transform.b or grid.transform.d:
            raise StacError(source, "a rotated asset grid cannot be stacked; warp it first")
    return crss[0]


# --------------------------------------------------------------------------- the VRT


def _vrt_xml(
    item: pystac.Item, rows: list[tuple[_Band, str, _Grid, str, int]], table: Sensor, crs: CRS
) -> str:
    """gdalbuildvrt -separate, by hand: GDAL's BuildVRT is not exposed by rasterio.

    ``rows``: per output band, (band, asset key, asset grid, href, band index in the asset).
    """
    grids = [row[2] for row in rows]
    res_x = min(abs(g.transform.a) for g in grids)
    res_y = min(abs(g.transform.e) for g in grids)
    bounds = [_bounds(g) for g in grids]
    left, top = min(b[0] for b in bounds), max(b[3] for b in bounds)
    right, bottom = max(b[2] for b in bounds), min(b[1] for b in bounds)
    width = max(1, round((right - left) / res_x))
    height = max(1, round((top - bottom) / res_y))
    dtype = np.result_type(*[np.dtype(g.dtype) for g in grids]).name
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in (left, res_x, 0.0, top, 0.0, -res_y)
    )
    meta = ET.SubElement(root, "Metadata")
    for k, v in (
        ("stac_item", item.id),
        ("stac_collection", item.collection_id or ""),
        ("stac_datetime", str(item.datetime or item.common_metadata.start_datetime or "")),
    ):
        ET.SubElement(meta, "MDI", key=k).text = v
    for number, ((band, key, grid, href, index), spec) in enumerate(
        zip(rows, table.bands, strict=True), start=1
    ):
        node = ET.SubElement(root, "VRTRasterBand", dataType=_gdal_type(dtype), band=str(number))
        ET.SubElement(node, "Description").text = band.name
        tags = ET.SubElement(node, "Metadata")
        for k, v in (
            ("wavelength", repr(float(spec.center_nm))),
            ("wavelength_units", "nanometers"),
            ("fwhm", repr(float(spec.fwhm_nm))),
            ("stac_asset", key),
        ):
            ET.SubElement(tags, "MDI", key=k).text = v
        if band.nodata is not None:
            ET.SubElement(node, "NoDataValue").text = repr(band.nodata)
        ET.SubElement(node, "Offset").text = repr(band.offset)
        ET.SubElement(node, "Scale").text = repr(band.scale)
        same = math.isclose(abs(grid.transform.a), res_x) and math.isclose(
            abs(grid.transform.e), res_y
        )
        # bilinear for spectral bands on a coarser grid; nearest keeps codes (e.g. SCL) intact
        resampling = "nearest" if same or band.center_nm is None else "bilinear"
        src = ET.SubElement(node, "SimpleSource", resampling=resampling)
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = gdal_path(href)
        ET.SubElement(src, "SourceBand").text = str(index)
        props = {
            "RasterXSize": str(grid.width),
            "RasterYSize": str(grid.height),
            "DataType": _gdal_type(grid.dtype),
        }
        if grid.block is not None:
            props.update(BlockXSize=str(grid.block[0]), BlockYSize=str(grid.block[1]))
        ET.SubElement(src, "SourceProperties", **props)  # lets GDAL open the source lazily
        ET.SubElement(
            src, "SrcRect", xOff="0", yOff="0", xSize=str(grid.width), ySize=str(grid.height)
        )
        g_left, _, g_right, g_top = _bounds(grid)
        ET.SubElement(
            src,
            "DstRect",
            xOff=_num((g_left - left) / res_x),
            yOff=_num((top - g_top) / res_y),
            xSize=_num((g_right - g_left) / res_x),
            ySize=_num(grid.height * abs(grid.transform.e) / res_y),
        )
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def _write_vrt(xml: str, item_id: str, vrt_dir: str | os.PathLike[str] | None) -> Path:
    """Write the VRT once (named by its content), atomically: temp file + rename."""
    if vrt_dir is None:
        vrt_dir = Path(os.environ.get("RSFM_CACHE", "~/.cache/rsfm")).expanduser() / "vrt"
    folder = Path(vrt_dir)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(xml.encode()).hexdigest()[:16]
    path = folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', item_id)[:80]}-{digest}.vrt"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".vrt.tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(xml)
        os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- small helpers


def _bounds(grid: _Grid) -> tuple[float, float, float, float]:
    return array_bounds(grid.height, grid.width, grid.transform)


def _href(asset: pystac.Asset, base: str | None) -> str:
    href = asset.get_absolute_href() or asset.href
    if base and not urlsplit(href).scheme and not os.path.isabs(href):
        href = make_absolute_href(href, base)
    return href


def _read_error(href: str, err: BaseException) -> Exception:
    explained = explain_error(href, err)
    if type(explained) is UnreadableInputError:  # neither HTTP nor network
        return StacError(href, f"cannot read the STAC JSON ({_one_line(err)})")
    return explained


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)  # float() reads "nan" too


def _gdal_type(dtype: str) -> str:
    """numpy dtype name -> GDAL data type name (uint16 -> UInt16, uint8 -> Byte)."""
    name = np.dtype(dtype).name
    return "Byte" if name == "uint8" else name.title().replace("Uint", "UInt")


def _num(value: float) -> str:
    rounded = round(value)
    return str(rounded) if abs(value - rounded) < 1e-6 else repr(float(value))


def _one_line(err: BaseException) -> str:
    for exc in (err, err.__cause__):
        if exc is not None and str(exc):
            return " ".join(str(exc).split())[:300]
    return type(err).__name__
