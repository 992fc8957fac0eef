"""``rsfm data chip``: GeoTIFF scenes -> LitData chip shards, read back bit for bit."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import litdata
import numpy as np
import pytest
import rasterio
import rasterio.windows
import torch
from rasterio.crs import CRS
from rasters import ramp, smooth, write_geotiff

from rsfm.data import shards
from rsfm.data.collate import collate_samples
from rsfm.data.shards import ChipError, ShardDataset, chip_main, chip_scenes, load_band_stats
from rsfm.data.shards_write import SceneChipper, read_groups, window_starts
from rsfm.sensors import get_sensor

SIZE = 16
LABEL_NODATA = 255


@pytest.fixture
def scenes(tmp_path: Path) -> dict[str, Path]:
    """Three small RGB scenes and one label raster, all on UTM 33N at 10 m.

    a: 48x48 uint16, tiled 16x16, acquisition time tagged  -> 3x3 windows, none skipped
    b: 40x40 uint16, nodata 0 over rows 0-19, cols 0-29     -> 3x3 windows (the last snapped
       to the edge at 24), 2 skipped: (row 0, col 0) is all nodata, (0, 16) is 14/16 nodata
    c: 32x40 float32 with c_label.tif (255 = nodata)         -> 2x3 windows, none skipped
    """
    root = tmp_path / "in"
    a = write_geotiff(root / "a.tif", ramp(3, 48, 48), tiled=True)
    with rasterio.open(a, "r+") as dst:
        dst.update_tags(ACQUISITION_DATETIME="2021-06-01T10:00:00Z")
    b_data = ramp(3, 40, 40)
    b_data[:, :20, :30] = 0
    b = write_geotiff(root / "b.tif", b_data, nodata=0)
    c = write_geotiff(root / "c.tif", smooth(3, 32, 40), origin=(501_000.0, 5_000_000.0))
    labels = np.random.default_rng(0).integers(0, 5, (32, 40)).astype("uint8")
    labels[:3, :7] = LABEL_NODATA
    label = write_geotiff(
        tmp_path / "labels" / "c_label.tif",
        labels,
        nodata=LABEL_NODATA,
        origin=(501_000.0, 5_000_000.0),
    )
    return {"root": root, "a": a, "b": b, "c": c, "labels": label.parent}


def _chip(scenes: dict[str, Path], out: Path, **kwargs) -> shards.ChipResult:
    options = {"size": SIZE, "sensor": "rgb", "label": scenes["labels"], "workers": 1}
    return chip_scenes([scenes["root"]], out, progress=False, **(options | kwargs))


def _direct(sample: dict) -> dict:
    """The chip's window read straight from its files with rasterio (no rsfm code)."""
    window = rasterio.windows.Window(*sample["window"])
    with rasterio.open(sample["source"]) as src:
        raw = src.read(window=window)
        valid = np.ones(raw.shape[1:], bool)
        if src.nodata is not None:
            valid &= (raw != src.nodata).all(axis=0)
        out = {
            "raw": raw,
            "image": np.where(valid, raw.astype(np.float32), np.float32(0)),
            "valid": valid,
            "bounds": rasterio.windows.bounds(window, src.transform),
            "transform": rasterio.windows.transform(window, src.transform),
            "crs": src.crs,
        }
    if sample["label_source"]:
        with rasterio.open(sample["label_source"]) as src:
            labels = src.read(1, window=window).astype(np.int64)
        out["mask"] = np.where(labels == LABEL_NODATA, -1, labels)
    else:
        out["mask"] = np.full(raw.shape[1:], -1)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_window_grid_and_block_aligned_groups() -> None:
    assert window_starts(40, 16, 16, "snap") == [0, 16, 24]
    assert window_starts(40, 16, 16, "drop") == [0, 16]
    assert window_starts(15, 16, 16) == []
    # a 512-px tiled scene: every read covers whole 512-row block bands, 2048+ columns
    groups = read_groups(2000, 5000, (512, 512), 128, 128, "drop")
    for rows, cols in groups:
        assert len({r // 512 for r in rows}) == 1 and len({c // 2048 for c in cols}) == 1
    assert sum(len(r) * len(c) for r, c in groups) == (2000 // 128) * (5000 // 128)
    # a striped scene: one chip row per read, full width
    assert all(len(r) == 1 for r, _ in read_groups(300, 300, (1, 300), 100, 100, "drop"))


def test_chips_read_back_bit_for_bit(scenes: dict[str, Path], tmp_path: Path) -> None:
    result = _chip(scenes, tmp_path / "out")
    counts = result.manifest["counts"]
    assert counts["windows"] == 9 + 9 + 6
    assert counts["skipped"] == {"nodata": 2, "pair_nodata": 0}
    assert counts["chips"] == 9 + (9 - 2) + 6 == 22
    per_scene = {
        Path(s["source"]).name: (s["windows"], s["chips"]) for s in result.manifest["scenes"]
    }
    assert per_scene == {"a.tif": (9, 9), "b.tif": (9, 7), "c.tif": (6, 6)}

    dataset = ShardDataset(tmp_path / "out")
    raw = litdata.StreamingDataset(str(tmp_path / "out"))
    assert len(dataset) == len(raw) == 22
    seen = set()
    rgb = get_sensor("rgb")
    for i in range(len(dataset)):
        sample, stored = dataset[i], raw[i]
        direct = _direct(sample)
        name = Path(sample["source"]).name
        seen.add((name, sample["window"][1], sample["window"][0]))
        # the shard keeps the file's own dtype (integers) and its values, bit for bit
        assert stored["image"].dtype == (np.float32 if name == "c.tif" else np.uint16)
        assert np.array_equal(stored["image"], np.where(direct["valid"], direct["raw"], 0))
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, SIZE, SIZE)
        assert torch.equal(sample["image"], torch.from_numpy(direct["image"]))
        assert torch.equal(sample["valid"], torch.from_numpy(direct["valid"]))
        assert sample["mask"].dtype == torch.int64
        assert torch.equal(sample["mask"], torch.from_numpy(direct["mask"]))
        assert sample["bounds"] == direct["bounds"]
        assert sample["transform"] == direct["transform"]
        assert sample["crs"] == direct["crs"] and CRS.from_user_input("EPSG:32633") == sample["crs"]
        assert sample["sensor"] == "rgb" and sample["gsd"] == 10.0
        assert torch.equal(sample["wavelengths"], torch.from_numpy(rgb.wavelengths))
        assert sample["time"] == ("2021-06-01T10:00:00Z" if name == "a.tif" else "")
        assert sample["label_source"] == (
            str(scenes["labels"] / "c_label.tif") if name == "c.tif" else ""
        )
    expected = {("a.tif", r, c) for r in (0, 16, 32) for c in (0, 16, 32)}
    expected |= {("b.tif", r, c) for r in (0, 16, 24) for c in (0, 16, 24)} - {
        ("b.tif", 0, 0),
        ("b.tif", 0, 16),
    }
    expected |= {("c.tif", r, c) for r in (0, 16) for c in (0, 16, 24)}
    assert seen == expected
    assert sorted(result.manifest["sample_keys"]) == sorted(dataset[0])

    # a batch through LitData's loader and rsfm's collate
    loader = litdata.StreamingDataLoader(dataset, batch_size=8, collate_fn=collate_samples)
    batches = list(loader)
    assert sum(len(b["image"]) for b in batches) == 22 and batches[0]["image"].shape[1:] == (
        3,
        16,
        16,
    )


def test_band_stats_equal_stats_of_the_same_valid_pixels(
    scenes: dict[str, Path], tmp_path: Path
) -> None:
    _chip(scenes, tmp_path / "out")
    pixels = []
    for sample in ShardDataset(tmp_path / "out"):
        direct = _direct(sample)
        pixels.append(direct["raw"][:, direct["valid"]].astype(np.float64))
    values = np.concatenate(pixels, axis=1)
    low, high = np.percentile(values, (1.0, 99.0), axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    stats = load_band_stats(tmp_path / "out")
    assert list(stats) == ["rgb"]
    rgb = stats["rgb"]
    assert rgb.n_pixels == values.shape[1]
    assert rgb.band_names == ["R", "G", "B"] and rgb.percentiles == (1.0, 99.0)
    np.testing.assert_allclose(rgb.low, low, rtol=1e-12)
    np.testing.assert_allclose(rgb.high, high, rtol=1e-12)
    np.testing.assert_allclose(rgb.mean, clipped.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(rgb.std, clipped.std(axis=1), rtol=1e-12)
    assert ShardDataset(tmp_path / "out").band_stats["rgb"] == rgb


def test_manifest_counts_and_sha256_match_the_files(
    scenes: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = _chip(scenes, out).manifest
    on_disk = {p.name for p in out.iterdir()}
    assert on_disk == {*manifest["files"], "manifest.json"}  # no work folder left behind
    for name, entry in manifest["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    index = json.loads((out / "index.json").read_text())
    chunks = [c["filename"] for c in index["chunks"]]
    assert sorted(chunks) == sorted(n for n in manifest["files"] if n.startswith("chunk-"))
    assert sum(c["chunk_size"] for c in index["chunks"]) == manifest["counts"]["chips"]
    scenes_total = sum(s["chips"] for s in manifest["scenes"])
    assert scenes_total == manifest["counts"]["chips"] == len(ShardDataset(out))
    assert manifest["options"]["size"] == SIZE and manifest["rsfm_version"]
    assert manifest["counts"]["scenes"] == 3 and manifest["sensors"] == {"rgb": 22}


def test_a_killed_run_resumes_with_the_missing_scenes_only(
    scenes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = SceneChipper._report

    def crash_in_scene_b(self, *args):  # runs in the LitData worker (forked)
        if Path(self.plan.path).name == "b.tif":
            raise RuntimeError("simulated kill")
        return report(self, *args)

    out = tmp_path / "out"
    monkeypatch.setattr(SceneChipper, "_report", crash_in_scene_b)
    with pytest.raises(ChipError, match="b.tif: chipping failed: .*simulated kill"):
        _chip(scenes, out)
    assert not (out / "index.json").exists() and not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / ".rsfm-chip" / "scenes").glob("*.json")) == ["000000.json"]
    monkeypatch.setattr(SceneChipper, "_report", report)

    ran = []
    run_scene = shards._run_scene
    monkeypatch.setattr(
        shards,
        "_run_scene",
        lambda plan, *a: ran.append(Path(plan.path).name) or run_scene(plan, *a),
    )
    resumed = _chip(scenes, out)
    assert ran == ["b.tif", "c.tif"] and resumed.resumed == 1
    assert [Path(p).name for p in resumed.chipped] == ["b.tif", "c.tif"]

    _chip(scenes, tmp_path / "whole")  # the same, never interrupted
    assert ran == ["b.tif", "c.tif", "a.tif", "b.tif", "c.tif"]
    got, want = _files(out), _files(tmp_path / "whole")
    got_manifest, want_manifest = (json.loads(f.pop("manifest.json")) for f in (got, want))
    assert got == want  # chunks, index.json and band_stats.json, byte for byte
    for manifest in (got_manifest, want_manifest):
        manifest.pop("finished_at")
    assert got_manifest == want_manifest


def test_ctrl_c_is_an_interrupt_not_a_success(
    scenes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LitData's own SIGINT handler would end the process with status 0."""
    report = SceneChipper._report

    def ctrl_c_in_scene_b(self, *args):  # in the worker: the user presses Ctrl-C
        if Path(self.plan.path).name == "b.tif":
            os.kill(os.getppid(), signal.SIGINT)
            time.sleep(30)  # killed by chip_scenes before this ends
        return report(self, *args)

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(SceneChipper, "_report", ctrl_c_in_scene_b)
    with pytest.raises(KeyboardInterrupt):
        _chip(scenes, tmp_path / "out")
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    monkeypatch.setattr(SceneChipper, "_report", report)
    assert _chip(scenes, tmp_path / "out").resumed == 1


def test_a_finished_output_is_left_alone(scenes: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    _chip(scenes, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    said: list[str] = []
    again = _chip(scenes, out, log=said.append)
    assert again.already_complete and again.chipped == []
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert any("nothing to do" in line for line in said)
    with pytest.raises(ValueError, match="other inputs or options"):
        _chip(scenes, out, size=8)


def test_a_co_registered_pair_is_stored_in_the_same_sample(tmp_path: Path) -> None:
    s2 = write_geotiff(tmp_path / "s2" / "tile_s2.tif", ramp(3, 32, 32))
    s1_data = smooth(2, 32, 32) - 1000.0
    s1_data[:, 16:, 16:] = np.nan  # the pair's own nodata: one chip skipped for it
    write_geotiff(tmp_path / "s1" / "tile_s1.tif", s1_data, nodata=float("nan"))
    result = chip_scenes(
        [s2],
        tmp_path / "out",
        size=SIZE,
        sensor="rgb",
        pair=tmp_path / "s1",
        pair_sensor="sentinel1_grd",
        workers=2,
        progress=False,
    )
    assert result.manifest["counts"]["chips"] == 3
    assert result.manifest["counts"]["skipped"] == {"nodata": 0, "pair_nodata": 1}
    samples = list(ShardDataset(tmp_path / "out"))
    assert len(samples) == 3
    for sample in samples:
        window = rasterio.windows.Window(*sample["window"])
        with rasterio.open(sample["pair_source"]) as src:
            direct = src.read(window=window)
        assert sample["pair_sensor"] == "sentinel1_grd" and sample["sensor"] == "rgb"
        assert torch.equal(sample["pair_image"], torch.from_numpy(direct))
        assert bool(sample["pair_valid"].all())
        assert torch.equal(
            sample["pair_wavelengths"], torch.from_numpy(get_sensor("sentinel1_grd").wavelengths)
        )
    assert set(load_band_stats(tmp_path / "out")) == {"rgb", "sentinel1_grd"}


def test_cli_ends_with_where_the_shards_went(
    scenes: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = [str(scenes["a"]), str(scenes["b"]), "--out", str(out), "--size", "16"]
    assert chip_main([*argv, "--sensor", "rgb", "--no-progress", "--workers", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("16 chips from 2 scenes")
    assert lines[-1] == (
        f"shards: {out} (index.json + 2 chunk files), band statistics: {out / 'band_stats.json'}"
        f", manifest: {out / 'manifest.json'}"
    )
    assert chip_main([*argv, "--sensor", "rgb", "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().out
