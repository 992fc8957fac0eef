"""Tests of the synthetic world: determinism, georeferencing, formats, physics, cache."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from scipy import ndimage

from rsfm.data.synthetic import spectra
from rsfm.data.synthetic import world as world_module
from rsfm.data.synthetic.config import GENERATOR_VERSION, SyntheticWorldConfig, is_multiple
from rsfm.data.synthetic.scenes import render_sensor
from rsfm.data.synthetic.spectra import CLASS_NAMES, LandCover
from rsfm.data.synthetic.world import ensure_synthetic_world, load_manifest, scene_files
from rsfm.sensors import get_sensor, sensor_from_raster

SMALL = SyntheticWorldConfig(seed=7, n_scenes=2, scene_size_m=960.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default world, generated once for the module."""
    return ensure_synthetic_world(tmp_path_factory.mktemp("default") / "world", progress=False)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def pure_pixels(labels: np.ndarray, cls: int) -> np.ndarray:
    """Pixels of ``cls`` whose 3x3 neighbourhood is all ``cls`` (no mixed border pixels)."""
    return ndimage.binary_erosion(labels == cls, iterations=1, border_value=0)


def class_means(world: Path, sensor: str) -> dict[int, np.ndarray]:
    """Mean physical value per class over pure pixels of all scenes (sensor on the label grid)."""
    sums: dict[int, list[np.ndarray]] = {int(c): [] for c in LandCover}
    for image_path, label_path in zip(
        scene_files(world, sensor), scene_files(world, "labels"), strict=True
    ):
        with rasterio.open(image_path) as dataset:
            image = dataset.read().astype(np.float64) * dataset.scales[0] + dataset.offsets[0]
            valid = dataset.dataset_mask() > 0
        labels = read(label_path)[0]
        for cls in sums:
            sums[cls].append(image[:, pure_pixels(labels, cls) & valid])
    return {cls: np.concatenate(v, axis=1).mean(axis=1) for cls, v in sums.items()}


def ndvi(red: float, nir: float) -> float:
    return (nir - red) / (nir + red)


# ----------------------------------------------------------------------------- layout / formats


def test_layout_and_manifest(world: Path) -> None:
    manifest = load_manifest(world)
    config = SyntheticWorldConfig()
    assert manifest["config_hash"] == config.config_hash()
    assert manifest["seed"] == 0 and manifest["version"] == GENERATOR_VERSION
    assert [c["name"] for c in manifest["classes"]] == list(CLASS_NAMES)
    assert len(manifest["scenes"]) == config.n_scenes
    for sensor in (*config.sensors, "labels"):
        paths = scene_files(world, sensor)
        assert [p.parent.name for p in paths] == [f"scene_{i:03d}" for i in range(8)]
        assert all(p.is_file() and p.name == f"{sensor}.tif" for p in paths)
    assert scene_files(world, "s2") == scene_files(world, "sentinel2_l1c")
    with pytest.raises(KeyError, match="enmap"):
        scene_files(world, "enmap")


def test_georeferencing_shared_footprint(world: Path) -> None:
    manifest = load_manifest(world)
    corners = set()
    for scene in manifest["scenes"]:
        epsg = CRS.from_string(scene["crs"]).to_epsg()
        assert 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760
        left, bottom, right, top = scene["bounds"]
        assert left % 60 == 0 and top % 60 == 0 and right - left == 1920 == top - bottom
        corners.add((epsg, left, top))
        for path in scene["files"].values():
            with rasterio.open(world / path) as dataset:
                assert dataset.crs.to_epsg() == epsg
                assert tuple(dataset.bounds) == pytest.approx(tuple(scene["bounds"]))
                assert dataset.transform.b == 0 and dataset.transform.d == 0
                assert dataset.transform.e < 0  # north-up
    assert len(corners) == len(manifest["scenes"])
    assert {c[0] for c in corners} == {32632, 32633}


EXPECTED_FORMATS = {
    "sentinel2_l1c": (13, "uint16", 0, 192),
    "sentinel1_grd": (2, "float32", "nan", 192),
    "landsat8_sr": (6, "int16", -9999, 64),
    "naip": (4, "uint8", None, 960),
    "labels": (1, "uint8", 255, 192),
}


