"""Benchmark: patches/s of rsfm's SensorRasterDataset vs torchgeo's RasterDataset vs raw rasterio.

Writes Sentinel-2-like GeoTIFFs (13 bands uint16, real UTM CRS, 256-px tiles, DEFLATE) into a
temporary directory, draws one fixed list of random 256-px windows with torchgeo's
``RandomGeoSampler``, and times three loaders over exactly those windows with the same number of
DataLoader workers:

(a) torchgeo ``RasterDataset`` + ``stack_samples``;
(b) rsfm ``SensorRasterDataset`` + ``collate_samples``;
(c) a raw rasterio windowed-read loop (cached handles, one ``read`` per window, torch's
    ``default_collate``): the practical limit.

Usage::

    python tools/bench/dataloading.py            # 4 files of 2048x2048, 2 workers
    python tools/bench/dataloading.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import from_bounds
from torch.utils.data import DataLoader, Dataset, default_collate
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import RandomGeoSampler

from rsfm.data.collate import collate_samples
from rsfm.data.raster import SensorRasterDataset
from rsfm.sensors import get_sensor

SENSOR = get_sensor("sentinel2_l1c")


class TorchgeoSentinel2(RasterDataset):
    """torchgeo's reference: a RasterDataset declaring the benchmark files and bands."""

    filename_glob = "bench_*.tif"
    all_bands = tuple(SENSOR.band_names)


class RawWindows(Dataset):
    """Raw rasterio: one cached handle per file and process, one windowed read per sample."""

    def __init__(self, windows: Sequence[tuple[str, tuple[float, float, float, float]]]) -> None:
        self.windows = list(windows)
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        path, bounds = self.windows[index]
        src = self._handles.get(path) or self._handles.setdefault(path, rasterio.open(path))
        window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        return torch.from_numpy(src.read(window=window, out_dtype="float32"))


def write_scenes(
    root: Path, n_files: int, size: int, block: int = 256, seed: int = 0
) -> list[Path]:
    """Sentinel-2-like scenes side by side in UTM 33N (EPSG:32633), tiled and compressed."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        base = rng.integers(200, 4000, size=(len(SENSOR), 1, 1))
        texture = rng.integers(0, 2000, size=(1, size // 8, size // 8)).repeat(8, 1).repeat(8, 2)
        noise = rng.integers(0, 200, size=(len(SENSOR), size, size))
        data = (base + texture + noise).astype(np.uint16)
        path = root / f"bench_{i:02d}.tif"
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": len(SENSOR),
            "dtype": "uint16",
            "crs": "EPSG:32633",
            "transform": from_origin(300_000 + i * size * 10.0, 5_000_000, 10.0, 10.0),
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "compress": "deflate",
            "nodata": 0,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = tuple(SENSOR.band_names)
        paths.append(path)
    return paths


def time_loader(
    dataset: Dataset, sampler: Sequence[Any], collate: Callable, workers: int, batch_size: int
) -> float:
    """Patches per second of one full pass (worker start-up included, as in training)."""
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate
    )
    start = time.perf_counter()
    n = 0
    for batch in loader:
        image = batch["image"] if isinstance(batch, dict) else batch
        n += image.shape[0]
    return n / (time.perf_counter() - start)


def per_patch_ms(dataset: Dataset, keys: Sequence[Any]) -> tuple[float, float]:
    """In one process, no DataLoader: ms per patch on a first (cold) and a second (warm) pass."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for key in keys:
            dataset[key]
        times.append((time.perf_counter() - start) / len(keys) * 1000)
    return times[0], times[1]


def make_loaders(
    root: str, queries: list[Any], windows: list[tuple[str, tuple[float, float, float, float]]]
) -> dict[str, tuple[Dataset, Sequence[Any], Callable]]:
    """New (unopened) datasets, with their sampler and collate function, per loader."""
    return {
        "torchgeo RasterDataset": (TorchgeoSentinel2(root), queries, stack_samples),
        "rsfm SensorRasterDataset": (
            SensorRasterDataset(root, sensor=SENSOR),
            queries,
            collate_samples,
        ),
        "raw rasterio loop": (RawWindows(windows), list(range(len(windows))), default_collate),
    }


