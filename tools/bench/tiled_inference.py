"""Benchmark: rsfm's streaming tiled inference vs the model alone vs a naive torchgeo loop.

Writes Sentinel-2-like scenes (13 bands, uint16, real UTM CRS, 256-px DEFLATE tiles) of each
``--sizes`` side, then, for each size and in a fresh subprocess each (so peak RSS is that run's):

(a) ``rsfm.inference.tile_raster``: windowed reads in a background thread, batched forward
    passes, Hann blending in a sliding row band, COG output (``classes``, 7 classes);
(b) the model's forward pass alone on the same tiles, in the same batches, pre-loaded in memory
    (one batch at a time by default, ``--chunk-tiles`` for more; only the forward passes are
    timed): the ceiling;
(c) a naive loop: torchgeo ``RasterDataset`` + ``GridGeoSampler`` + ``DataLoader``, the same
    model, overlapping probabilities averaged in full-size in-memory arrays, one final write;
(d) the engine with a model that returns zeros: what reading, blending and writing cost alone
    (I/O can only be hidden where (d) is much faster than (b) and a core is free for it).

It prints tiles/s, (a)/(b) (target >= 0.85: I/O hidden behind compute), and the peak RSS of (a)
and (c) per size (target: (a) at the largest size within 1.2x of the smallest).

Usage::

    python tools/bench/tiled_inference.py                  # 2048 and 8192 px, small conv net
    python tools/bench/tiled_inference.py --quick          # 512 and 1024 px, seconds
    python tools/bench/tiled_inference.py --model smarties_tiny --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window
from torch import nn

from rsfm.sensors import get_sensor

SENSOR = get_sensor("sentinel2_l1c")
NUM_CLASSES = 7
WEST, NORTH, RES = 300_000.0, 5_000_000.0, 10.0


def write_scene(path: Path, size: int, block: int = 256, seed: int = 0) -> Path:
    """A ``size``² x 13-band uint16 scene, written block row by block row (bounded memory)."""
    rng = np.random.default_rng(seed)
    bands = len(SENSOR)
    base = rng.integers(200, 4000, size=(bands, 1, 1))
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": from_origin(WEST, NORTH, RES, RES), "tiled": True,
        "blockxsize": block, "blockysize": block, "compress": "deflate", "num_threads": "all_cpus",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, block):
            rows = min(block, size - top)
            coarse = rng.integers(0, 2000, size=(1, -(-rows // 8), size // 8))
            texture = coarse.repeat(8, 1).repeat(8, 2)[:, :rows, :size]
            noise = rng.integers(0, 200, size=(bands, rows, size))
            dst.write((base + texture + noise).astype(np.uint16), window=Window(0, top, size, rows))
        dst.descriptions = tuple(SENSOR.band_names)
    return path


class ConvNet(nn.Module):
    """Small dense classifier: 3x3 conv 13->32, 3x3 conv 32->32, 1x1 conv 32->7."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(bands, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, classes, 1),
        )  # fmt: skip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image).softmax(dim=1)