@pytest.mark.parametrize("sensor", list(EXPECTED_FORMATS))
def test_product_formats(world: Path, sensor: str) -> None:
    count, dtype, nodata, size = EXPECTED_FORMATS[sensor]
    with rasterio.open(scene_files(world, sensor)[0]) as dataset:
        assert dataset.count == count and dataset.dtypes[0] == dtype
        assert (dataset.width, dataset.height) == (size, size)
        if nodata == "nan":
            assert math.isnan(dataset.nodata)
        else:
            assert dataset.nodata == nodata
        assert dataset.compression.name.lower() == "deflate"
        block_height, block_width = dataset.block_shapes[0]  # square tiles, not strips
        assert block_height == block_width <= 256 and block_width % 16 == 0
        assert dataset.tags()["RSFM_SENSOR"] == sensor
        if sensor != "labels":
            assert list(dataset.descriptions) == get_sensor(sensor).band_names
            assert float(dataset.tags(1)["wavelength"]) == get_sensor(sensor).bands[0].center_nm
        else:
            assert dataset.read().max() < len(CLASS_NAMES)
            assert dataset.colormap(1)[LandCover.WATER][:3] == spectra.CLASS_COLORS[0]


@pytest.mark.parametrize("sensor", ["sentinel2_l1c", "sentinel1_grd", "landsat8_sr", "naip"])
def test_wavelength_tags_read_back(world: Path, sensor: str) -> None:
    described = sensor_from_raster(scene_files(world, sensor)[0])
    registered = get_sensor(sensor)
    np.testing.assert_allclose(described.wavelengths, registered.wavelengths)
    np.testing.assert_allclose(described.fwhms, registered.fwhms)
    assert [b.name for b in described.bands] == registered.band_names


def test_nodata_wedge_only_in_last_scene(world: Path, tmp_path: Path) -> None:
    paths = scene_files(world, "sentinel2_l1c")
    for path in paths[:-1]:
        assert (read(path) > 0).all()
    last = read(paths[-1])
    empty = (last == 0).all(axis=0)
    assert empty[0, 0] and not empty[-1, -1] and 0.03 < empty.mean() < 0.2
    assert ((last == 0).any(axis=0) == empty).all()  # every band blank together
    assert load_manifest(world)["scenes"][-1]["nodata_wedge"] == ["sentinel2_l1c"]
    config = SyntheticWorldConfig(
        n_scenes=1, scene_size_m=600.0, sensors=("s2",), gsd_m={}, nodata_wedge=False
    )
    plain = ensure_synthetic_world(tmp_path / "plain", config, progress=False)
    assert (read(scene_files(plain, "s2")[0]) > 0).all()


# ----------------------------------------------------------------------------- physics


def test_sentinel2_spectral_plausibility(world: Path) -> None:
    means = class_means(world, "sentinel2_l1c")
    band = {name: i for i, name in enumerate(get_sensor("sentinel2_l1c").band_names)}
    index = {c: ndvi(m[band["B04"]], m[band["B08"]]) for c, m in means.items()}
    assert index[LandCover.FOREST] > 0.6
    assert index[LandCover.WATER] < 0
    water = means[LandCover.WATER]
    assert water[band["B08"]] < water[band["B03"]]
    land = [c for c in LandCover if c not in (LandCover.WATER, LandCover.BARE_SOIL)]
    assert min(land, key=index.__getitem__) == LandCover.BUILT_UP
    for cls in spectra.VEGETATION_CLASSES:
        assert means[cls][band["B08"]] / means[cls][band["B04"]] > 3
    # Swir: vegetation water absorption puts B12 well below B11; soils stay bright.
    assert means[LandCover.FOREST][band["B12"]] < 0.6 * means[LandCover.FOREST][band["B11"]]
    assert means[LandCover.BARE_SOIL][band["B12"]] > 0.25


def test_landsat_agrees_with_sentinel2(world: Path) -> None:
    s2_band = {n: i for i, n in enumerate(get_sensor("sentinel2_l1c").band_names)}
    l8_band = {n: i for i, n in enumerate(get_sensor("landsat8_sr").band_names)}
    pairs = [("B04", "B4"), ("B8A", "B5")]  # red, NIR (B8A matches OLI B5's 865 nm)
    s2_values: dict[int, list[np.ndarray]] = {int(c): [] for c in LandCover}
    l8_values: dict[int, list[np.ndarray]] = {int(c): [] for c in LandCover}
    files = zip(
        *(scene_files(world, s) for s in ("sentinel2_l1c", "landsat8_sr", "labels")), strict=True
    )
    for s2_path, l8_path, label_path in files:
        s2 = read(s2_path)[[s2_band[a] for a, _ in pairs]].astype(float) / 1e4
        l8 = read(l8_path)[[l8_band[b] for _, b in pairs]].astype(float) / 1e4
        s2 = s2.reshape(2, 64, 3, 64, 3).mean(axis=(2, 4))  # onto the 30 m grid
        blocks = read(label_path)[0].reshape(64, 3, 64, 3).transpose(0, 2, 1, 3).reshape(64, 64, 9)
        pure = (blocks == blocks[..., :1]).all(axis=-1) & (s2 > 0).all(axis=0)
        for cls in s2_values:
            cells = pure & (blocks[..., 0] == cls)
            s2_values[cls].append(s2[:, cells])
            l8_values[cls].append(l8[:, cells])
    for cls in s2_values:
        s2_mean = np.concatenate(s2_values[cls], axis=1).mean(axis=1)
        l8_mean = np.concatenate(l8_values[cls], axis=1).mean(axis=1)
        # L1C is top of atmosphere, Landsat is surface: allow the path-radiance difference.
        difference = np.abs(s2_mean - l8_mean)
        assert np.all(difference < 0.02 + 0.1 * l8_mean), (CLASS_NAMES[cls], s2_mean, l8_mean)


