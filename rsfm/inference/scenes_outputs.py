"""What a many-scene ``rsfm tile`` run leaves beside its COGs: STAC Items, a STAC Collection and
VRT mosaics (one per output kind and CRS).

Items are STAC 1.1 with the projection extension; provenance is under ``rsfm:`` (model
``name@version``, weights sha256, input item id / file sha256, options, rsfm version). The VRT
is written as XML here (GDAL's Python bindings are not a dependency): a ``ComplexSource`` per
scene with its nodata, at the finest resolution among the scenes, later scenes on top.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pystac
import rasterio
from pystac.extensions.projection import ProjectionExtension
from rasterio.warp import transform_bounds

MEDIA_COG = pystac.MediaType.COG
_VRT_TYPES = {
    "uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
    "int32": "Int32", "float32": "Float32", "float64": "Float64",
}  # fmt: skip


def item_path(out_dir: Path, kind: str, scene_id: str) -> Path:
    """Where a scene's STAC Item is written."""
    return Path(out_dir) / kind / f"{scene_id}.json"


def _datetime(value: str | None, fallback: str) -> datetime:
    stamp = datetime.fromisoformat(value or fallback)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def build_item(out_dir: Path, kind: str, record: dict[str, Any]) -> pystac.Item:
    """The STAC Item of one finished scene (from its journal record and its COG)."""
    cog = Path(out_dir) / record["output"]
    with rasterio.open(cog) as src:
        bounds, crs, shape = src.bounds, src.crs, [src.height, src.width]
        transform = list(src.transform)[:6]
        descriptions = list(src.descriptions)
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    geometry = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                         [west, south]]],
    }  # fmt: skip
    source = record["input"]
    acquired = source.get("datetime")
    item = pystac.Item(
        id=record["scene"],
        geometry=geometry,
        bbox=[west, south, east, north],
        datetime=_datetime(acquired, record["finished"]),
        properties={
            "created": record["finished"],
            "rsfm:kind": kind,
            "rsfm:model": record["model"],
            "rsfm:weights_sha256": record["weights_sha256"],
            "rsfm:input": {k: v for k, v in source.items() if v not in (None, [])},
            "rsfm:datetime_is": "acquisition" if acquired else "processing",
            "rsfm:options": record["options"],
            "rsfm:resume_key": record["resume_key"],
            "rsfm:version": record["rsfm_version"],
            **({"rsfm:class_names": record["class_names"]} if record.get("class_names") else {}),
        },
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code = crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}"
    if crs.to_epsg() is None:
        projection.wkt2 = crs.to_wkt()
    projection.shape, projection.transform = shape, transform
    projection.bbox = list(bounds)
    item.add_asset(
        kind,
        pystac.Asset(
            href=f"./{cog.name}",
            media_type=MEDIA_COG,
            roles=["data"],
            title=f"{kind} of {record['scene']} by {record['model']}",
            extra_fields={"rsfm:sha256": record["output_sha256"], "rsfm:bands": descriptions},
        ),
    )
    href = source.get("source")
    if href:
        is_stac = str(href).lower().endswith((".json", ".geojson")) or source.get("item_id")
        item.add_link(
            pystac.Link(
                "derived_from",
                str(href),
                media_type=pystac.MediaType.JSON if is_stac else pystac.MediaType.GEOTIFF,
            )
        )
    return item


def write_item(out_dir: Path, kind: str, record: dict[str, Any]) -> Path:
    """Write a finished scene's Item beside its COG (replaced atomically)."""
    path = item_path(out_dir, kind, record["scene"])
    item = build_item(out_dir, kind, record)
    item.set_self_href(str(path.resolve()))
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def write_collection(out_dir: Path, kind: str, records: dict[str, dict[str, Any]]) -> Path:
    """The kind's Collection over every finished scene in ``out_dir`` (self-contained, relative
    links); scene Items are rewritten with their links to it."""
    folder = Path(out_dir) / kind
    items = []
    for scene_id, record in sorted(records.items()):
        path = item_path(out_dir, kind, scene_id)
        if record.get("status") == "done" and (Path(out_dir) / record["output"]).is_file():
            items.append(pystac.Item.from_file(str(path)) if path.is_file() else
                         build_item(out_dir, kind, record))  # fmt: skip
    if items:
        extent = pystac.Extent(
            pystac.SpatialExtent([_union([i.bbox for i in items])]),
            pystac.TemporalExtent([[min(i.datetime for i in items),
                                    max(i.datetime for i in items)]]),
        )  # fmt: skip
    else:
        now = datetime.now(UTC)
        extent = pystac.Extent(
            pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[now, now]])
        )
    models = sorted({i.properties["rsfm:model"] for i in items})
    collection = pystac.Collection(
        id=f"rsfm-tile-{kind}",
        title=f"rsfm tile {kind}",
        description=f"{kind} maps written by rsfm tile ({', '.join(models) or 'no scene yet'}); "
        "one Cloud-Optimized GeoTIFF per input scene, provenance under rsfm:",
        extent=extent,
        license="other",
        summaries=pystac.Summaries({"rsfm:model": models}),
        extra_fields={"rsfm:kind": kind},
    )
    collection.add_items(items)
    for item in items:  # Items stay beside their COGs: <kind>/<scene>.json
        item.set_self_href(str(item_path(out_dir, kind, item.id).resolve()))
    collection.set_self_href(str((folder / "collection.json").resolve()))
    collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / "collection.json"