class SmartiesSegmenter(nn.Module):
    """``smarties_tiny`` encoder + 1x1 head, upsampled bilinearly to pixels."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        from rsfm.models.registry import create_model

        self.encoder = create_model("smarties_tiny").encoder
        self.head = nn.Conv2d(self.encoder.embed_dim, classes, 1)
        self.register_buffer("wavelengths", torch.as_tensor(SENSOR.wavelengths).float())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder.forward_spatial(image, self.wavelengths))
        up = nn.functional.interpolate(
            logits, scale_factor=self.encoder.patch_size, mode="bilinear"
        )
        return up.softmax(dim=1)


def build_model(name: str, device: str) -> nn.Module:
    torch.manual_seed(0)
    model = ConvNet(len(SENSOR), NUM_CLASSES) if name == "conv" else SmartiesSegmenter(NUM_CLASSES)
    return model.eval().to(device)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """Reflectance-like scaling of Sentinel-2 digital numbers."""
    return image / 10_000.0


def rss_mb(field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of this process image, in MB.

    Read from /proc rather than ``getrusage``: ``ru_maxrss`` survives ``exec`` and would report
    the parent's peak in a fresh subprocess.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: KiB or B


# ---------------------------------------------------------------------- workers (subprocesses)


def run_tiled(args: argparse.Namespace, model: Callable) -> dict[str, Any]:
    """(a) the streaming engine, end to end (open, stream, COG copy, rename)."""
    from rsfm.inference import TiledPredictor, TileOptions

    options = TileOptions(
        tile_size=args.tile, overlap=args.overlap, batch_size=args.batch_size, output="classes",
        num_classes=NUM_CLASSES, progress=False, resume=False, device=args.device,
    )  # fmt: skip
    report = TiledPredictor(model, options, normalize).run(args.path, args.out)
    return {
        "tiles": report.tiles_predicted,
        "seconds": report.seconds,
        "predict_s": report.seconds_predict,
        "waiting_s": report.seconds_waiting,
        "writing_s": report.seconds_writing,
        "max_buffered_rows": report.max_buffered_rows,
    }


def run_io_only(args: argparse.Namespace, model: nn.Module) -> dict[str, Any]:
    """(d) the engine with a model that returns zeros: the cost of reading, blending, writing."""

    def zeros(image: torch.Tensor) -> torch.Tensor:
        return image.new_zeros(image.shape[0], NUM_CLASSES, *image.shape[2:])

    return run_tiled(args, zeros)


def run_forward(args: argparse.Namespace, model: nn.Module) -> dict[str, Any]:
    """(b) forward passes alone over exactly (a)'s tiles and batches, pre-loaded in chunks.

    Each chunk is read and normalised untimed, then only the forward passes over it are timed
    (the whole 8192² tile set would not fit in memory at once).
    """
    from rsfm.inference import TileGrid

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    elapsed, done = 0.0, 0
    with rasterio.open(args.path) as src, torch.inference_mode():
        grid = TileGrid(src.height, src.width, args.tile, args.overlap)
        # default one batch per chunk: its input is then as cache-warm as in the engine
        chunk = max(args.batch_size, args.chunk_tiles // args.batch_size * args.batch_size)
        for first in range(0, len(grid), chunk):
            tiles = [
                grid.tile(*divmod(i, grid.n_cols))
                for i in range(first, min(first + chunk, len(grid)))
            ]
            stack = np.stack(
                [src.read(window=Window(t.col, t.row, t.width, t.height)) for t in tiles]
            )
            loaded = normalize(torch.from_numpy(stack.astype(np.float32))).to(args.device)
            sync()
            start = time.perf_counter()
            for index in range(0, len(loaded), args.batch_size):
                model(loaded[index : index + args.batch_size]).float().cpu()
            sync()
            elapsed += time.perf_counter() - start
            done += len(loaded)
    return {"tiles": done, "seconds": elapsed}


def run_naive(args: argparse.Namespace, model: nn.Module) -> dict[str, Any]:
    """(c) torchgeo RasterDataset + GridGeoSampler, full-size accumulators, one write."""
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    class Scene(RasterDataset):
        filename_glob = Path(args.path).name
        all_bands = tuple(SENSOR.band_names)

    start = time.perf_counter()
    dataset = Scene(str(Path(args.path).parent))
    sampler = GridGeoSampler(dataset, size=args.tile, stride=args.tile - args.overlap)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler,
                        collate_fn=stack_samples, num_workers=0)  # fmt: skip
    with rasterio.open(args.path) as src:
        height, width, profile = src.height, src.width, src.profile
    probabilities = np.zeros((NUM_CLASSES, height, width), dtype=np.float32)
    counts = np.zeros((height, width), dtype=np.float32)
    tiles = 0
    with torch.inference_mode():
        for batch in loader:
            output = model(normalize(batch["image"].float()).to(args.device)).float().cpu().numpy()
            for out, (x, y, _) in zip(output, batch["bounds"], strict=True):
                # torchgeo's grid starts at the bottom and may reach past the raster's edges
                col, row = round((x.start - WEST) / RES), round((NORTH - y.stop) / RES)
                r0, c0 = max(row, 0), max(col, 0)
                r1, c1 = min(row + out.shape[1], height), min(col + out.shape[2], width)
                probabilities[:, r0:r1, c0:c1] += out[:, r0 - row : r1 - row, c0 - col : c1 - col]
                counts[r0:r1, c0:c1] += 1
            tiles += output.shape[0]
    classes = (probabilities / np.maximum(counts, 1)).argmax(axis=0).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=None, compress="deflate", tiled=True)
    with rasterio.open(args.out, "w", **profile) as dst:
        dst.write(classes, 1)
    return {"tiles": tiles, "seconds": time.perf_counter() - start}


WORKERS: dict[str, Callable[[argparse.Namespace, nn.Module], dict[str, Any]]] = {
    "tiled": run_tiled,
    "forward": run_forward,
    "naive": run_naive,
    "io": run_io_only,
}


def worker_main(args: argparse.Namespace) -> None:
    """Subprocess entry: run one method, print one JSON line with timings and peak RSS."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(args.model, args.device)
    with torch.inference_mode():  # warm-up for every method alike (lazy init, autotuning)
        model(torch.zeros(args.batch_size, len(SENSOR), args.tile, args.tile, device=args.device))
    baseline = rss_mb("VmRSS")
    result = WORKERS[args.worker](args, model)
    result.update(peak_rss_mb=rss_mb("VmHWM"), baseline_rss_mb=baseline)
    print(json.dumps(result))


# ---------------------------------------------------------------------- driver