def test_sar_backscatter_and_speckle(world: Path) -> None:
    power = {int(c): [] for c in LandCover}
    window_cv = []
    for sar_path, label_path in zip(
        scene_files(world, "s1"), scene_files(world, "labels"), strict=True
    ):
        sigma0 = read(sar_path)
        labels = read(label_path)[0]
        assert np.isfinite(sigma0).all()
        for cls in power:
            power[cls].append(10 ** (sigma0[:, pure_pixels(labels, cls)] / 10))
        # Speckle: coefficient of variation of linear power in 6x6 all-forest windows.
        vv = 10 ** (sigma0[0] / 10)
        tiles = vv.reshape(32, 6, 32, 6).transpose(0, 2, 1, 3).reshape(-1, 36)
        tile_labels = labels.reshape(32, 6, 32, 6).transpose(0, 2, 1, 3).reshape(-1, 36)
        homogeneous = tiles[(tile_labels == LandCover.FOREST).all(axis=1)]
        window_cv.extend(homogeneous.std(axis=1, ddof=1) / homogeneous.mean(axis=1))
    mean_db = {c: 10 * np.log10(np.concatenate(p, axis=1).mean(axis=1)) for c, p in power.items()}
    assert mean_db[LandCover.WATER][0] < mean_db[LandCover.BUILT_UP][0] - 10
    assert all(db[1] < db[0] for db in mean_db.values())  # VH below VV for every class
    looks = SyntheticWorldConfig().sar_looks
    assert len(window_cv) > 100
    assert np.mean(window_cv) == pytest.approx(1 / np.sqrt(looks), rel=0.1)


def test_render_any_band_table_and_thermal() -> None:
    labels = np.full((60, 60), LandCover.FOREST, dtype=np.uint8)
    labels[:, 30:] = LandCover.BARE_SOIL
    labels[30:, :30] = LandCover.WATER
    labels[30:, 30:] = LandCover.BUILT_UP
    enmap = get_sensor("enmap")
    cube = render_sensor(labels, enmap, 30.0, label_gsd_m=10.0, noise=False)
    assert cube.shape == (224, 20, 20)
    wl = enmap.wavelengths

    def at(nm: float, rows: slice, cols: slice) -> float:
        return float(cube[np.argmin(np.abs(wl - nm)), rows, cols].mean())

    top, bottom, left, right = slice(0, 10), slice(10, 20), slice(0, 10), slice(10, 20)
    forest, soil, water = (top, left), (top, right), (bottom, left)
    assert at(800, *forest) > 4 * at(670, *forest)  # red edge
    assert at(550, *forest) > at(670, *forest)  # green bump
    assert at(1450, *forest) < 0.6 * at(1650, *forest)  # leaf water dips
    assert at(1940, *forest) < 0.3 * at(1650, *forest)
    assert at(450, *soil) < at(670, *soil) < at(1650, *soil)  # soil rises
    assert at(1000, *water) < 0.01 < at(500, *water)
    thermal = render_sensor(labels, "landsat8_oli_tirs", 30.0, label_gsd_m=10.0)
    b10 = thermal[get_sensor("landsat8_oli_tirs").band_names.index("B10")]
    assert 270 < b10.min() and b10.max() < 330
    assert b10[10:, 10:].mean() > b10[10:, :10].mean() + 5  # built-up warmer than water


# ----------------------------------------------------------------------------- cache


def test_deterministic_across_directories(tmp_path: Path) -> None:
    first = ensure_synthetic_world(tmp_path / "a", SMALL, progress=False)
    second = ensure_synthetic_world(tmp_path / "b", SMALL, progress=False)
    for sensor in (*SMALL.sensors, "labels"):
        for path_a, path_b in zip(
            scene_files(first, sensor), scene_files(second, sensor), strict=True
        ):
            np.testing.assert_array_equal(read(path_a), read(path_b))
    other = SyntheticWorldConfig(seed=8, n_scenes=1, scene_size_m=960.0)
    third = ensure_synthetic_world(tmp_path / "c", other, progress=False)
    assert not np.array_equal(read(scene_files(third, "s2")[0]), read(scene_files(first, "s2")[0]))


