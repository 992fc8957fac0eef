"""``rsfm tile`` resumes only its own partial output: the journal holds the model's entry,
weights sha256 and what it was fed; another model or version starts over, and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasters import unit_stats, write_geotiff

import rsfm.hub as hub
from rsfm.cli import main
from rsfm.inference.writer import ResumableGeoTiffWriter
from rsfm.models.registry import create_model

CLASSES = ["water", "forest", "crop", "urban"]


def _push(root: Path, version: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = create_model("smarties_tiny_seg_linear", num_outputs=len(CLASSES))
    card = {
        "task": "segmentation",
        "class_names": CLASSES,
        "normalization": {"sentinel2_l1c": unit_stats("sentinel2_l1c")},
    }
    hub.push(model, "seg", version, root, card=card)


@pytest.fixture()
def two_versions(tmp_path: Path) -> Path:
    """``seg@1.0`` and ``seg@1.1``: same architecture and card, different weights."""
    _push(tmp_path / "hub", "1.0", seed=0)
    _push(tmp_path / "hub", "1.1", seed=1)
    return tmp_path / "hub"


def _interrupted(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    """Run ``rsfm tile`` and kill it just before the output is finalised (every row durable)."""

    def killed(self: ResumableGeoTiffWriter) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ResumableGeoTiffWriter, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            main(argv)


def _classes(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_another_version_never_continues_the_partial_output(
    tmp_path: Path, two_versions: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    scene = write_geotiff(
        tmp_path / "s2.tif", np.random.default_rng(0).random((13, 64, 64), dtype=np.float32)
    )
    common = ["--hub", str(two_versions), "--tile-size", "32", "--overlap", "8"]
    fresh_11 = tmp_path / "fresh11.tif"
    assert main(["tile", "seg@1.1", str(scene), str(fresh_11), *common]) == 0
    fresh_10 = tmp_path / "fresh10.tif"
    assert main(["tile", "seg@1.0", str(scene), str(fresh_10), *common]) == 0
    assert not np.array_equal(_classes(fresh_10), _classes(fresh_11))  # the versions differ

    out = tmp_path / "map.tif"
    _interrupted(monkeypatch, ["tile", "seg@1.0", str(scene), str(out), *common])
    partial = out.with_name(out.name + ".partial.tif")
    assert partial.exists() and not out.exists()
    capsys.readouterr()

    assert main(["tile", "seg@1.1", str(scene), str(out), *common]) == 0
    err = capsys.readouterr().err
    assert f"the partial run at {partial} is not resumed" in err
    assert "written by seg@1.0" in err and "uses seg@1.1" in err and "starting over" in err
    np.testing.assert_array_equal(_classes(out), _classes(fresh_11))


def test_the_same_model_resumes_silently(
    tmp_path: Path, two_versions: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    scene = write_geotiff(
        tmp_path / "s2.tif", np.random.default_rng(1).random((13, 64, 64), dtype=np.float32)
    )
    common = ["--hub", str(two_versions), "--tile-size", "32", "--overlap", "8"]
    out = tmp_path / "map.tif"
    _interrupted(monkeypatch, ["tile", "seg@1.0", str(scene), str(out), *common])
    capsys.readouterr()
    calls: list[int] = []
    original = ResumableGeoTiffWriter.append

    def counting(self: ResumableGeoTiffWriter, *args, **kwargs):  # noqa: ANN202
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ResumableGeoTiffWriter, "append", counting)
    assert main(["tile", "seg@1.0", str(scene), str(out), *common]) == 0
    assert "not resumed" not in capsys.readouterr().err
    assert calls == []  # every row was durable: nothing recomputed
    fresh = tmp_path / "fresh.tif"
    assert main(["tile", "seg@1.0", str(scene), str(fresh), *common, "--no-resume"]) == 0
    np.testing.assert_array_equal(_classes(out), _classes(fresh))


def test_the_journal_names_the_weights_sha256(
    tmp_path: Path, two_versions: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = write_geotiff(
        tmp_path / "s2.tif", np.random.default_rng(2).random((13, 32, 32), dtype=np.float32)
    )
    out = tmp_path / "map.tif"
    argv = ["tile", "seg@1.0", str(scene), str(out), "--hub", str(two_versions)]
    _interrupted(monkeypatch, [*argv, "--tile-size", "32"])
    journal = out.with_name(out.name + ".partial.json").read_text()
    sha = hub.load("seg@1.0", hub=two_versions).rsfm_weights_sha256
    assert len(sha) == 64 and sha in journal
