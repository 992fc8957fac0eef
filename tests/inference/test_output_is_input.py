"""A tiled run never writes over its own input (same path, symlink or hard link)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from rasters import smooth, write_geotiff

from rsfm.cli import main
from rsfm.inference.engine import OutputIsInputError, OutputPathError, tile_raster


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _identity(image: torch.Tensor) -> torch.Tensor:
    return image


@pytest.mark.parametrize("alias", ["same", "relative", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused_before_reading(
    alias: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_geotiff(tmp_path / "in.tif", smooth(3, 64, 64, seed=1))
    before = _sha256(source)
    output = {
        "same": source,
        "relative": Path("sub/../in.tif"),
        "symlink": tmp_path / "link.tif",
        "hardlink": tmp_path / "hard.tif",
    }[alias]
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    if alias == "symlink":
        output.symlink_to(source)
    if alias == "hardlink":
        os.link(source, output)
    with pytest.raises(OutputIsInputError, match="is the input raster"):
        tile_raster(_identity, source, output, tile_size=32, overlap=8, progress=False)
    assert _sha256(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"in.tif", "sub", *({output.name} if alias in ("symlink", "hardlink") else ())}
    )


def test_a_different_output_is_written(tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "in.tif", smooth(3, 64, 64, seed=1))
    out = tile_raster(_identity, source, tmp_path / "out.tif", tile_size=32, overlap=8,
                      progress=False)  # fmt: skip
    assert out.is_file() and _sha256(source) != _sha256(out)


def test_rsfm_tile_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "in.tif", smooth(13, 64, 64, seed=2))
    before = _sha256(source)
    with pytest.raises(OutputIsInputError):
        main(["tile", "smarties-tiny", str(source), str(source), "--device", "cpu"])
    assert _sha256(source) == before


def test_a_directory_or_unwritable_output_is_refused_before_computing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_geotiff(tmp_path / "in.tif", smooth(3, 64, 64, seed=1))
    calls = []

    def predict(image: torch.Tensor) -> torch.Tensor:
        calls.append(image.shape)
        return image

    (tmp_path / "maps").mkdir()
    with pytest.raises(OutputPathError, match="is a directory; give a file name"):
        tile_raster(predict, source, tmp_path / "maps", tile_size=32, overlap=8, progress=False)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(  # root may write anywhere: simulate a read-only folder
        os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode)
    )
    with pytest.raises(OutputPathError, match=f"no write access to {locked}"):
        tile_raster(
            predict, source, locked / "new" / "map.tif", tile_size=32, overlap=8, progress=False
        )
    assert calls == [] and not (locked / "new").exists()
