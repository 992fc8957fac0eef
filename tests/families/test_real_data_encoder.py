"""One spectrum-aware encoder embeds every real sensor sample (different band sets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsfm.data.raster import SensorRasterDataset
from rsfm.data.stats import compute_band_stats
from rsfm.models import create_model

pytestmark = pytest.mark.shared_data

CASES = {
    # name: (relative path, sensor (None = wavelengths from file tags), expected band count)
    "sentinel2_l1c": ("sen1floods11_spain/Spain_7370579_S2Hand.tif", "sentinel2_l1c", 13),
    "sentinel1_grd": ("sen1floods11_spain/Spain_7370579_S1Hand.tif", "sentinel1_grd", 2),
    "bigearthnet_s2": (
        "bigearthnet_s1s2/stacked/S2A_MSIL2A_20170613T101031_87_48_S2_12band_10m.tif",
        "sentinel2_l2a",
        12,
    ),
    "landsat8_sr": ("landsat8/LC08_232066_20190727.tif", "landsat8_sr", 6),
    "naip": ("naip_opengeos/m_4709963_se_14_1_20200831.tif", "naip", 4),
    "enmap": ("enmap_potsdam/enmap_potsdam_tile_128_0_image.tif", None, 224),
}


def _window(path: Path, sensor: str | None, size: int = 32) -> dict:
    dataset = SensorRasterDataset(path, sensor=sensor, nonfinite="mask")
    stats = compute_band_stats(dataset, n_samples=4, patch_size=size, seed=0)
    x, y, t = dataset.bounds
    xres, yres = dataset.res
    query = (slice(x.start, x.start + size * xres), slice(y.stop - size * yres, y.stop), t)
    sample = dataset.read(query, normalize=False)
    sample["image"] = stats.normalize(sample["image"], sample["wavelengths"])
    return sample


def test_one_encoder_embeds_every_real_sensor(shared_data: Path) -> None:
    torch.manual_seed(0)
    encoder = create_model("smarties_tiny").encoder.eval()
    embeddings = {}
    for name, (relative, sensor, n_bands) in CASES.items():
        sample = _window(shared_data / relative, sensor)
        image, wavelengths = sample["image"], sample["wavelengths"]
        assert image.shape == (n_bands, 32, 32), name
        assert torch.isfinite(image).all(), name
        with torch.no_grad():
            tokens = encoder(image[None], wavelengths[None])
            pooled = encoder.forward_pooled(image[None], wavelengths[None])
        assert tokens.shape == (1, 1 + (32 // 8) ** 2, encoder.embed_dim), name
        assert torch.isfinite(tokens).all() and pooled.shape == (1, encoder.embed_dim), name
        embeddings[name] = pooled[0]
    # Different sensors and places give different embeddings (the routing is not a no-op).
    names = list(embeddings)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(embeddings[a], embeddings[b], atol=1e-4), (a, b)


def test_band_subset_of_a_real_scene_embeds(shared_data: Path) -> None:
    path = shared_data / CASES["sentinel2_l1c"][0]
    sample = _window(path, "sentinel2_l1c")
    encoder = create_model("smarties_tiny").encoder.eval()
    rgbn = [3, 2, 1, 7]  # B04, B03, B02, B08
    with torch.no_grad():
        full = encoder.forward_pooled(sample["image"][None], sample["wavelengths"][None])
        subset = encoder.forward_pooled(
            sample["image"][rgbn][None], sample["wavelengths"][rgbn][None]
        )
    assert full.shape == subset.shape and torch.isfinite(subset).all()
    assert not torch.allclose(full, subset)
