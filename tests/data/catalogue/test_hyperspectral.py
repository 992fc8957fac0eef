"""The hyperspectral catalogue loaders on the real samples in ../shared/data (skip when absent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import scipy.io
import torch
from rasterio.windows import Window

from rsfm.data.catalogue import (
    SPLITS,
    DatasetNotFoundError,
    chip_sample,
    dataset_info,
    load_dataset,
)
from rsfm.data.catalogue.hyperspectral import (
    ENMAP_CLASSES,
    ENMAP_IMAGE,
    ENMAP_LABEL,
    INDIAN_PINES_CLASSES,
    JASPER_ENDMEMBERS,
    MUUFL_CLASSES,
    enmap_scene_label,
    few_label_split,
    load_enmap_potsdam,
    load_indian_pines,
    load_indian_pines_spatial,
    load_jasper_ridge,
    load_muufl,
    read_indian_pines,
)
from rsfm.sensors import get_sensor, sensor_from_raster

pytestmark = pytest.mark.shared_data

Samples = dict[str, list[dict[str, Any]]]


def splits_of(name: str, root: Path) -> Samples:
    """``{split: samples}`` of a registered dataset."""
    return {split: load_dataset(name, split, root=root).samples for split in SPLITS}


def check_contract(samples: list[dict[str, Any]], n_bands: int, n_classes: int = 0) -> None:
    """Band count == wavelengths, finite float32 image, mask ids in [-1, n_classes)."""
    for s in samples:
        image = s["image"]
        assert image.dtype == torch.float32 and image.ndim == 3
        assert image.shape[0] == len(s["wavelengths"]) == n_bands
        assert torch.isfinite(image).all() and s["valid"].shape == image.shape[1:]
        if n_classes:
            assert s["mask"].dtype == torch.int64 and s["mask"].shape == image.shape[1:]
            assert s["mask"].min() >= -1 and s["mask"].max() < n_classes


def check_disjoint(by_split: Samples, shape: tuple[int, int]) -> np.ndarray:
    """Every split non-empty, no scene pixel in two splits; returns the owner map."""
    assert all(by_split[split] for split in SPLITS)
    owner = np.full(shape, -1)
    for k, split in enumerate(SPLITS):
        for s in by_split[split]:
            r0, r1, c0, c1 = s["window"]
            assert np.isin(owner[r0:r1, c0:c1], (-1, k)).all(), f"{s['id']} in two splits"
            owner[r0:r1, c0:c1] = k
    return owner


def check_pixel_split(by_split: Samples, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Full-scene masks: no labelled pixel in two splits; returns each split's labelled map."""
    labelled = {}
    for split in SPLITS:
        (s,) = by_split[split]
        assert s["window"] == (0, shape[0], 0, shape[1])
        labelled[split] = s["mask"].numpy() >= 0
    overlap = sum(m.astype(int) for m in labelled.values())
    assert overlap.max() <= 1, "a pixel is labelled in two splits"
    return labelled


# ----------------------------------------------------------------------------- EnMAP Potsdam


@pytest.fixture(scope="module")
def enmap(shared_data: Path) -> Samples:
    return splits_of("enmap_potsdam", shared_data)


def enmap_bad_waves(path: Path) -> tuple[list[float], list[float], float]:
    """The file's good and bad (``bbl`` 0) band wavelengths, and its nodata value."""
    with rasterio.open(path) as src:
        tags = [src.tags(i) for i in range(1, src.count + 1)]
        nodata = src.nodata
    assert [i + 1 for i, t in enumerate(tags) if t["bbl"] == "0"] == list(range(130, 136))
    good = [float(t["wavelength"]) for t in tags if t["bbl"] != "0"]
    bad = [float(t["wavelength"]) for t in tags if t["bbl"] == "0"]
    return good, bad, nodata


def check_enmap(samples: list[dict[str, Any]], path: Path) -> None:
    """Bad bands absent from image and wavelengths (and named), no NaN or nodata value."""
    good, bad, nodata = enmap_bad_waves(path)
    check_contract(samples, 218, len(ENMAP_CLASSES))
    for s in samples:
        assert s["sensor"] == "enmap" and s["gsd"] == 30.0 and s["valid"].all()
        assert len(s["bad_bands"]) == 6 and all("Nanometers" in b for b in s["bad_bands"])
        kept = s["wavelengths"].numpy()
        assert not np.isin(np.float32(bad), kept).any()
        np.testing.assert_allclose(kept, good)
        assert not torch.isnan(s["image"]).any() and (s["image"] != nodata).all()


def test_enmap_drops_bad_bands(enmap: Samples, shared_data: Path) -> None:
    for samples in enmap.values():
        check_enmap(samples, shared_data / "enmap_potsdam" / ENMAP_IMAGE)


