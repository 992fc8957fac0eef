"""Bad bands (ENVI bbl=0, nodata everywhere) are handled in tiling as in training.

An EnMAP-like product keeps its bad bands filled with nodata. Training never lets them
invalidate a pixel; before the fix the tiler did, so every output pixel was nodata and
``rsfm tile`` exited 0. Now the map is valid, and an output >= 99 % nodata from a mostly valid
input is an error (exit 1, output removed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import rsfm.inference.reader as reader_module
from rsfm.band_stats import BandStats
from rsfm.cli import main
from rsfm.hub import push
from rsfm.models.registry import create_model

WAVES = [450.0 + 150.0 * i for i in range(10)]
BAD = (4, 5)  # 1-based
NODATA = -32768.0


def _enmap_like(path: Path) -> Path:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.05, 0.4, (10, 48, 48)).astype(np.float32)
    for band in BAD:
        image[band - 1] = NODATA
    profile = dict(
        driver="GTiff", width=48, height=48, count=10, dtype="float32", nodata=NODATA,
        crs="EPSG:32633", transform=from_origin(360_000, 5_800_000, 30, 30),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        for band, wave in enumerate(WAVES, start=1):
            dst.update_tags(band, wavelength=wave, fwhm=10.0, bbl=0 if band in BAD else 1)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    stats = BandStats(
        band_names=[f"B{i + 1:03d}" for i in range(10)], wavelengths=WAVES,
        low=[0.0] * 10, high=[0.5] * 10, mean=[0.2] * 10, std=[0.1] * 10, sensor="enmap_like",
    )  # fmt: skip
    model = create_model("smarties_tiny_seg_linear", num_outputs=3)
    card = {"class_names": ["a", "b", "c"], "normalization": {"enmap_like": stats}}
    push(model, "hsi-seg", "1.0.0", hub=tmp_path / "hub", card=card)
    return tmp_path / "hub"


def test_bad_bands_do_not_blank_the_map(tmp_path: Path, hub: Path) -> None:
    source, out = _enmap_like(tmp_path / "enmap_like.tif"), tmp_path / "map.tif"
    assert main(["tile", "hsi-seg@1.0.0", str(source), str(out), "--hub", str(hub)]) == 0
    with rasterio.open(out) as dst:
        valid = dst.dataset_mask() > 0
    assert valid.mean() > 0.99


def test_an_all_nodata_output_from_a_valid_input_is_an_error(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # the old behaviour: the tiler does not know the bad bands, so they blank every pixel
    monkeypatch.setattr(reader_module, "bad_band_mask", lambda path: np.ones(10, dtype=bool))
    source, out = _enmap_like(tmp_path / "enmap_like.tif"), tmp_path / "map.tif"
    assert main(["tile", "hsi-seg@1.0.0", str(source), str(out), "--hub", str(hub)]) == 1
    err = capsys.readouterr().err
    assert "100.0% of the output is nodata" in err and "output removed" in err
    assert not out.exists()