def test_cache_reuse_does_not_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSFM_CACHE", str(tmp_path / "cache"))
    root = ensure_synthetic_world(config=SMALL, progress=False)
    assert root == tmp_path / "cache" / "synthetic" / SMALL.config_hash()
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the world was generated again")

    monkeypatch.setattr(world_module, "_generate_world", fail)
    assert ensure_synthetic_world(config=SMALL, progress=False) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps
    with pytest.raises(ValueError, match="another config"):
        ensure_synthetic_world(root, SyntheticWorldConfig(seed=1, n_scenes=1), progress=False)


def test_interrupted_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    write_labels = world_module._write_labels

    def crash_on_second_scene(*args: object, **kwargs: object) -> Path:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return write_labels(*args, **kwargs)

    monkeypatch.setattr(world_module, "_write_labels", crash_on_second_scene)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_synthetic_world(tmp_path / "world", SMALL, progress=False)
    assert os.listdir(tmp_path) == []  # no final dir, no temp sibling
    monkeypatch.setattr(world_module, "_write_labels", write_labels)
    root = ensure_synthetic_world(tmp_path / "world", SMALL, progress=False)
    assert os.listdir(tmp_path) == ["world"] and (root / "manifest.json").is_file()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple"):
        SyntheticWorldConfig(scene_size_m=1000.0)  # not a multiple of 30 m (Landsat)
    with pytest.raises(KeyError, match="unknown sensor"):
        SyntheticWorldConfig(sensors=("sentinel7",))
    assert SyntheticWorldConfig().fine_gsd_m() == 2.0


def test_scene_size_must_be_a_whole_multiple_of_every_gsd() -> None:
    """The nesting rule the config checks (10/20/30/60 m grids share origins)."""
    assert is_multiple(960.0, 30.0) and not is_multiple(1000.0, 30.0)


def test_landscape_scale_one_is_the_default_world() -> None:
    """The option is opt-in: at 1 the config, its hash (cache folder) and the pixels are the
    default world's (smarties-tiny@1.0.0 and the tests were made on it)."""
    from rsfm.data.synthetic.scenes import generate_scene

    default = SyntheticWorldConfig()
    assert default.config_hash() == "66c0adeddb99a53b"  # the default cache folder, as before
    assert "landscape_scale" not in default.to_dict()
    explicit = SyntheticWorldConfig(seed=7, n_scenes=1, scene_size_m=960.0, landscape_scale=1)
    small = SyntheticWorldConfig(seed=7, n_scenes=1, scene_size_m=960.0)
    assert explicit.config_hash() == small.config_hash()
    a, b = generate_scene(explicit, 0), generate_scene(small, 0)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.fields, b.fields)
    np.testing.assert_array_equal(
        render_sensor(a, "sentinel2_l1c"), render_sensor(b, "sentinel2_l1c")
    )


def test_landscape_scale_gives_smoother_scenes_in_their_own_cache_folder() -> None:
    from rsfm.data.synthetic.scenes import generate_scene

    base = dict(seed=7, n_scenes=1, scene_size_m=960.0)
    scaled = SyntheticWorldConfig(**base, landscape_scale=4.0)
    assert scaled.config_hash() != SyntheticWorldConfig(**base).config_hash()
    assert scaled.to_dict()["landscape_scale"] == 4.0
    assert SyntheticWorldConfig(**scaled.to_dict()) == scaled  # the manifest's config reads back

    def edges(labels: np.ndarray) -> float:  # share of pixels whose right/lower neighbour differs
        return float(np.mean(labels[:, 1:] != labels[:, :-1]) + np.mean(labels[1:] != labels[:-1]))

    def roughness(fields: np.ndarray) -> float:  # mean squared step between neighbours
        return float(np.mean(np.diff(fields, axis=-1) ** 2))

    scenes = [generate_scene(SyntheticWorldConfig(**base, landscape_scale=s), 0) for s in (1, 4)]
    assert edges(scenes[1].labels) < 0.5 * edges(scenes[0].labels)
    assert roughness(scenes[1].fields) < 0.5 * roughness(scenes[0].fields)
    assert len(np.unique(scenes[1].labels)) >= 3  # still a landscape, not one class


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_landscape_scale_must_be_positive_and_finite(scale: float) -> None:
    with pytest.raises(ValueError, match="landscape_scale"):
        SyntheticWorldConfig(landscape_scale=scale)
