"""Stack BigEarthNet's one-file-per-band patches into 10 m multi-band GeoTIFFs.

Reads each patch folder with rsfm's own data layer (``SensorRasterDataset(band_files=True)``:
20/60 m bands resampled bilinearly onto the 10 m grid) and writes one tiled, compressed GeoTIFF
per patch with band names as descriptions and the patch's labels as a tag. Files are written
atomically (temporary name + rename), so an interrupted run can simply be started again: patches
already written are skipped.

Usage::

    python datasets/bigearthnet/prepare.py BigEarthNet-S2/ [BigEarthNet-S1/] --out data/bigearthnet
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import rasterio
from tqdm import tqdm

from rsfm.data.raster import SensorRasterDataset

SENSORS = {"S2": ("sentinel2_l2a", "uint16"), "S1": ("sentinel1_grd", "float32")}


def patch_folders(root: Path) -> list[Path]:
    """Patch folders under ``root`` (each holds ``<patch>_<BAND>.tif`` files)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.tif")))


def stack_patch(folder: Path, sensor: str, dtype: str, out: Path) -> Path:
    """Write ``folder``'s band files as one multi-band GeoTIFF at ``out`` (atomic)."""
    dataset = SensorRasterDataset(folder, sensor=sensor, band_files=True, nonfinite="mask")
    x, y, t = dataset.bounds
    sample = dataset.read((slice(x.start, x.stop), slice(y.start, y.stop), t), normalize=False)
    image = sample["image"].numpy()
    if dtype == "uint16":
        image = np.clip(np.rint(image), 0, 65535)
    profile = {
        "driver": "GTiff",
        "width": image.shape[2],
        "height": image.shape[1],
        "count": image.shape[0],
        "dtype": dtype,
        "crs": sample["crs"],
        "transform": sample["transform"],
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "interleave": "pixel",
    }
    tmp = out.with_name(f".{out.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(image.astype(dtype))
        dst.descriptions = tuple(dataset.sensor.band_names)
        metadata = next(folder.glob("*_labels_metadata.json"), None)
        if metadata is not None:
            dst.update_tags(LABELS=json.dumps(json.loads(metadata.read_text())["labels"]))
        dst.update_tags(RSFM_SENSOR=sensor)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="BigEarthNet-S2 and/or -S1 folders")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    for root in args.roots:
        if not root.is_dir() or not patch_folders(root):
            parser.error(f"{root}: no patch folders with .tif files")
        for folder in tqdm(patch_folders(root), desc=f"{root.name} -> {args.out}", unit="patch"):
            kind = "S1" if folder.name.startswith("S1") else "S2"  # BigEarthNet patch naming
            sensor, dtype = SENSORS[kind]
            target = args.out / kind / f"{folder.name}.tif"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                stack_patch(folder, sensor, dtype, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