def test_enmap_split_labels_and_georef(enmap: Samples, shared_data: Path) -> None:
    folder = shared_data / "enmap_potsdam"
    owner = check_disjoint(enmap, shape=(32, 32))
    assert (owner >= 0).all()  # 4 chips of 16 px tile the 32x32 tile exactly
    assert {k: [s["window"] for s in v] for k, v in enmap.items()} == {
        "train": [(0, 16, 0, 16)],
        "val": [(16, 32, 0, 16)],
        "test": [(0, 16, 16, 32), (16, 32, 16, 32)],
    }
    with rasterio.open(folder / ENMAP_IMAGE) as src, rasterio.open(folder / ENMAP_LABEL) as lab:
        label = lab.read(1)
        good = [src.tags(i)["bbl"] != "0" for i in range(1, src.count + 1)]
        for samples in enmap.values():
            for s in samples:
                r0, r1, c0, c1 = s["window"]
                window = Window(c0, r0, c1 - c0, r1 - r0)
                assert s["transform"] == src.window_transform(window) and s["crs"] == src.crs
                np.testing.assert_array_equal(s["image"].numpy(), src.read(window=window)[good])
                np.testing.assert_array_equal(s["mask"].numpy(), label[r0:r1, c0:c1] - 1)
    # the tile's label is the full-scene 30 m label's window at the tile
    scene, crs, transform = enmap_scene_label(folder)
    assert scene.shape == (200, 330) and crs == enmap["train"][0]["crs"]
    col0 = round((enmap["train"][0]["transform"].c - transform.c) / 30.0)
    for samples in enmap.values():
        for s in samples:
            r0, r1, c0, c1 = s["window"]
            np.testing.assert_array_equal(s["mask"].numpy(), scene[r0:r1, col0 + c0 : col0 + c1])
    assert set(np.unique(scene)) == {-1, 0, 1, 2, 3, 4, 5}


def test_a_loader_keeping_the_bad_bands_fails(shared_data: Path) -> None:
    def broken(folder: Path, split: str) -> list[dict]:
        path = folder / ENMAP_IMAGE
        with rasterio.open(path) as src:
            image, mask = src.read(), src.read(1) * 0  # all 224 bands, bad ones included
        sensor = sensor_from_raster(path, name="enmap")
        return [chip_sample(image[:, :16, :16], sensor, sample_id="x", mask=mask[:16, :16])]

    path = shared_data / "enmap_potsdam" / ENMAP_IMAGE
    with pytest.raises(AssertionError):
        check_enmap(broken(shared_data / "enmap_potsdam", "train"), path)


# ------------------------------------------------------------------------------ Indian Pines


@pytest.fixture(scope="module")
def indian_pines(shared_data: Path) -> Samples:
    return splits_of("indian_pines", shared_data)


