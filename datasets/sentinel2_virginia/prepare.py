"""Stack a Sentinel-2 L1C one-file-per-band product onto its 10 m grid as one COG.

Bands at 20 m and 60 m are warped bilinearly onto the B02 grid (the catalogue loader
``sentinel2_virginia`` does the same in memory). The output is a Cloud-Optimised GeoTIFF with
band names as descriptions and per-band ``wavelength`` / ``fwhm`` tags (nm), so
``rsfm.sensors.sensor_from_raster`` and ``rsfm tile`` read it without ``--sensor``. Written
atomically (temporary name + rename).

Usage::

    python datasets/sentinel2_virginia/prepare.py ../shared/data/sentinel2_virginia_jp2 --out s2.tif
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import rasterio

from rsfm.data.catalogue.sentinel import stack_bands_on_grid
from rsfm.sensors import get_sensor


def write_stacked(folder: Path, out: Path) -> Path:
    """Write the stacked 13-band uint16 COG of ``folder``'s ``s2_<band>.jp2`` files to ``out``."""
    image, crs, transform = stack_bands_on_grid(folder)
    sensor = get_sensor("sentinel2_l1c")
    profile = {
        "driver": "COG",
        "width": image.shape[2],
        "height": image.shape[1],
        "count": image.shape[0],
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "blocksize": 256,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.clip(np.rint(image), 0, 65535).astype("uint16"))
        dst.descriptions = tuple(sensor.band_names)
        for index, band in enumerate(sensor.bands, start=1):
            dst.update_tags(
                index, wavelength=band.center_nm, fwhm=band.fwhm_nm, wavelength_units="nm"
            )
        dst.update_tags(SENSOR="sentinel2_l1c", SOURCE=f"stacked from {folder.name}/s2_*.jp2")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder with s2_B01.jp2 ... s2_B12.jp2")
    parser.add_argument("--out", type=Path, required=True, help="output COG path")
    args = parser.parse_args(argv)
    print(f"stacked product: {write_stacked(args.folder, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