def check_same_pixels(loaders: dict[str, tuple[Dataset, Sequence[Any], Callable]]) -> None:
    """All three loaders must return the same pixels for the same window."""
    images = []
    for dataset, keys, _ in loaders.values():
        item = dataset[keys[0]]
        images.append((item["image"] if isinstance(item, dict) else item).numpy())
    if not all(np.array_equal(images[0], other) for other in images[1:]):
        raise AssertionError("the loaders disagree on the pixels of the first window")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print the table; returns patches/s per loader."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4, help="number of scenes")
    parser.add_argument("--size", type=int, default=2048, help="scene side in pixels")
    parser.add_argument("--patch", type=int, default=256, help="patch side in pixels")
    parser.add_argument("--block", type=int, default=256, help="GeoTIFF tile side (GDAL default)")
    parser.add_argument("--samples", type=int, default=512, help="patches per loader")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs (median kept)")
    parser.add_argument("--quick", action="store_true", help="small run (seconds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.size, args.samples, args.repeats = 2, 1024, 96, 1

    with tempfile.TemporaryDirectory(prefix="rsfm_bench_") as tmp:
        paths = write_scenes(Path(tmp), args.files, args.size, args.block)
        rsfm_ds = SensorRasterDataset(tmp, sensor=SENSOR)
        generator = torch.Generator().manual_seed(0)
        queries = list(
            RandomGeoSampler(rsfm_ds, size=args.patch, length=args.samples, generator=generator)
        )
        windows = []
        for x, y, _ in queries:
            hit = rsfm_ds.index.cx[x.start + 1 : x.stop - 1, y.start + 1 : y.stop - 1]
            windows.append((hit.filepath.iloc[0], (x.start, y.start, x.stop, y.stop)))
        check_same_pixels(make_loaders(tmp, queries, windows))
        # Warm the OS page cache once so no loader pays the first read from disk.
        for path in paths:
            Path(path).read_bytes()
        in_process = {
            name: per_patch_ms(ds, keys)
            for name, (ds, keys, _) in make_loaders(tmp, queries, windows).items()
        }
        # Fresh datasets again: a handle opened before the fork must not reach the workers
        # (torchgeo's handle cache is not fork-safe; rsfm's is keyed by process id).
        loaders = make_loaders(tmp, queries, windows)
        runs: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.repeats):  # interleaved, so load drifts hit every loader alike
            for name, (ds, sampler, collate) in loaders.items():
                runs[name].append(time_loader(ds, sampler, collate, args.workers, args.batch_size))
        rates = {name: float(np.median(r)) for name, r in runs.items()}

    print(
        f"{args.files} files {args.size}x{args.size}x{len(SENSOR)} uint16 ({args.block}-px DEFLATE "
        f"tiles), {args.samples} patches of {args.patch}px, {args.workers} workers, "
        f"batch {args.batch_size}, {args.repeats} runs"
    )
    print(f"{'loader':<28}{'patches/s (median)':>20}{'min':>9}{'max':>9}")
    for name, rate in rates.items():
        print(f"{name:<28}{rate:>20.1f}{min(runs[name]):>9.1f}{max(runs[name]):>9.1f}")
    tg, ours, raw = rates.values()
    print(f"rsfm / torchgeo = {ours / tg:.2f}x   raw / rsfm = {raw / ours:.2f}x")
    print(f"\nper patch in one process, no DataLoader (ms)\n{'loader':<28}{'cold':>9}{'warm':>9}")
    for name, (cold, warm) in in_process.items():
        print(f"{name:<28}{cold:>9.2f}{warm:>9.2f}")
    (tg_cold, tg_warm), (our_cold, our_warm), _ = in_process.values()
    print(
        f"torchgeo / rsfm per patch: cold {tg_cold / our_cold:.2f}x, warm {tg_warm / our_warm:.2f}x"
    )
    return rates


if __name__ == "__main__":
    main()