def test_indian_pines_few_labels_protocol(indian_pines: Samples, shared_data: Path) -> None:
    labelled = check_pixel_split(indian_pines, shape=(145, 145))
    assert sum(int(m.sum()) for m in labelled.values()) == 10_249
    _, truth = read_indian_pines(shared_data / "indian_pines")
    np.testing.assert_array_equal(sum(labelled.values()).astype(bool), truth > 0)
    counts = {
        split: np.bincount(s["mask"][s["mask"] >= 0].numpy(), minlength=16)
        for split in SPLITS
        for s in indian_pines[split]
    }
    sizes = np.bincount(truth.ravel(), minlength=17)[1:]
    np.testing.assert_array_equal(counts["train"], np.minimum(30, sizes // 2))
    np.testing.assert_array_equal(counts["val"], np.minimum(10, sizes // 4))
    assert (counts["train"] > 0).all() and (counts["test"] > 0).all()  # all 16 in train and test
    assert [int(counts[k].sum()) for k in SPLITS] == [437, 152, 9660]
    for split in SPLITS:
        (s,) = indian_pines[split]
        check_contract([s], 200, 16)
        assert s["sensor"] == "aviris_indian_pines" and s["gsd"] == 20.0
        assert torch.equal(s["image"], indian_pines["train"][0]["image"])  # one cube
        assert (s["mask"][s["mask"] >= 0] == torch.from_numpy(truth)[s["mask"] >= 0] - 1).all()
    assert dataset_info("indian_pines").class_names == INDIAN_PINES_CLASSES


def test_indian_pines_split_is_seeded_and_fixed(shared_data: Path) -> None:
    _, truth = read_indian_pines(shared_data / "indian_pines")
    first = few_label_split(truth, 16)
    np.testing.assert_array_equal(first, few_label_split(truth, 16))
    assert not np.array_equal(first, few_label_split(truth, 16, seed=1))


def test_a_pixel_split_reusing_train_pixels_fails(indian_pines: Samples) -> None:
    def broken(split: str) -> list[dict]:
        # test keeps every labelled pixel: it contains the training pixels
        if split != "test":
            return indian_pines[split]
        train, val = indian_pines["train"][0]["mask"], indian_pines["val"][0]["mask"]
        rest = indian_pines["test"][0]["mask"]
        everything = torch.maximum(torch.maximum(train, val), rest)
        return [{**indian_pines["test"][0], "mask": everything}]

    with pytest.raises(AssertionError):
        check_pixel_split({split: broken(split) for split in SPLITS}, shape=(145, 145))


def test_indian_pines_spatial_halves(shared_data: Path) -> None:
    by_split = splits_of("indian_pines_spatial", shared_data)
    owner = check_disjoint(by_split, shape=(145, 145))
    assert (owner >= 0).all()
    assert all(s["window"][3] <= 72 for k in ("train", "val") for s in by_split[k])
    assert all(s["window"][2] == 72 for s in by_split["test"])
    total = 0
    for split in SPLITS:
        (s,) = by_split[split]
        check_contract([s], 200, 16)
        total += int((s["mask"] >= 0).sum())
    assert total == 10_249
    present = {k: set(torch.unique(v[0]["mask"]).tolist()) - {-1} for k, v in by_split.items()}
    assert len(present["train"]) == 11 and len(present["test"]) == 10  # documented in the card


def test_aviris_indian_pines_sensor() -> None:
    sensor = get_sensor("aviris_indian_pines")
    waves = sensor.wavelengths
    assert len(sensor) == 200 and np.all(np.diff(waves) > 0)
    assert 400 <= waves.min() and waves.max() <= 2500
    removed = {f"B{b:03d}" for b in [*range(104, 109), *range(150, 164), 220]}
    assert not removed & set(sensor.band_names)
    assert not ((waves > 1380) & (waves < 1430)).any()  # water absorption near 1400 nm


# ------------------------------------------------------------------------------------- MUUFL


def test_muufl_classes_wavelengths_and_split(shared_data: Path) -> None:
    folder = shared_data / "hsi_muufl_jasper" / "muufl_gulfport_subsets"
    data = scipy.io.loadmat(folder / "an_hsi_img_for_class_demo.mat")
    names = tuple(str(np.ravel(e["name"])[0]) for e in data["train_data"][0])
    assert names == MUUFL_CLASSES == dataset_info("muufl").class_names
    by_split = splits_of("muufl", shared_data)
    owner = check_disjoint(by_split, shape=(31, 20))
    assert (owner >= 0).all()
    file_waves = np.ravel(data["wavlength"]).astype(np.float32)
    np.testing.assert_allclose(get_sensor("muufl_casi").wavelengths, file_waves, atol=0.05)
    counts = {}
    for split in SPLITS:
        (s,) = by_split[split]
        check_contract([s], 72, 5)
        np.testing.assert_array_equal(s["wavelengths"].numpy(), file_waves)
        r0, r1, c0, c1 = s["window"]
        expected = data["hsi_sub"][r0:r1, c0:c1].transpose(2, 0, 1)
        np.testing.assert_array_equal(s["image"].numpy(), expected)
        counts[split] = np.bincount(s["mask"][s["mask"] >= 0].numpy(), minlength=5).tolist()
    assert counts == {"train": [7, 1, 4, 0, 2], "val": [0, 0, 4, 0, 1], "test": [0, 7, 0, 5, 2]}
    # each labelled pixel's spectrum is one of its class's labelled spectra
    s = by_split["test"][0]
    row, col = (s["mask"] == 3).nonzero()[0].tolist()
    trees = data["train_data"][0][3]["Spectra"].T
    pixel = data["hsi_sub"][row, 10 + col]
    assert np.isclose(trees, pixel).all(axis=1).any()


# ------------------------------------------------------------------------------ Jasper Ridge


def test_jasper_ridge_unmixing(shared_data: Path) -> None:
    by_split = splits_of("jasper_ridge", shared_data)
    owner = check_disjoint(by_split, shape=(100, 100))
    assert (owner >= 0).all()
    for split in SPLITS:
        (s,) = by_split[split]
        check_contract([s], 198)
        assert s["sensor"] == "aviris_jasper_ridge" and s["endmember_names"] == list(
            JASPER_ENDMEMBERS
        )
        abundances = s["abundances"]
        assert abundances.dtype == torch.float32 and abundances.shape[0] == 4
        assert abundances.shape[1:] == s["image"].shape[1:] and (abundances >= 0).all()
        torch.testing.assert_close(abundances.sum(0), torch.ones(abundances.shape[1:]))
        assert s["endmembers"].shape == (4, 198)
        # the linear mixing model holds on the reflectance scale (image / maxValue)
        model = torch.einsum("khw,kb->bhw", abundances, s["endmembers"])
        residual = (s["image"] / s["max_value"] - model).norm() / (s["image"] / 5000).norm()
        assert s["max_value"] == 5000.0 and residual < 0.25
    # the 198 kept AVIRIS bands are the file's SlectBands
    data = scipy.io.loadmat(
        shared_data / "hsi_muufl_jasper" / "jasper_ridge" / "jasperRidge2_R198.mat"
    )
    kept = [f"B{int(b):03d}" for b in np.ravel(data["SlectBands"])]
    assert kept == get_sensor("aviris_jasper_ridge").band_names


def test_missing_files_say_how_to_fix(tmp_path: Path) -> None:
    loaders = (
        load_enmap_potsdam,
        load_indian_pines,
        load_indian_pines_spatial,
        load_muufl,
        load_jasper_ridge,
    )
    for loader in loaders:
        with pytest.raises(DatasetNotFoundError, match="RSFM_DATA_ROOT"):
            loader(tmp_path, "train")
