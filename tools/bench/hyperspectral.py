"""Benchmark: hyperspectral segmentation models, latency per tile and full-scene throughput.

For each model (default: ``hyperseg_tiny``, ``hyperefficientvit_tiny``, ``smarties_tiny_hsi_seg``
and the plain ``segformer_tiny`` baseline) it measures

- **latency**: median wall time of one forward pass on a ``[1, C, 512, 512]`` tile (C bands of an
  imaging spectrometer, default 244: EMIT without its water-vapour bands), after warm-up;
- **throughput**: megapixels per second of ``rsfm.inference.tile_raster`` over a whole synthetic
  scene (int16 GeoTIFF, real UTM CRS, wavelength tags), reads, blending and writing included.

Usage::

    python tools/bench/hyperspectral.py                    # CPU, 512 px tiles, 1024 px scene
    python tools/bench/hyperspectral.py --quick            # a few seconds per model
    python tools/bench/hyperspectral.py --device cuda --scene-size 4096
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

import rsfm.models.hyperspectral  # noqa: F401  (registers the variants)
from rsfm.inference.engine import tile_raster
from rsfm.models.registry import create_model

DEFAULT_MODELS = (
    "segformer_tiny",
    "hyperseg_tiny",
    "hyperefficientvit_tiny",
    "smarties_tiny_hsi_seg",
)


def write_scene(path: Path, bands: int, size: int, seed: int = 0) -> np.ndarray:
    """A smooth random int16 cube with wavelength tags (400-2500 nm); returns the wavelengths."""
    rng = np.random.default_rng(seed)
    wavelengths = np.linspace(400.0, 2500.0, bands).astype(np.float32)
    low = rng.normal(size=(bands, size // 16 + 1, size // 16 + 1)).astype(np.float32)
    cube = np.kron(low, np.ones((16, 16), dtype=np.float32))[:, :size, :size]
    cube = (2000 + 500 * cube + rng.normal(0, 50, cube.shape)).astype(np.int16)
    transform = from_origin(400000, 5800000, 30, 30)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "int16",
               "crs": "EPSG:32633", "transform": transform, "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "nodata": -32768}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube)
        for i, w in enumerate(wavelengths, start=1):
            dst.update_tags(i, wavelength=str(float(w)), wavelength_units="nanometers")
    return wavelengths


def latency_ms(model: torch.nn.Module, bands: int, tile: int, device: str, repeats: int) -> float:
    """Median forward time (ms) of one ``[1, bands, tile, tile]`` tile."""
    image = torch.randn(1, bands, tile, tile, device=device)
    wavelengths = torch.linspace(400.0, 2500.0, bands, device=device)
    times = []
    with torch.inference_mode():
        for index in range(repeats + 2):  # two warm-up passes (allocators, cuDNN autotuning)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(image, wavelengths)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if index >= 2:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def scene_throughput(
    model: torch.nn.Module,
    scene: Path,
    wavelengths: np.ndarray,
    tile: int,
    device: str,
    batch_size: int,
) -> float:
    """Megapixels per second of the tiled engine over the whole scene."""
    waves = torch.as_tensor(wavelengths, device=device)

    @torch.inference_mode()
    def predict(image: torch.Tensor) -> torch.Tensor:
        return model(image, waves).softmax(dim=1)

    with rasterio.open(scene) as src:
        pixels = src.width * src.height
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        tile_raster(
            predict,
            scene,
            Path(folder) / "out.tif",
            tile_size=tile,
            overlap=tile // 8,
            batch_size=batch_size,
            output="classes",
            num_classes=2,
            resume=False,
            progress=False,
            device=device,
        )
        elapsed = time.perf_counter() - start
    return pixels / elapsed / 1e6


def main() -> None:
    """Parse arguments, run every model, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--bands", type=int, default=244)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--scene-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="256 px tiles, 512 px scene")
    args = parser.parse_args()
    if args.quick:
        args.tile_size, args.scene_size, args.repeats = 256, 512, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        scene = Path(folder) / "scene.tif"
        wavelengths = write_scene(scene, args.bands, args.scene_size)
        rows = []
        for name in args.models:
            model = create_model(name).eval().to(args.device)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            latency = latency_ms(model, args.bands, args.tile_size, args.device, args.repeats)
            mpx = scene_throughput(
                model, scene, wavelengths, args.tile_size, args.device, args.batch_size
            )
            rows.append((name, params, latency, mpx))
    base = next((r for r in rows if r[0] == "segformer_tiny"), None)
    print(
        f"device={args.device} bands={args.bands} tile={args.tile_size} "
        f"scene={args.scene_size}x{args.scene_size} threads={torch.get_num_threads()}"
    )
    print(f"{'model':<24}{'params M':>10}{'ms/tile':>12}{'x segformer':>13}{'scene MPx/s':>13}")
    for name, params, latency, mpx in rows:
        ratio = f"{latency / base[2]:.2f}" if base else "-"
        print(f"{name:<24}{params:>10.2f}{latency:>12.1f}{ratio:>13}{mpx:>13.3f}")


if __name__ == "__main__":
    main()
