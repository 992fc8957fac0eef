"""Bad input gets the data layer's error classes, each naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rasters import ORIGIN, ramp, smooth, write_geotiff
from torch.utils.data import DataLoader

from rsfm.data.collate import collate_samples
from rsfm.data.errors import (
    BandMismatchError,
    EmptyWindowError,
    MissingCRSError,
    NonFiniteError,
    UnreadableRasterError,
)
from rsfm.data.raster import SensorRasterDataset

X0, Y0 = ORIGIN
FULL = (slice(X0, X0 + 160), slice(Y0 - 160, Y0))  # the whole of a 16x16 file at 10 m


def test_missing_crs(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "nocrs.tif", ramp(13, 16, 16), crs=None)
    with pytest.raises(MissingCRSError, match="nocrs.tif.*no CRS") as err:
        SensorRasterDataset(path, sensor="s2")
    assert err.value.path == path
    with pytest.raises(MissingCRSError, match="nocrs.tif"):
        SensorRasterDataset(path)  # also when describing the sensor from the file


def test_unreadable_file_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00 definitely not a GeoTIFF" * 10)
    with pytest.raises(UnreadableRasterError, match="garbage.tif"):
        SensorRasterDataset(path, sensor="s2")


def test_truncated_file_fails_at_read_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 60000, size=(13, 64, 64)).astype(np.uint16)  # incompressible
    path = write_geotiff(tmp_path / "cut.tif", noise, tiled=True)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)  # the header (at the start) survives, the last tiles do not
    ds = SensorRasterDataset(path, sensor="s2")  # opening reads only the header
    top_left = (slice(X0, X0 + 160), slice(Y0 - 160, Y0))
    np.testing.assert_array_equal(ds[top_left]["image"].numpy(), noise[:, :16, :16])
    bottom_right = (slice(X0 + 480, X0 + 640), slice(Y0 - 640, Y0 - 480))
    with pytest.raises(UnreadableRasterError, match="cut.tif.*truncated"):
        ds[bottom_right]


def test_band_count_mismatch(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "five.tif", ramp(5, 16, 16))
    with pytest.raises(BandMismatchError, match=r"five.tif.*5 bands.*sentinel2_l1c.*13"):
        SensorRasterDataset(path, sensor="sentinel2_l1c")
    described = write_geotiff(
        tmp_path / "desc.tif", ramp(3, 16, 16), descriptions=["B02", "B03", "B04"]
    )
    assert SensorRasterDataset(described, sensor="s2", bands=["B4", "B2"]).wavelengths.shape == (2,)
    with pytest.raises(BandMismatchError, match=r"desc.tif.*\['B08'\]"):
        SensorRasterDataset(described, sensor="s2", bands=["B04", "B08"])
    with pytest.raises(BandMismatchError, match="five.tif.*no wavelength metadata"):
        SensorRasterDataset(path)  # no sensor and no wavelength tags
    with pytest.raises(ValueError, match="no band.*B99"):
        SensorRasterDataset(described, sensor="s2", bands=["B99"])


def test_nonfinite_pixels_error_or_mask(tmp_path: Path) -> None:
    data = smooth(2, 16, 16)
    data[1, 3, 4] = np.nan
    data[0, 5, 6] = np.inf
    path = write_geotiff(tmp_path / "nan.tif", data)
    with pytest.raises(NonFiniteError, match="nan.tif.*2 NaN/inf"):
        SensorRasterDataset(path, sensor="s1")[FULL]
    sample = SensorRasterDataset(path, sensor="s1", nonfinite="mask")[FULL]
    assert not sample["valid"][3, 4] and not sample["valid"][5, 6]
    assert int(sample["valid"].sum()) == 254 and torch.isfinite(sample["image"]).all()
    # Declared nodata NaN (as Sentinel-1 products have): NaN is nodata, inf still an error.
    nan_nodata = write_geotiff(tmp_path / "nan_nodata.tif", data, nodata=float("nan"))
    with pytest.raises(NonFiniteError, match="nan_nodata.tif.*1 NaN/inf"):
        SensorRasterDataset(nan_nodata, sensor="s1")[FULL]
    data[0, 5, 6] = 1.0
    ok = write_geotiff(tmp_path / "nan_ok.tif", data, nodata=float("nan"))
    sample = SensorRasterDataset(ok, sensor="s1")[FULL]
    assert not sample["valid"][3, 4] and int(sample["valid"].sum()) == 255
    assert float(sample["image"][:, 3, 4].abs().sum()) == 0.0


def test_empty_window_error_and_skip_counting(tmp_path: Path) -> None:
    data = ramp(13, 16, 32)
    data[:, :, 16:] = 0  # the right half is nodata
    path = write_geotiff(tmp_path / "half.tif", data, nodata=0)
    right = (slice(X0 + 160, X0 + 320), slice(Y0 - 160, Y0))
    with pytest.raises(EmptyWindowError, match="half.tif.*only nodata"):
        SensorRasterDataset(path, sensor="s2")[right]
    ds = SensorRasterDataset(path, sensor="s2", skip_empty=True)
    assert ds[right] is None
    batch = collate_samples([ds[FULL], None, ds[FULL], ds[right]])
    assert batch["image"].shape == (2, 13, 16, 16) and batch["n_skipped"].item() == 2
    assert batch["n_skipped"].dtype == torch.int64
    assert collate_samples([None, None])["n_skipped"].item() == 2
    queries = [FULL, right, right, FULL, FULL]
    loader = DataLoader(ds, sampler=queries, batch_size=5, collate_fn=collate_samples)
    (batch,) = list(loader)
    assert batch["image"].shape[0] == 3 and batch["n_skipped"].item() == 2


def test_bad_bands_do_not_empty_the_window(tmp_path: Path) -> None:
    data = smooth(3, 8, 8)
    data[1] = -32768.0  # a water-vapour band flagged bad and filled with nodata (as EnMAP L2A)
    tags = [{"wavelength": str(w), "bbl": b} for w, b in ((500, "1"), (1380, "0"), (2200, "1"))]
    path = write_geotiff(tmp_path / "hs.tif", data, nodata=-32768, band_tags=tags)
    sample = SensorRasterDataset(path)[(slice(X0, X0 + 80), slice(Y0 - 80, Y0))]
    assert bool(sample["valid"].all()) and float(sample["image"][1].abs().max()) == 0.0
    np.testing.assert_array_equal(sample["image"][[0, 2]].numpy(), data[[0, 2]])


def test_labelled_datamodules_resolve_class_names_or_say_what_is_missing() -> None:
    from rsfm.data.labels import resolve_class_names
    from rsfm.data.synthetic.spectra import CLASS_NAMES

    assert resolve_class_names("segmentation", None, None, True) == list(CLASS_NAMES)
    assert resolve_class_names("regression", ["x"], 3, False) == []
    assert resolve_class_names("classification", None, 2, False) == ["class_0", "class_1"]
    assert resolve_class_names("multilabel", ["a", "b"], None, False) == ["a", "b"]
    with pytest.raises(ValueError, match="give class_names or num_classes"):
        resolve_class_names("segmentation", None, None, False)
    with pytest.raises(ValueError, match="2 class_names for 3 classes"):
        resolve_class_names("segmentation", ["a", "b"], 3, False)
