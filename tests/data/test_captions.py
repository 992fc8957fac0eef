"""Caption manifests, cleaning, dataset samples, the datamodule and the synthetic captions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rasters import write_geotiff

from rsfm.data.caption_filters import CaptionFilter, looks_english
from rsfm.data.captions import (
    CaptionDataset,
    CaptionRecord,
    read_caption_manifest,
    split_records,
    write_caption_manifest,
)
from rsfm.data.datamodules.captions import CaptionDataModule
from rsfm.data.synthetic.captions import describe_crop, ensure_caption_world
from rsfm.sensors import get_sensor

S2 = get_sensor("sentinel2_l1c")


def _png(path: Path, value: tuple[int, int, int], size: int = 8) -> Path:
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[...] = value
    pixels[0, 0] = (255, 0, 51)
    Image.fromarray(pixels).save(path)
    return path


def _tif(path: Path, res: float = 10.0, nodata_corner: bool = False) -> Path:
    data = np.arange(4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16) + 1.0
    if nodata_corner:
        data[:, :2, :2] = -9999
    bands = S2.select(["B02", "B03", "B04", "B08"]).bands
    tags = [{"wavelength": str(b.center_nm), "wavelength_units": "nanometers"} for b in bands]
    write_geotiff(
        path,
        data,
        res=res,
        nodata=-9999 if nodata_corner else None,
        descriptions=[b.name for b in bands],
        band_tags=tags,
    )
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    _png(tmp_path / "a.png", (255, 128, 0))
    _tif(tmp_path / "b.tif", res=20.0, nodata_corner=True)
    return tmp_path


def test_jsonl_csv_manifests_read_the_same_records(images: Path) -> None:
    rows = [
        {"image": "a.png", "caption": "a field next to a river", "gsd": 0.5, "label": "field"},
        {"image": str(images / "b.tif"), "captions": ["some forest here", "dense green forest"]},
    ]
    (images / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (images / "m.csv").write_text(
        "image,captions,gsd,label,trusted\n"
        'a.png,"[""a field next to a river""]",0.5,field,true\n'
        f'{images / "b.tif"},"[""some forest here"", ""dense green forest""]",,,\n'
    )
    for name in ("m.jsonl", "m.csv"):
        records = read_caption_manifest(images / name)
        assert [r.image for r in records] == [images / "a.png", images / "b.tif"]
        assert records[0].captions == ("a field next to a river",)
        assert records[1].captions == ("some forest here", "dense green forest")
        assert records[0].gsd == 0.5 and records[0].label == "field"
        assert records[1].gsd == pytest.approx(20.0)  # from the raster transform (has a CRS)
        assert records[1].label is None
    assert read_caption_manifest(images / "m.csv")[0].trusted is True
    # Round trip through the writer keeps paths relative to the manifest.
    out = write_caption_manifest(read_caption_manifest(images / "m.jsonl"), images / "w.jsonl")
    assert json.loads(out.read_text().splitlines()[0])["image"] == "a.png"
    assert read_caption_manifest(out)[1].captions == ("some forest here", "dense green forest")


def test_manifest_errors_name_the_file_and_row(images: Path) -> None:
    (images / "bad.jsonl").write_text(json.dumps({"image": "missing.png", "caption": "x"}) + "\n")
    with pytest.raises(FileNotFoundError, match=r"bad.jsonl: row 0: image .*missing.png"):
        read_caption_manifest(images / "bad.jsonl")
    (images / "nocap.jsonl").write_text(json.dumps({"image": "a.png"}) + "\n")
    with pytest.raises(ValueError, match="nocap.jsonl: row 0: no 'caption'"):
        read_caption_manifest(images / "nocap.jsonl")
    with pytest.raises(ValueError, match="unknown manifest format"):
        (images / "m.txt").write_text("x")
        read_caption_manifest(images / "m.txt")


def test_caption_filter_counts_every_reason(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    records = [
        CaptionRecord(image, ("a big forest with a lake", "A  big forest with a lake", "hi")),
        CaptionRecord(image, ("un bosque grande",)),  # Spanish: language filter
        CaptionRecord(image, ("большой лес рядом с рекой",)),
        CaptionRecord(image, (" ".join(["forest"] * 80),)),
        CaptionRecord(image, ("a big forest with a lake",)),  # duplicate row
        CaptionRecord(image, ("ok",), trusted=True),  # trusted: bypasses the filter
    ]
    kept, reasons = CaptionFilter(min_words=3, max_words=77)(records)
    assert [r.captions for r in kept] == [("a big forest with a lake",), ("ok",)]
    assert reasons == {
        "duplicate": 2,
        "too_short": 1,
        "language": 2,
        "too_long": 1,
        "no_caption_left": 3,
    }
    kept, reasons = CaptionFilter(min_words=1, dedupe=False, languages=None)(records)
    assert len(kept) == 5 and reasons == {"too_long": 1, "no_caption_left": 1}
    assert kept[0].captions == ("a big forest with a lake", "A  big forest with a lake", "hi")
    assert looks_english("mostly forest with a river")
    assert not looks_english("une forêt près de la rivière")


def test_dataset_samples_follow_the_contract(images: Path) -> None:
    rows = [
        {"image": "a.png", "captions": ["one red field", "two red fields"], "gsd": 0.5},
        {"image": "b.tif", "caption": "a river near some forest", "label": "forest"},
    ]
    (images / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = CaptionDataset(images / "m.jsonl", caption_sampling="all")
    assert len(dataset) == 3
    picture = dataset[0]
    assert picture["image"].dtype == torch.float32 and picture["image"].shape == (3, 8, 8)
    assert picture["sensor"] == "rgb"
    torch.testing.assert_close(picture["wavelengths"], torch.tensor([640.0, 545.0, 470.0]))
    torch.testing.assert_close(picture["image"][:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    torch.testing.assert_close(picture["image"][:, 1, 1], torch.tensor([1.0, 128 / 255, 0.0]))
    assert picture["valid"].all() and picture["gsd"] == 0.5
    assert [dataset[i]["caption"] for i in range(3)] == [
        "one red field",
        "two red fields",
        "a river near some forest",
    ]
    raster = dataset[2]
    assert raster["image"].shape == (4, 16, 16) and raster["gsd"] == pytest.approx(20.0)
    assert raster["label"] == "forest" and raster["index"] == 1
    assert raster["image"][1, 5, 7] == 1.0 + 256 + 5 * 16 + 7  # raw values
    assert not raster["valid"][:2, :2].any() and raster["valid"][2:].all()
    assert raster["image"][:, :2, :2].abs().sum() == 0  # nodata -> 0
    # Band selection by name, resize to 8 px: the GSD doubles, the mask shrinks with it.
    small = CaptionDataset(images / "m.jsonl", bands=["B08", "B02"], size=8)[1]
    assert small["image"].shape == (2, 8, 8) and small["gsd"] == pytest.approx(40.0)
    torch.testing.assert_close(small["wavelengths"], raster["wavelengths"][[3, 0]])
    assert not small["valid"][0, 0] and small["valid"][1:, 1:].all()
    assert np.isnan(CaptionDataset([CaptionRecord(images / "a.png", ("x y z",))])[0]["gsd"])


def test_random_caption_sampling_is_seeded(images: Path) -> None:
    record = CaptionRecord(images / "a.png", tuple(f"caption number {i}" for i in range(5)))
    first = [CaptionDataset([record], seed=3)[0]["caption"] for _ in range(1)]
    draws = CaptionDataset([record], seed=3)
    seen = {draws[0]["caption"] for _ in range(30)}
    assert len(seen) > 1 and first[0] in record.captions
    assert CaptionDataset([record], caption_sampling="first")[0]["caption"] == "caption number 0"


def test_split_keeps_images_together_and_is_deterministic(tmp_path: Path) -> None:
    records = [CaptionRecord(tmp_path / f"{i}.png", ("a b c",), row=i) for i in range(20)]
    train, val = split_records(records, 0.25, seed=1)
    assert len(val) == 5 and len(train) == 15
    assert {r.row for r in train}.isdisjoint({r.row for r in val})
    assert split_records(records, 0.25, seed=1) == (train, val)


def test_describe_crop_names_composition_layout_and_resolution() -> None:
    labels = np.full((32, 32), 1, dtype=np.uint8)  # forest
    labels[:, 26:] = 0  # a river on the right
    captions = describe_crop(labels, 10.0, np.random.default_rng(0))
    assert captions[0] == (
        "mostly forest with a river, the river on the right and the forest on the left, "
        "at 10 m resolution"
    )
    assert all("10 m" in c for c in captions)
    labels[:16] = 4  # built-up on top half
    mixed = describe_crop(labels, 2.5, np.random.default_rng(0))[0]
    assert mixed.startswith("mainly built-up area and forest with a river")
    assert "the built-up area at the top" in mixed and "2.5 m" in mixed


def test_caption_world_and_datamodule(tmp_path: Path) -> None:
    root = ensure_caption_world(tmp_path / "world", n_scenes=2, scene_size_m=640, gsds=(10, 20))
    records = read_caption_manifest(root / "captions.jsonl")
    # 2 scenes x (2x2 crops at 10 m + 1 at 20 m) of 32 px.
    assert len(records) == 10
    assert sorted({r.gsd for r in records}) == [10.0, 20.0]
    rows = [json.loads(line) for line in (root / "captions.jsonl").read_text().splitlines()]
    for row, record in zip(rows, records, strict=True):
        dominant = max(row["fractions"], key=row["fractions"].get)
        assert record.label == dominant
        assert f"{record.gsd:g} m" in record.captions[0]
        assert sum(row["fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    again = ensure_caption_world(tmp_path / "world", n_scenes=2, scene_size_m=640, gsds=(10, 20))
    assert again == root and (root / "captions.jsonl").read_text() == "".join(
        json.dumps(r) + "\n" for r in rows
    )
    with pytest.raises(ValueError, match="other arguments"):
        ensure_caption_world(tmp_path / "world", n_scenes=3, scene_size_m=640)
    module = CaptionDataModule(
        manifest=str(root / "captions.jsonl"), batch_size=4, val_fraction=0.2, size=16
    )
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 4, 16, 16) and batch["gsd"].shape == (4,)
    assert isinstance(batch["caption"], list) and all(isinstance(c, str) for c in batch["caption"])
    assert set(batch["gsd"].tolist()) <= {20.0, 40.0}  # 32 px resized to 16: GSD doubles
    reflectance = batch["image"][:, 3]  # NIR of vegetated land: TOA reflectance ~0.1-0.5
    assert 0.05 < float(reflectance.mean()) < 0.6
    assert len(module.val_dataset) == 2
    stats = {
        "band_names": ["B02", "B03", "B04", "B08"],
        "wavelengths": batch["wavelengths"][0].tolist(),
        "low": [0.0] * 4,
        "high": [1.0] * 4,
        "mean": [0.1] * 4,
        "std": [0.5] * 4,
        "sensor": "s2",
    }
    normalised = CaptionDataModule(
        manifest=str(root / "captions.jsonl"),
        batch_size=4,
        val_fraction=0.2,
        size=16,
        band_stats=stats,
    )
    normalised.setup("fit")
    assert list(normalised.band_stats) == ["s2"]
    raw, scaled = module.val_dataset[0]["image"], normalised.val_dataset[0]["image"]
    torch.testing.assert_close(scaled, (raw - 0.1) / 0.5)
