"""Two tiled runs to one output: the second fails at once with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from rasters import write_geotiff

from rsfm.inference import tile_raster
from rsfm.inference.engine import OutputLockedError, output_lock_path


def _predict(image: torch.Tensor) -> torch.Tensor:
    return image[:, :1]


def test_a_second_run_to_a_locked_output_fails_at_once(tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "in.tif", np.ones((1, 32, 32), dtype=np.float32) * 3)
    out = tmp_path / "out.tif"
    with FileLock(output_lock_path(out), timeout=0):  # another run holds it
        with pytest.raises(OutputLockedError, match="another rsfm tile run is writing it"):
            tile_raster(_predict, source, out, tile_size=16, overlap=4, output="values")
        assert not out.exists()
    tile_raster(_predict, source, out, tile_size=16, overlap=4, output="values")
    assert out.exists()  # free again: the run goes through
