"""STAC inputs: a static catalog written with pystac resolves to band-stacking VRTs whose bands,
wavelengths, nodata and scale come from eo:bands / raster:bands (or STAC 1.1 bands, or the SAR
extension), whose pixels equal the assets', read from disk, over loopback HTTP and from a
minimal fake STAC API search; missing band metadata or CRS, and unreachable catalogues, get
clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.extensions.eo import Band as EOBand
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from test_remote_inputs import RangeServer, free_port, scene, server, write_cog

from rsfm.data.errors import (
    BandMismatchError,
    HTTPStatusError,
    InputBandMismatchError,
    ItemMissingCRSError,
    MissingBandMetadataError,
    StacError,
    UnreachableURLError,
)
from rsfm.data.inputs import open_input, resolve_inputs
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.remote import set_gdal_defaults
from rsfm.data.stac import parse_search
from rsfm.sensors import get_sensor, radar_wavelength_nm, sensor_from_raster

__all__ = ["server"]  # the loopback HTTP fixture, shared with test_remote_inputs

ORIGIN = (500_000.0, 5_000_000.0)
# Sentinel-2 (S2A) centre / FWHM in micrometres, as STAC's eo:bands states them.
BANDS = [
    ("B02", 0.4924, 0.066),
    ("B03", 0.5598, 0.036),
    ("B04", 0.6646, 0.031),
    ("B08", 0.8328, 0.106),
]
WHEN = datetime(2021, 6, 1, 10, 30, tzinfo=UTC)
SIZE = 128


def stac_item(item_id: str, folder: Path, data: np.ndarray, when: datetime) -> pystac.Item:
    """An item with one single-band COG asset per band (eo:bands + raster:bands), proj: info,
    a thumbnail and a JP2 twin of B02 (both left out of the stack)."""
    transform = from_origin(*ORIGIN, 10, 10)
    west, north = ORIGIN
    bbox = [west, north - SIZE * 10, west + SIZE * 10, north]  # in UTM: fine for a test
    item = pystac.Item(item_id, None, bbox, when, {})
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(epsg=32633, shape=[SIZE, SIZE], transform=list(transform)[:6])
    for i, (name, centre, fwhm) in enumerate(BANDS):
        path = write_cog(folder / f"{item_id}_{name}.tif", data[i : i + 1], nodata=0)
        asset = pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(name, asset)
        EOExtension.ext(asset, add_if_missing=True).bands = [
            EOBand.create(name=name, center_wavelength=centre, full_width_half_max=fwhm)
        ]
        RasterExtension.ext(asset, add_if_missing=True).bands = [
            RasterBand.create(
                nodata=0, data_type=DataType.UINT16, scale=1e-4, offset=-0.1, spatial_resolution=10
            )
        ]
    twin = pystac.Asset(str(folder / f"{item_id}_B02.jp2"), media_type=pystac.MediaType.JPEG2000)
    twin.roles = ["data"]
    item.add_asset("B02-jp2", twin)
    EOExtension.ext(twin, add_if_missing=True).bands = [
        EOBand.create(name="B02", center_wavelength=0.4924, full_width_half_max=0.066)
    ]
    item.add_asset("thumbnail", pystac.Asset("thumb.png", media_type=pystac.MediaType.PNG))
    item.assets["thumbnail"].roles = ["thumbnail"]
    return item


def write_catalog(root: Path, items: int = 2) -> tuple[Path, list[np.ndarray]]:
    """A Collection of ``items`` items saved self-contained under ``root`` (relative hrefs)."""
    extent = pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[WHEN, None]]),
    )
    collection = pystac.Collection("demo-s2", "Sentinel-2 like test scenes", extent)
    stacks = []
    for k in range(items):
        data = scene(len(BANDS), SIZE, seed=10 + k)
        data[:, :3, :5] = 0  # a nodata corner
        stacks.append(data)
        collection.add_item(stac_item(f"scene-{k}", root / "assets", data, WHEN.replace(day=1 + k)))
    collection.normalize_hrefs(str(root / "stac"))
    collection.make_all_asset_hrefs_relative()
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "stac" / "collection.json", stacks


def test_static_catalog_resolves_to_bands_and_reads_like_the_assets(tmp_path: Path) -> None:
    catalog, stacks = write_catalog(tmp_path)
    inputs = resolve_inputs([str(catalog)], vrt_dir=tmp_path / "vrt")
    assert [i.item_id for i in inputs] == ["scene-0", "scene-1"]
    for k, (found, data) in enumerate(zip(inputs, stacks, strict=True)):
        sensor = found.sensor
        assert sensor.name == "demo-s2" and sensor.band_names == ["B02", "B03", "B04", "B08"]
        np.testing.assert_allclose(sensor.wavelengths, [492.4, 559.8, 664.6, 832.8], rtol=1e-6)
        np.testing.assert_allclose(sensor.fwhms, [66, 36, 31, 106], rtol=1e-6)
        assert [b.gsd_m for b in sensor.bands] == [10.0] * 4
        assert found.assets == ("B02", "B03", "B04", "B08")  # no thumbnail, no JP2 twin
        assert found.nodatavals == (0.0,) * 4 and found.nodata == 0.0
        assert found.scales == (1e-4,) * 4 and found.offsets == (-0.1,) * 4
        assert found.datetime == WHEN.replace(day=1 + k) and found.crs == "EPSG:32633"
        assert found.path.endswith(".vrt") and not found.remote
        with open_input(found) as ds:
            np.testing.assert_array_equal(ds.read(), data)
            assert ds.crs == "EPSG:32633" and ds.transform == from_origin(*ORIGIN, 10, 10)
            assert ds.descriptions == ("B02", "B03", "B04", "B08")
            assert ds.nodatavals == (0.0,) * 4
            assert ds.scales == (1e-4,) * 4 and ds.offsets == (-0.1,) * 4
            assert ds.tags(1)["stac_asset"] == "B02"
        # Readers that know nothing of STAC see the same bands through the VRT's tags.
        np.testing.assert_allclose(sensor_from_raster(found.path).wavelengths, sensor.wavelengths)
    # The folder holding collection.json, and one item's own JSON, name the same VRTs.
    folder = resolve_inputs([str(catalog.parent)], vrt_dir=tmp_path / "vrt")
    assert [i.path for i in folder] == [i.path for i in inputs]
    item_json = catalog.parent / "scene-1" / "scene-1.json"
    assert resolve_inputs([str(item_json)], vrt_dir=tmp_path / "vrt")[0].path == inputs[1].path


def test_assets_pick_and_order_the_bands(tmp_path: Path) -> None:
    catalog, stacks = write_catalog(tmp_path, items=1)
    (found,) = resolve_inputs([str(catalog)], assets=["B08", "B04"], vrt_dir=tmp_path)
    np.testing.assert_allclose(found.wavelengths, [832.8, 664.6], rtol=1e-6)
    with open_input(found) as ds:
        np.testing.assert_array_equal(ds.read(), stacks[0][[3, 2]])
    with pytest.raises(StacError, match=r"has no asset\(s\) \['B99'\]; it has \['B02'"):
        resolve_inputs([str(catalog)], assets=["B99"], vrt_dir=tmp_path)


def write_item(path: Path, assets: dict, properties: dict | None = None) -> Path:
    """A STAC 1.1 item JSON written by hand (no pystac helpers: the raw forms on the wire)."""
    doc = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": path.stem,
        "geometry": None,
        "properties": {"datetime": "2022-03-04T05:06:07Z", **(properties or {})},
        "links": [],
        "assets": assets,
    }
    path.write_text(json.dumps(doc))
    return path


def test_stac_1_1_bands_and_sar_polarisations(tmp_path: Path) -> None:
    data = scene(2, 64, seed=5)
    write_cog(tmp_path / "multi.tif", data)
    bands = [
        {"name": "red", "eo:center_wavelength": 0.665, "eo:full_width_half_max": 0.03},
        {"name": "nir", "eo:center_wavelength": 0.842, "eo:full_width_half_max": 0.115},
    ]
    for band in bands:
        band.update({"nodata": 65535, "data_type": "uint16", "raster:scale": 2e-4})
    optical = write_item(
        tmp_path / "optical.json",
        {"multi": {"href": "multi.tif", "type": "image/tiff", "roles": ["data"], "bands": bands}},
        {"proj:code": "EPSG:32633"},
    )
    (found,) = resolve_inputs([str(optical)], vrt_dir=tmp_path)
    np.testing.assert_allclose(found.wavelengths, [665.0, 842.0], rtol=1e-6)
    np.testing.assert_allclose(found.sensor.fwhms, [30.0, 115.0], rtol=1e-6)
    assert found.nodatavals == (65535.0, 65535.0) and found.scales == (2e-4, 2e-4)
    assert found.assets == ("multi", "multi") and found.sensor.band_names == ["red", "nir"]
    with open_input(found) as ds:
        np.testing.assert_array_equal(ds.read(), data)

    radar = scene(2, 64, seed=6).astype(np.float32)
    for i, pol in enumerate(("vv", "vh")):
        write_cog(tmp_path / f"{pol}.tif", radar[i : i + 1])
    sar = write_item(
        tmp_path / "sar.json",
        {p: {"href": f"{p}.tif", "type": "image/tiff", "roles": ["data"]} for p in ("vv", "vh")},
        {"sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"]},
    )
    (found,) = resolve_inputs([str(sar)], vrt_dir=tmp_path)  # no proj: the COGs have a CRS
    want = [radar_wavelength_nm(5.405, "VV"), radar_wavelength_nm(5.405, "VH")]
    np.testing.assert_allclose(found.wavelengths, want, rtol=1e-6)
    assert found.sensor.modality == "sar" and found.crs == "EPSG:32633"
    with open_input(found) as ds:
        np.testing.assert_array_equal(ds.read(), radar)


def test_coarser_assets_are_resampled_onto_the_finest_grid(tmp_path: Path) -> None:
    fine, coarse = scene(1, 64, seed=7), scene(1, 32, seed=8)
    write_cog(tmp_path / "b04.tif", fine, res=10)
    coarse_path = write_cog(tmp_path / "b05.tif", coarse, res=20)
    eo = {"B04": (0.6646, 0.031, 10), "B05": (0.7041, 0.015, 20)}
    assets = {
        key: {
            "href": f"{key.lower()}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "eo:bands": [{"name": key, "center_wavelength": c, "full_width_half_max": w}],
            "raster:bands": [{"spatial_resolution": gsd}],
        }
        for key, (c, w, gsd) in eo.items()
    }
    (found,) = resolve_inputs([str(write_item(tmp_path / "mixed.json", assets))], vrt_dir=tmp_path)
    assert [b.gsd_m for b in found.sensor.bands] == [10.0, 20.0]
    with open_input(found) as ds, rasterio.open(coarse_path) as src:
        assert (ds.width, ds.height, ds.res) == (64, 64, (10.0, 10.0))
        np.testing.assert_array_equal(ds.read(1), fine[0])
        upsampled = src.read(1, out_shape=(64, 64), resampling=Resampling.bilinear)
        np.testing.assert_allclose(ds.read(2).astype(float), upsampled, atol=1)


def test_assets_without_band_metadata_need_a_sensor(tmp_path: Path) -> None:
    data = scene(3, 32, seed=9)
    write_cog(tmp_path / "rgb.tif", data)
    asset = {"image": {"href": "rgb.tif", "type": "image/tiff", "roles": ["data"]}}
    item = write_item(tmp_path / "plain.json", asset, {"proj:code": "EPSG:32633"})
    with pytest.raises(MissingBandMetadataError) as info:
        resolve_inputs([str(item)], vrt_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'rgb.tif'}: asset 'image' of STAC item 'plain'")
    assert "--sensor" in message and "\n" not in message
    assert isinstance(info.value, BandMismatchError)
    (found,) = resolve_inputs([str(item)], sensor="rgb", vrt_dir=tmp_path)
    np.testing.assert_array_equal(found.wavelengths, get_sensor("rgb").wavelengths)
    with open_input(found) as ds:
        np.testing.assert_array_equal(ds.read(), data)
    with pytest.raises(InputBandMismatchError, match="has 13 bands, the chosen assets"):
        resolve_inputs([str(item)], sensor="sentinel2_l1c", vrt_dir=tmp_path)


def test_an_item_without_a_crs_is_refused(tmp_path: Path) -> None:
    write_cog(tmp_path / "nocrs.tif", scene(1, 32), crs=None)
    asset = {
        "B04": {
            "href": "nocrs.tif",
            "type": "image/tiff",
            "eo:bands": [{"name": "B04", "center_wavelength": 0.6646}],
        }
    }
    item = write_item(tmp_path / "nocrs.json", asset)
    with pytest.raises(ItemMissingCRSError, match=r"STAC item 'nocrs' has no proj:code") as info:
        resolve_inputs([str(item)], vrt_dir=tmp_path)
    assert str(info.value).startswith(str(item))
    # The item's proj:code georeferences a raster that has none (the VRT carries the CRS).
    item = write_item(tmp_path / "withcrs.json", asset, {"proj:code": "EPSG:32633"})
    (found,) = resolve_inputs([str(item)], vrt_dir=tmp_path)
    with open_input(found) as ds:
        assert ds.crs == "EPSG:32633"


def test_catalog_over_http_reads_through_vsicurl(server: RangeServer, tmp_path: Path) -> None:
    catalog, stacks = write_catalog(server.root)
    url = server.url("stac/collection.json")
    inputs = resolve_inputs([url], vrt_dir=tmp_path / "vrt")
    asset_url = server.url("assets/scene-0_B02.tif")
    assert inputs[0].hrefs[0] == f"/vsicurl/{asset_url}" and inputs[0].remote
    assert inputs[0].source == server.url("stac/scene-0/scene-0.json")
    # proj: and raster:bands say all the VRT needs: resolving fetched JSON only, no pixels.
    assert not [r for r in server.requests if r[1].endswith(".tif")]
    with open_input(inputs[1]) as ds:
        np.testing.assert_array_equal(
            ds.read(window=((20, 84), (30, 94))), stacks[1][:, 20:84, 30:94]
        )


def test_a_data_config_reads_stac_items_over_http(
    server: RangeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SensorRasterDataset, the reader behind the GeoTIFF datamodules, on the VRT paths."""
    from rsfm.data.remote import GDAL_REMOTE_OPTIONS

    for key in GDAL_REMOTE_OPTIONS:
        monkeypatch.delenv(key, raising=False)
    set_gdal_defaults()  # what a datamodule does once before building datasets
    _, stacks = write_catalog(server.root, items=1)
    (found,) = resolve_inputs([server.url("stac/collection.json")], vrt_dir=tmp_path)
    dataset = SensorRasterDataset([found.path], sensor=found.sensor)
    x0, y0 = ORIGIN
    sample = dataset[slice(x0 + 100, x0 + 420), slice(y0 - 520, y0 - 200)]  # cols 10:42, rows 20:52
    np.testing.assert_array_equal(sample["image"].numpy(), stacks[0][:, 20:52, 10:42])
    np.testing.assert_allclose(sample["wavelengths"].numpy(), found.wavelengths)
    assert sample["sensor"] == "demo-s2" and sample["crs"] == "EPSG:32633"
    assert any(r[1] == "/assets/scene-0_B08.tif" and r[2] for r in server.requests)


