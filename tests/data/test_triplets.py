"""Triplet co-registration, synthetic triplets, reference degradations, triplet datamodule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasters import ORIGIN, UTM33N, smooth, write_geotiff

from rsfm.data.datamodules.triplets import TripletDataModule
from rsfm.data.errors import MissingCRSError
from rsfm.data.synthetic.triplets import (
    SyntheticTripletConfig,
    ensure_synthetic_triplets,
    triplet_files,
)
from rsfm.data.triplet_coregistration import CoRegisteredTriplet, TripletFiles, scale_between
from rsfm.data.triplets import ReferenceDegradation, TripletDataset

SMALL = SyntheticTripletConfig(n_scenes=2, scene_size_m=128.0)


@pytest.fixture(scope="module")
def triplet_root() -> Path:
    return ensure_synthetic_triplets(config=SMALL)


def test_synthetic_triplets_files_grids_and_changed_mask(triplet_root: Path) -> None:
    files = triplet_files(triplet_root)
    assert len(files) == 2
    with rasterio.open(files[0]["lr"]) as lr, rasterio.open(files[0]["hr"]) as hr:
        assert (lr.res, hr.res) == ((8.0, 8.0), (2.0, 2.0))
        assert (lr.shape, hr.shape, lr.crs, lr.bounds) == ((16, 16), (64, 64), hr.crs, hr.bounds)
        lr_px, hr_px = lr.read().astype(np.float64), hr.read().astype(np.float64)
    with rasterio.open(files[0]["reference"]) as ref, rasterio.open(files[0]["changed"]) as ch:
        ref_px, changed = ref.read().astype(np.float64), ch.read(1).astype(bool)
    assert scale_between(files[0]["lr"], files[0]["hr"]) == 4
    assert 0.01 < changed.mean() < 0.6
    # The LR image is the HR scene area-averaged (up to noise): block means agree.
    blocks = hr_px.reshape(3, 16, 4, 16, 4).mean(axis=(2, 4))
    assert np.abs(blocks - lr_px).mean() < 0.01
    # The reference matches the target where land cover is unchanged, not where it changed.
    error_unchanged = np.abs(ref_px - hr_px)[:, ~changed].mean()
    error_changed = np.abs(ref_px - hr_px)[:, changed].mean()
    assert error_unchanged < 0.015 < error_changed
    # Same config -> same pixels (cached folder reused).
    assert ensure_synthetic_triplets(config=SMALL) == triplet_root


def test_coregistration_reprojects_reference_and_aligns_lr(tmp_path: Path) -> None:
    hr = smooth(2, 64, 64, seed=1)
    lr = hr.reshape(2, 16, 4, 16, 4).mean(axis=(2, 4)).astype(np.float32)
    hr_path = write_geotiff(tmp_path / "hr.tif", hr, res=2.0)
    lr_path = write_geotiff(tmp_path / "lr.tif", lr, res=8.0)
    # The reference: the HR scene in another CRS (geographic), as a neighbour provider would.
    with rasterio.open(hr_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        ref = np.zeros((2, height, width), dtype=np.float32)
        reproject(hr, ref, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs="EPSG:4326", resampling=Resampling.bilinear)  # fmt: skip
    ref_path = tmp_path / "ref.tif"
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 2, "nodata": 0.0,
               "dtype": "float32", "crs": "EPSG:4326", "transform": transform}  # fmt: skip
    with rasterio.open(ref_path, "w", **profile) as dst:
        dst.write(ref)
    triplet = CoRegisteredTriplet(TripletFiles(lr=lr_path, reference=ref_path, hr=hr_path))
    assert (triplet.scale, triplet.height, triplet.width, triplet.crs) == (4, 64, 64, UTM33N)
    sample = triplet.read(16, 8, 32)
    assert sample["lr"].shape == (2, 8, 8) and sample["hr"].shape == (2, 32, 32)
    assert sample["reference"].shape == (2, 32, 32)
    assert torch.equal(sample["hr"], torch.from_numpy(hr[:, 16:48, 8:40]))
    assert torch.equal(sample["lr"], torch.from_numpy(lr[:, 4:12, 2:10]))
    inner = sample["reference_valid"][4:-4, 4:-4]
    assert inner.all()
    gap = (sample["reference"] - sample["hr"])[:, 4:-4, 4:-4].abs()
    assert float(gap.mean()) < 5.0  # values ~1000 +- 300: within 0.5 % after two warps
    assert sample["transform"].c == ORIGIN[0] + 8 * 2.0
    assert sample["bounds"][3] == ORIGIN[1] - 16 * 2.0


def test_coregistration_errors_name_the_files(tmp_path: Path) -> None:
    hr_path = write_geotiff(tmp_path / "hr.tif", smooth(1, 40, 40), res=2.0)
    odd = write_geotiff(tmp_path / "odd.tif", smooth(1, 11, 11), res=7.0)
    far = write_geotiff(tmp_path / "far.tif", smooth(1, 4, 4), res=24.0)
    no_crs = write_geotiff(tmp_path / "nocrs.tif", smooth(1, 10, 10), res=8.0, crs=None)
    with pytest.raises(ValueError, match=r"odd\.tif.*ratio 3\.500"):
        CoRegisteredTriplet(TripletFiles(lr=odd, hr=hr_path))
    with pytest.raises(ValueError, match="not an integer scale in 2..10"):
        CoRegisteredTriplet(TripletFiles(lr=far, hr=hr_path))
    with pytest.raises(MissingCRSError, match="nocrs.tif"):
        CoRegisteredTriplet(TripletFiles(lr=no_crs, hr=hr_path))
    with pytest.raises(ValueError, match="pass scale="):
        CoRegisteredTriplet(TripletFiles(lr=hr_path))
    # Without a target (inference), the HR grid is the LR grid refined by the scale.
    inference = CoRegisteredTriplet(TripletFiles(lr=hr_path), scale=5)
    assert (inference.height, inference.transform.a) == (200, 0.4)


def _sample() -> dict:
    generator = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 8, 8, generator=generator)
    return {"hr": hr, "valid": torch.ones(8, 8, dtype=torch.bool),
            "reference": torch.rand(3, 8, 8, generator=generator),
            "reference_valid": torch.ones(8, 8, dtype=torch.bool)}  # fmt: skip


@pytest.mark.parametrize("mode", ["missing", "target", "grey", "jitter", "clean"])
def test_reference_degradations(mode: str) -> None:
    probabilities = {"missing": 0.0, "target": 0.0, "grey": 0.0, "jitter": 0.0}
    if mode != "clean":
        probabilities[mode] = 1.0
    degrade = ReferenceDegradation(
        p_missing=probabilities["missing"], p_target=probabilities["target"],
        p_grey=probabilities["grey"], p_jitter=probabilities["jitter"],
    )  # fmt: skip
    sample = _sample()
    original = sample["reference"].clone()
    degrade(sample, np.random.default_rng(0))
    assert sample["reference_mode"] == mode
    reference = sample["reference"]
    if mode == "missing":
        assert not reference.any() and not sample["reference_valid"].any()
    elif mode == "target":
        assert torch.equal(reference, sample["hr"])
    elif mode == "grey":
        assert torch.allclose(reference, original.mean(dim=0, keepdim=True).expand(3, 8, 8))
    elif mode == "jitter":
        gain = reference.flatten(1).std(dim=1) / original.flatten(1).std(dim=1)
        assert not torch.allclose(reference, original)
        assert torch.all((gain > 0.79) & (gain < 1.21))  # +-20 % per-band gain
    else:
        assert torch.equal(reference, original)
    with pytest.raises(ValueError, match="sum to at most 1"):
        ReferenceDegradation(0.5, 0.5, 0.5, 0.0)


def test_datamodule_batches_are_normalised_triplets(triplet_root: Path) -> None:
    datamodule = TripletDataModule(
        root=str(triplet_root), synthetic={"n_scenes": 2, "scene_size_m": 128.0},
        patch_size=32, batch_size=4, train_length=8, p_missing=1.0, p_target=0.0,
        p_grey=0.0, p_jitter=0.0,
    )  # fmt: skip
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["lr"].shape == (4, 3, 8, 8) and batch["hr"].shape == (4, 3, 32, 32)
    assert batch["reference"].shape == (4, 3, 32, 32) and batch["changed"].shape == (4, 32, 32)
    assert not batch["reference_valid"].any()  # every reference dropped (p_missing = 1)
    assert torch.equal(batch["image"], batch["lr"])
    assert abs(float(batch["hr"].mean())) < 0.6 and 0.5 < float(batch["hr"].std()) < 2.0
    stats = datamodule.band_stats
    assert set(stats) == {"lr", "reference"} and stats["lr"].wavelengths == [635.0, 555.0, 465.0]
    val = next(iter(datamodule.val_dataloader()))
    assert val["reference_valid"].all()  # validation references are never degraded
    assert len(datamodule.val_dataset) == 4  # the held-out 64x64 scene in 32x32 windows


def test_grid_dataset_covers_every_window(triplet_root: Path) -> None:
    triplets = [CoRegisteredTriplet(TripletFiles(**f)) for f in triplet_files(triplet_root)]
    dataset = TripletDataset(triplets, patch_size=32, stride=16)
    assert len(dataset) == 2 * 9
    assert dataset.window(4) == (0, 16, 16, 32)


def test_real_neon_hyperspectral_and_rgb_coregister(shared_data: Path) -> None:
    folder = shared_data / "neon_harv_hsi_rgb"
    hsi = folder / "2019_HARV_6_726000_4699000_image_crop_hyperspectral_2019_crs32618.tif"
    rgb = folder / "2019_D01_HARV_DP3_726000_4699000_image_crop_2019.tif"
    triplet = CoRegisteredTriplet(
        TripletFiles(lr=hsi, reference=rgb, hr=rgb), lr_bands=[50, 30, 15]
    )
    assert triplet.scale == 10 and (triplet.height, triplet.width) == (270, 100)
    sample = triplet.read(100, 40, 60)
    assert sample["lr"].shape == (3, 6, 6) and sample["hr"].shape == (3, 60, 60)
    assert torch.equal(sample["reference"], sample["hr"])  # same file, same grid
    assert float(sample["valid"].float().mean()) > 0.5 and float(sample["hr"].std()) > 1.0
    assert torch.isnan(sample["wavelengths"]).all()  # the HSI file carries no wavelengths


@pytest.mark.parametrize(("lr_band", "scale"), [("B05", 2), ("B01", 6)])
def test_real_bigearthnet_bands_coregister(shared_data: Path, lr_band: str, scale: int) -> None:
    folder = next((shared_data / "bigearthnet_s1s2" / "original").glob("S2*"))
    band = {name: next(folder.glob(f"*_{name}.tif")) for name in ("B01", "B02", "B03", "B05")}
    triplet = CoRegisteredTriplet(
        TripletFiles(lr=band[lr_band], reference=band["B03"], hr=band["B02"])
    )
    assert triplet.scale == scale and triplet.height == 120 // scale * scale
    size = 60 if scale == 6 else 40
    sample = triplet.read(0, 0, size)
    assert sample["lr"].shape == (1, size // scale, size // scale)
    assert sample["reference"].shape == sample["hr"].shape == (1, size, size)
    # Co-registered: the LR pixels agree with the HR target averaged over the same footprint.
    lr = sample["lr"][0].double()
    hr_blocks = sample["hr"][0].double().reshape(size // scale, scale, size // scale, scale)
    correlation = np.corrcoef(lr.flatten(), hr_blocks.mean(dim=(1, 3)).flatten())[0, 1]
    assert correlation > 0.5


def test_picked_bands_carry_their_own_wavelengths(tmp_path: Path) -> None:
    """``lr_bands`` / ``ref_bands`` pick the wavelengths of the bands read (they were the
    file's first bands' or all of them)."""
    s2 = write_geotiff(tmp_path / "lr.tif", np.ones((13, 8, 8), dtype=np.float32), res=8.0)
    with rasterio.open(s2, "r+") as src:
        src.update_tags(RSFM_SENSOR="sentinel2_l1c")
    rgb = write_geotiff(tmp_path / "ref.tif", np.ones((3, 32, 32), dtype=np.float32), res=2.0)
    triplet = CoRegisteredTriplet(
        TripletFiles(lr=s2, reference=rgb), scale=4, lr_bands=[4, 3, 2], ref_bands=[3, 1],
        ref_sensor="rgb",
    )  # fmt: skip
    np.testing.assert_allclose(triplet.wavelengths, [664.6, 559.8, 492.4], rtol=1e-6)
    np.testing.assert_allclose(triplet.reference_wavelengths, [470.0, 640.0])
    whole = CoRegisteredTriplet(
        TripletFiles(lr=s2, reference=rgb), scale=4, lr_sensor="sentinel2_l1c"
    )
    assert len(whole.wavelengths) == 13