def spawn(worker: str, path: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", worker, "--path", str(path), "--out", str(out),
        "--model", args.model, "--device", args.device, "--tile", str(args.tile),
        "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
        "--chunk-tiles", str(args.chunk_tiles), "--threads", str(args.threads),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{worker} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tiles/s (its RSS and timings kept together)."""
    ordered = sorted(runs, key=lambda r: r["tiles"] / r["seconds"])
    return {**ordered[len(ordered) // 2], "rates": [r["tiles"] / r["seconds"] for r in runs]}


def check_same_classes(a: Path, c: Path) -> float:
    """Share of pixels where (a) and (c) agree (blending differs, so close to but below 1)."""
    with rasterio.open(a) as one, rasterio.open(c) as two:
        agree = total = 0
        for _, window in one.block_windows(1):
            x, y = one.read(1, window=window), two.read(1, window=window)
            agree, total = agree + int((x == y).sum()), total + x.size
    return agree / total


def main(argv: Sequence[str] | None = None) -> dict[int, dict[str, dict[str, Any]]]:
    """Run the benchmark and print the table; returns the raw results per size and method."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--quick", action="store_true", help="512 and 1024 px (seconds)")
    parser.add_argument("--model", choices=["conv", "smarties_tiny"], default="conv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunk-tiles", type=int, default=0, help="(b): tiles loaded at once")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of (a) and (b); median")
    parser.add_argument("--skip-naive", action="store_true", help="leave (c) out")
    parser.add_argument("--workdir", type=Path, default=None, help="keep scenes here")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return {}
    if args.quick:
        args.sizes, args.repeats = [512, 1024], 1

    results: dict[int, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="rsfm_tiled_bench_") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            folder = root / f"s{size}"
            folder.mkdir(exist_ok=True)
            scene = folder / f"scene_{size}.tif"
            if not scene.exists():
                started = time.perf_counter()
                write_scene(scene, size)
                print(f"wrote {scene.name} in {time.perf_counter() - started:.1f}s", flush=True)
            with open(scene, "rb") as handle:  # warm the page cache for every method alike
                while handle.read(2**24):
                    pass
            runs: dict[str, list[dict[str, Any]]] = {"forward": [], "tiled": []}
            for _ in range(args.repeats):  # interleaved, so load drifts hit both alike
                for method, found in runs.items():
                    found.append(spawn(method, scene, folder / f"{method}.tif", args))
            results[size] = {m: median_run(found) for m, found in runs.items()}
            results[size]["io"] = spawn("io", scene, folder / "io.tif", args)
            if not args.skip_naive:
                results[size]["naive"] = spawn("naive", scene, folder / "naive.tif", args)
                agree = check_same_classes(folder / "tiled.tif", folder / "naive.tif")
                results[size]["naive"]["agreement"] = agree
            print(f"{size}: {json.dumps(results[size])}", flush=True)
    print_table(results, args)
    return results


def print_table(results: dict[int, dict[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    threads = args.threads or torch.get_num_threads()
    print(
        f"\nmodel {args.model} on {args.device} ({threads} torch threads), tiles {args.tile} px, "
        f"overlap {args.overlap}, batch {args.batch_size}, 13-band uint16 DEFLATE input"
    )
    header = (
        f"{'size':>6}{'tiles':>7}{'(a) t/s':>9}{'(b) t/s':>9}{'a/b':>6}{'(c) t/s':>9}"
        f"{'(d) t/s':>9}{'RSS a MB':>10}{'RSS c MB':>10}{'a: wait/pred/write s':>23}"
    )
    print(header)
    for size, r in results.items():
        a, b, c, d = r["tiled"], r["forward"], r.get("naive"), r["io"]
        rate_a, rate_b = a["tiles"] / a["seconds"], b["tiles"] / b["seconds"]
        rate_c = f"{c['tiles'] / c['seconds']:9.1f}" if c else f"{'-':>9}"
        rss_c = f"{c['peak_rss_mb']:10.0f}" if c else f"{'-':>10}"
        split = f"{a['waiting_s']:.1f}/{a['predict_s']:.1f}/{a['writing_s']:.1f}"
        print(
            f"{size:>6}{a['tiles']:>7}{rate_a:9.1f}{rate_b:9.1f}{rate_a / rate_b:6.2f}{rate_c}"
            f"{d['tiles'] / d['seconds']:9.1f}{a['peak_rss_mb']:10.0f}{rss_c}{split:>23}"
        )
        spread = (
            ", ".join(f"{x:.1f}" for x in b["rates"]),
            ", ".join(f"{x:.1f}" for x in a["rates"]),
        )
        print(f"{'':>6} runs: (b) {spread[0]}; (a) {spread[1]}")
    sizes = list(results)
    if len(sizes) > 1:
        small, large = results[sizes[0]]["tiled"], results[sizes[-1]]["tiled"]
        print(
            f"peak RSS of (a): {sizes[-1]}² / {sizes[0]}² = "
            f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x (target <= 1.2x); above the "
            f"imports+model baseline: {small['peak_rss_mb'] - small['baseline_rss_mb']:.0f} MB -> "
            f"{large['peak_rss_mb'] - large['baseline_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