def _union(boxes: list[list[float]]) -> list[float]:
    array = np.asarray(boxes, dtype=float)
    return [*array[:, :2].min(axis=0).tolist(), *array[:, 2:].max(axis=0).tolist()]


def write_mosaics(out_dir: Path, kind: str, records: dict[str, dict[str, Any]]) -> list[Path]:
    """One VRT per CRS over the kind's finished scenes: ``<kind>.vrt`` when they share one CRS,
    else ``<kind>-<crs>.vrt`` each (a VRT has one CRS; scenes are never reprojected here)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for _, record in sorted(records.items()):
        cog = Path(out_dir) / record.get("output", "")
        if record.get("status") != "done" or not cog.is_file():
            continue
        with rasterio.open(cog) as src:
            if src.transform.b or src.transform.d:  # rotated: not a north-up mosaic source
                continue
            meta = {
                "path": cog, "crs": src.crs, "transform": src.transform, "width": src.width,
                "height": src.height, "count": src.count, "dtype": src.dtypes[0],
                "nodata": src.nodata, "descriptions": src.descriptions,
                "block": src.block_shapes[0],
            }  # fmt: skip
        groups.setdefault(meta["crs"].to_wkt(), []).append(meta)
    written = []
    for wkt, scenes in groups.items():
        crs = scenes[0]["crs"]
        if len(groups) == 1:
            name = f"{kind}.vrt"
        else:
            code = crs.to_epsg()
            label = f"EPSG{code}" if code else hashlib.sha1(wkt.encode()).hexdigest()[:8]
            name = f"{kind}-{label}.vrt"
        path = Path(out_dir) / name
        first = scenes[0]
        same = [s for s in scenes if (s["count"], s["dtype"]) == (first["count"], first["dtype"])]
        tmp = path.with_name(f"{path.name}.tmp")
        tmp.write_text(_vrt_xml(same, Path(out_dir)))
        tmp.replace(path)
        written.append(path)
    return written


def _vrt_xml(scenes: list[dict[str, Any]], folder: Path) -> str:
    xres = min(s["transform"].a for s in scenes)
    yres = max(s["transform"].e for s in scenes)  # negative: the finest is the largest
    west = min(s["transform"].c for s in scenes)
    north = max(s["transform"].f for s in scenes)
    east = max(s["transform"].c + s["width"] * s["transform"].a for s in scenes)
    south = min(s["transform"].f + s["height"] * s["transform"].e for s in scenes)
    width, height = round((east - west) / xres), round((south - north) / yres)
    first = scenes[0]
    dtype = _VRT_TYPES[first["dtype"]]
    nodata = first["nodata"]
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"  <SRS>{escape(first['crs'].to_wkt())}</SRS>",
        f"  <GeoTransform>{west!r}, {xres!r}, 0.0, {north!r}, 0.0, {yres!r}</GeoTransform>",
    ]
    for band in range(1, first["count"] + 1):
        lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{_number(nodata)}</NoDataValue>")
        description = first["descriptions"][band - 1]
        if description:
            lines.append(f"    <Description>{escape(description)}</Description>")
        for scene in scenes:
            t = scene["transform"]
            x_off, y_off = (t.c - west) / xres, (t.f - north) / yres
            x_size = scene["width"] * t.a / xres
            y_size = scene["height"] * t.e / yres
            rel = scene["path"].relative_to(folder).as_posix()
            block_y, block_x = scene["block"]
            lines += [
                "    <ComplexSource>",
                f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>',
                f"      <SourceBand>{band}</SourceBand>",
                f'      <SourceProperties RasterXSize="{scene["width"]}" '
                f'RasterYSize="{scene["height"]}" DataType="{dtype}" '
                f'BlockXSize="{block_x}" BlockYSize="{block_y}"/>',
                f'      <SrcRect xOff="0" yOff="0" xSize="{scene["width"]}" '
                f'ySize="{scene["height"]}"/>',
                f'      <DstRect xOff="{x_off!r}" yOff="{y_off!r}" xSize="{x_size!r}" '
                f'ySize="{y_size!r}"/>',
            ]
            if scene["nodata"] is not None:
                lines.append(f"      <NODATA>{_number(scene['nodata'])}</NODATA>")
            lines.append("    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return "nan" if np.isnan(value) else repr(float(value))