def test_stac_api_search_with_pystac_client(server: RangeServer, tmp_path: Path) -> None:
    """A minimal STAC API (landing page + POST /search) on the loopback server."""
    _, stacks = write_catalog(server.root)
    items = [
        pystac.read_file(str(server.root / "stac" / f"scene-{k}" / f"scene-{k}.json"))
        for k in range(2)
    ]
    for item in items:
        for asset in item.assets.values():
            relative = Path(asset.get_absolute_href()).relative_to(server.root)
            asset.href = server.url(str(relative))
    root = server.url("api")
    landing = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "fake-api",
        "description": "loopback STAC API",
        "conformsTo": [
            "https://api.stacspec.org/v1.0.0/core",
            "https://api.stacspec.org/v1.0.0/item-search",
        ],
        "links": [
            {"rel": "self", "href": root, "type": "application/json"},
            {"rel": "root", "href": root, "type": "application/json"},
            {
                "rel": "search",
                "href": f"{root}/search",
                "type": "application/geo+json",
                "method": "POST",
            },
        ],
    }
    searches: list[dict] = []

    def search(body: bytes | None) -> bytes:
        searches.append(json.loads(body or b"{}"))
        wanted = searches[-1].get("ids")
        features = [i.to_dict() for i in items if not wanted or i.id in wanted]
        return json.dumps({"type": "FeatureCollection", "features": features, "links": []}).encode()

    server.routes.update({"/api": lambda _: json.dumps(landing).encode(), "/api/search": search})
    spec = f"stac+{root}?collections=demo-s2&bbox=14,45,16,46&datetime=2021-06-01/2021-06-30"
    inputs = resolve_inputs([spec], vrt_dir=tmp_path)
    assert [i.item_id for i in inputs] == ["scene-0", "scene-1"]
    assert searches[0]["collections"] == ["demo-s2"] and searches[0]["bbox"] == [14, 45, 16, 46]
    assert searches[0]["datetime"].startswith("2021-06-01")
    with open_input(inputs[1]) as ds:
        np.testing.assert_array_equal(ds.read(), stacks[1])
    (one,) = resolve_inputs([f"stac+{root}?ids=scene-1"], vrt_dir=tmp_path)
    assert one.path == inputs[1].path


def test_unreachable_and_malformed_stac_sources(server: RangeServer, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UnreachableURLError, match="cannot reach the server"):
        resolve_inputs([f"{dead}/catalog.json"])
    with pytest.raises(UnreachableURLError):
        resolve_inputs([f"stac+{dead}/api?collections=x"])
    with pytest.raises(HTTPStatusError, match=r"not found \(HTTP 404\)") as info:
        resolve_inputs([server.url("stac/catalog.json")])
    assert info.value.status == 404
    with pytest.raises(StacError, match="unknown search parameter 'colections'"):
        parse_search("https://api.example/v1?colections=a")
    (tmp_path / "other.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(StacError, match="not a usable STAC object"):
        resolve_inputs([str(tmp_path / "other.json")])
