"""``rsfm generate``: text-to-image generation, inpainting and outpainting to unbounded canvases.

A canvas larger than the model's image size is generated tile by tile in row-major order on
the tile grid of :mod:`rsfm.inference.tiling` (tiles overlap by ``overlap`` pixels). Each tile
is sampled with the pixels already generated (by earlier tiles) or given (an input image
outside its mask) held fixed, RePaint-style: at every step the known pixels are re-noised to the
step's level and pasted in. Tile outputs are blended with Hann windows
(:class:`rsfm.inference.tiling.BlendWindows`). The running sums live in a temporary GeoTIFF
read and written by windows, so memory holds one tile whatever the canvas size; the result is
streamed to a tiled, compressed GeoTIFF and renamed into place.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine  # rasterio's transform type, without loading GDAL

from rsfm.hub.backends import DEFAULT_HUB_HELP

if TYPE_CHECKING:  # torch and rasterio load once the command runs, so `--help` stays fast
    from rasterio.windows import Window

# rsfm.models.layers.diffusion.GUIDANCE_SCHEDULES, spelled out so `--help` imports no torch
# (tests/test_generate_output.py checks they agree).
GUIDANCE_SCHEDULES = ("constant", "linear", "cosine", "linear_up")
PREVIEW_MAX_PIXELS = 2048 * 2048  # canvases larger than this get no PNG preview
CHUNK = 256  # block side of the GeoTIFFs and of the windows a canvas is finished in
GC_EVERY_TILES = 8
GDAL_CACHE_MB = 64  # bounds the GDAL block cache while tiles read and write the sums


@dataclass
class CanvasReport:
    """What :func:`generate_canvas` did: canvas size, tiles and the largest buffer it held."""

    height: int
    width: int
    tiles: int
    peak_buffer_bytes: int = 0
    outputs: list[Path] = field(default_factory=list)


def _band_names(model: Any) -> list[str]:
    waves = model.init_args.get("band_wavelengths") or []
    return [f"{w:g} nm" for w in waves] or [f"band {i + 1}" for i in range(model.image_channels)]


def rgb_rows(model: Any) -> list[int]:
    """Indexes of the bands nearest 640 / 545 / 470 nm (red, green, blue) for previews."""
    waves = model.init_args.get("band_wavelengths")
    if not waves:
        return [0, 1, 2] if model.image_channels >= 3 else [0, 0, 0]
    return [int(np.argmin([abs(w - target) for w in waves])) for target in (640, 545, 470)]


def write_png(path: Path, image: np.ndarray, rows: Sequence[int]) -> Path:
    """An 8-bit RGB preview with a 2-98 % stretch over all three bands."""
    from PIL import Image  # lazy: only previews need Pillow

    rgb = image[list(rows)].astype(np.float64)
    low, high = np.nanpercentile(rgb, 2), np.nanpercentile(rgb, 98)
    scaled = np.clip((rgb - low) / max(high - low, 1e-9) * 255.0, 0, 255).astype(np.uint8)
    Image.fromarray(np.ascontiguousarray(scaled.transpose(1, 2, 0))).save(path)
    return path


def _profile(
    height: int,
    width: int,
    count: int,
    transform: Affine,
    crs: Any,
    compress: bool = True,
    block: int = CHUNK,
) -> dict[str, Any]:
    block = block if min(height, width) >= block else None
    tiling = {"tiled": True, "blockxsize": block, "blockysize": block} if block else {}
    # The scratch sums are rewritten in place many times: uncompressed, so blocks keep their size.
    packing = {"compress": "deflate", "predictor": 3} if compress else {}
    return {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": "float32",
        "transform": transform,
        "crs": crs,
        **packing,
        **tiling,
    }


def canvas_transform(gsd: float, bounds: Sequence[float] | None) -> Affine:
    """North-up transform of pixel size ``gsd`` from ``bounds``' north-west corner (or 0, 0)."""
    west, north = (bounds[0], bounds[3]) if bounds is not None else (0.0, 0.0)
    return Affine(gsd, 0.0, west, 0.0, -gsd, north)


def _describe(dataset: Any, model: Any, prompt: str, gsd: float | None) -> None:
    for index, name in enumerate(_band_names(model), start=1):
        dataset.set_band_description(index, name)
        waves = model.init_args.get("band_wavelengths")
        if waves:
            dataset.update_tags(index, wavelength=repr(waves[index - 1]))
    dataset.update_tags(RSFM_PROMPT=prompt, RSFM_GSD_M=repr(gsd))


def write_geotiff(
    path: Path,
    image: np.ndarray,
    model: Any,
    prompt: str,
    gsd: float,
    bounds: Sequence[float] | None = None,
    crs: str | None = None,
) -> Path:
    """A float32 GeoTIFF whose transform carries ``gsd`` (written to a temp file, renamed)."""
    import rasterio

    count, height, width = image.shape
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    profile = _profile(height, width, count, canvas_transform(gsd, bounds), crs)
    try:
        with rasterio.open(temporary, "w", **profile) as dataset:
            dataset.write(image.astype(np.float32))
            _describe(dataset, model, prompt, gsd)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


class _Known:
    """Windowed access to given pixels: an input raster and its mask (1 = regenerate)."""

    def __init__(self, image_path: Path | None, mask_path: Path | None, channels: int) -> None:
        import rasterio

        self.image = rasterio.open(image_path) if image_path else None
        self.mask = rasterio.open(mask_path) if mask_path else None
        if self.image is not None and self.image.count != channels:
            raise ValueError(f"{image_path}: {self.image.count} bands, the model has {channels}")

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """``(values [C,h,w], fixed [h,w] bool)`` for a window, or None without an input."""
        if self.image is None:
            return None
        values = self.image.read(window=window, boundless=True, fill_value=0).astype(np.float32)
        fixed = np.ones(values.shape[1:], dtype=bool)
        if self.mask is not None:
            fixed = self.mask.read(1, window=window, boundless=True, fill_value=1) == 0
        return values, fixed & np.isfinite(values).all(axis=0)

    def close(self) -> None:
        for dataset in (self.image, self.mask):
            if dataset is not None:
                dataset.close()


def generate_canvas(
    model: Any,
    prompt: str,
    output: str | Path,
    *,
    gsd: float | None,
    height: int | None = None,
    width: int | None = None,
    bounds: Sequence[float] | None = None,
    crs: str | None = None,
    image: str | Path | None = None,
    mask: str | Path | None = None,
    overlap: int | None = None,
    steps: int = 30,
    scheduler: str = "ddim",
    text_scale: float = 5.0,
    gsd_scale: float = 2.0,
    guidance_schedule: str = "constant",
    seed: int = 0,
    progress: bool = False,
    chunk: int = CHUNK,
) -> CanvasReport:
    """Generate (or complete) a canvas of any size tile by tile, in bounded memory.

    Without ``image`` the whole canvas is generated (outpainting from the first tile on). With
    ``image`` (a GeoTIFF of the model's bands, data space) its pixels are kept except where
    ``mask`` (same grid, 1 = regenerate) is set: inpainting; size, transform and CRS then come
    from the image.

    Args:
        model: A :class:`rsfm.models.text2earth.Text2Earth`.
        prompt: Caption.
        output: Output GeoTIFF.
        gsd: Requested GSD (m); None: from the input image, else no resolution condition.
        height: Canvas rows (default: from ``bounds`` / ``gsd`` or the image).
        width: Canvas columns.
        bounds: ``(west, south, east, north)`` placing the canvas (with ``crs``).
        crs: CRS of ``bounds``.
        image: Input GeoTIFF (inpainting / extending).
        mask: Mask GeoTIFF (1 = regenerate, 0 = keep).
        overlap: Tile overlap in pixels (default: a quarter of the tile).
        steps: Sampling steps per tile.
        scheduler: Sampling scheduler name.
        text_scale: Text guidance scale.
        gsd_scale: Resolution guidance scale.
        guidance_schedule: Guidance schedule over steps.
        seed: Seed of the first tile (tile ``i`` uses ``seed + i``).
        progress: Show a tqdm bar over tiles.
        chunk: Block side (multiple of 16) of the scratch and output GeoTIFFs and of the
            windows the canvas is finished in; memory holds about ``(C + 1) * chunk**2``
            floats at a time whatever the canvas size.
    """
    import rasterio
    import torch
    from rasterio.windows import Window

    from rsfm.inference.tiling import BlendWindows, TileGrid

    output = Path(output)
    tile = int(model.image_size)
    overlap = tile // 4 if overlap is None else int(overlap)
    transform = None
    if image is not None:
        with rasterio.open(image) as dataset:
            height, width, crs = dataset.height, dataset.width, dataset.crs
            transform = dataset.transform
            gsd = abs(dataset.res[0]) if gsd is None else gsd
    elif bounds is not None and gsd:
        width = width or max(1, round((bounds[2] - bounds[0]) / gsd))
        height = height or max(1, round((bounds[3] - bounds[1]) / gsd))
    height, width = int(height or tile), int(width or tile)
    transform = transform or canvas_transform(gsd or 1.0, bounds)
    grid = TileGrid(height, width, tile, overlap)
    windows = BlendWindows(grid, "hann")
    channels = model.image_channels
    known = _Known(Path(image) if image else None, Path(mask) if mask else None, channels)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".rsfm-canvas-", dir=output.parent))
    sums_path = scratch / "sums.tif"
    report = CanvasReport(height, width, len(grid))
    # Running sums (C bands) and weights (1 band) on disk, read and written by tile windows.
    scratch_profile = _profile(height, width, channels + 1, transform, crs, False, chunk)
    with rasterio.open(sums_path, "w", **scratch_profile):
        pass
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(grid), desc="tiles", unit="tile")
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(sums_path, "r+") as sums:
            for index, (row, col) in enumerate(np.ndindex(grid.n_rows, grid.n_cols)):
                cell = grid.tile(row, col)
                window = Window(cell.col, cell.row, tile, tile)
                acc = sums.read(window=window, boundless=True, fill_value=0)
                weight = acc[-1]
                have = weight > 0
                values = np.where(have, acc[:-1] / np.where(have, weight, 1.0), 0.0)
                given = known.read(window)
                if given is not None:
                    values = np.where(given[1], given[0], values)
                    have = have | given[1]
                inside = np.zeros((tile, tile), dtype=bool)
                inside[: cell.height, : cell.width] = True
                have = have & inside
                generator = torch.Generator(device="cpu").manual_seed(seed + index)
                result = (
                    model.generate(
                        [prompt],
                        [gsd],
                        steps=steps,
                        scheduler=scheduler,
                        text_scale=text_scale,
                        gsd_scale=gsd_scale,
                        guidance_schedule=guidance_schedule,
                        generator=generator,
                        known=torch.from_numpy(values[None].astype(np.float32))
                        if have.any()
                        else None,
                        known_mask=torch.from_numpy(have[None, None].astype(np.float32)),
                    )[0]
                    .cpu()
                    .numpy()
                )
                if given is not None:  # given pixels stay exactly as they were
                    result = np.where(given[1], given[0], result)
                blend = windows.window(cell)
                h, w = cell.height, cell.width
                update = acc[:, :h, :w].copy()
                update[:-1] += result[:, :h, :w] * blend
                update[-1] += blend
                sums.write(update, window=Window(cell.col, cell.row, w, h))
                report.peak_buffer_bytes = max(
                    report.peak_buffer_bytes, acc.nbytes + result.nbytes + update.nbytes
                )
                if index % GC_EVERY_TILES == GC_EVERY_TILES - 1:
                    # Libraries leave ~3 KiB of cyclic garbage per tile (rasterio VRTs, text
                    # configs); collecting it now and then keeps memory flat over many tiles.
                    gc.collect()
                if bar is not None:
                    bar.update()
        _finish(sums_path, output, known, model, prompt, gsd, transform, crs, chunk)
    finally:
        known.close()
        if bar is not None:
            bar.close()
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()
    report.outputs.append(output)
    return report


def _finish(
    sums_path: Path,
    output: Path,
    known: _Known,
    model: Any,
    prompt: str,
    gsd: float | None,
    transform: Affine,
    crs: Any,
    chunk: int = CHUNK,
) -> None:
    """Stream sums / weights (given pixels exact) into the output GeoTIFF, then rename it."""
    import rasterio
    from rasterio.windows import Window

    temporary = output.with_name(f".{output.name}.{uuid.uuid4().hex}.tmp")
    try:
        with rasterio.open(sums_path) as sums:
            profile = _profile(sums.height, sums.width, sums.count - 1, transform, crs, True, chunk)
            with rasterio.open(temporary, "w", **profile) as out:
                blocks = (math.ceil(sums.height / chunk), math.ceil(sums.width / chunk))
                for top, left in np.ndindex(*blocks):  # block-aligned: memory holds one block
                    window = Window(
                        left * chunk,
                        top * chunk,
                        min(chunk, sums.width - left * chunk),
                        min(chunk, sums.height - top * chunk),
                    )
                    acc = sums.read(window=window)
                    values = acc[:-1] / np.maximum(acc[-1], 1e-12)
                    given = known.read(window)
                    if given is not None:
                        values = np.where(given[1], given[0], values)
                    out.write(values.astype(np.float32), window=window)
                _describe(out, model, prompt, gsd)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)


def load_generator(name_or_path: str, hub: str | None = None, device: str = "cpu") -> Any:
    """A Text2Earth model from the hub (name, name@version or entry folder)."""
    import rsfm.hub
    import rsfm.models.text2earth  # noqa: F401  (registers the classes the config names)

    model = rsfm.hub.load(name_or_path, hub=hub, device=device)
    if not hasattr(model, "generate"):
        raise ValueError(f"{name_or_path} is a {type(model).__name__}, not a generative model")
    return model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsfm generate",
        description="Generate remote-sensing images from a caption at a requested GSD.",
    )
    parser.add_argument("prompt", help='caption, e.g. "a dense residential area next to a river"')
    parser.add_argument("--model", required=True, help="hub name, NAME@VERSION or entry folder")
    parser.add_argument("--hub", default=None, help=DEFAULT_HUB_HELP)
    parser.add_argument("--gsd", type=float, default=None, help="ground sampling distance (m)")
    parser.add_argument("--n", type=int, default=1, help="number of images")
    parser.add_argument("--steps", type=int, default=30, help="sampling steps")
    parser.add_argument("--scheduler", default="ddim", help="ddim, euler, euler_a, dpm, ...")
    parser.add_argument("--text-scale", type=float, default=5.0, help="text guidance scale")
    parser.add_argument("--gsd-scale", type=float, default=2.0, help="resolution guidance scale")
    parser.add_argument(
        "--guidance-schedule",
        default="constant",
        choices=GUIDANCE_SCHEDULES,
        help="both guidance scales over the steps: constant (default), linear and cosine "
        "(strong early, none at the end), linear_up (none early, full at the end)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--bounds",
        type=float,
        nargs=4,
        default=None,
        metavar=("WEST", "SOUTH", "EAST", "NORTH"),
        help="place the scene; larger than one image -> outpainted canvas",
    )
    parser.add_argument("--crs", default=None, help="CRS of --bounds, e.g. EPSG:32633")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="canvas size in pixels (outpainting when larger than the model)",
    )
    parser.add_argument("--image", type=Path, default=None, help="GeoTIFF to inpaint")
    parser.add_argument("--mask", type=Path, default=None, help="mask GeoTIFF (1 = regenerate)")
    parser.add_argument("--overlap", type=int, default=None, help="canvas tile overlap (px)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (stderr) over the sampling"
    )
    return parser


def _shape(array: np.ndarray, gsd: float | None) -> str:
    bands, height, width = array.shape
    at = f" at {gsd:g} m" if gsd else ""
    return f"{bands} bands, {height}x{width} px{at}"


def _tick(bar: Any, total: int) -> None:
    """One sampling step done (a scheduler may take more steps than ``--steps``: PNDM)."""
    if bar.total != total:
        bar.total = total
        bar.refresh()
    bar.update()


def _report(bar: Any, line: str) -> None:
    """Print a line above the progress bar (plain print without one)."""
    if bar is not None:
        bar.write(line)
    else:
        print(line, flush=True)


def _generate_one_canvas(
    model: Any,
    ns: argparse.Namespace,
    stem: Path,
    index: int,
    rows: list[int],
    common: dict[str, Any],
) -> list[Path]:
    """One canvas (tile by tile, a bar over the tiles), its preview when moderate; the paths."""
    import rasterio

    size = ns.size or (None, None)
    report = generate_canvas(
        model,
        ns.prompt,
        stem.with_suffix(".tif"),
        gsd=ns.gsd,
        height=size[0],
        width=size[1],
        bounds=ns.bounds,
        crs=ns.crs,
        image=ns.image,
        mask=ns.mask,
        overlap=ns.overlap,
        seed=ns.seed + 1000 * index,
        progress=not ns.no_progress,
        **common,
    )
    tif = report.outputs[0]
    print(f"{tif} (GeoTIFF, {report.height}x{report.width} px, {report.tiles} tiles)", flush=True)
    if report.height * report.width > PREVIEW_MAX_PIXELS:
        print(f"  no PNG preview: the canvas is larger than {PREVIEW_MAX_PIXELS:,} pixels")
        return [tif]
    with rasterio.open(tif) as dataset:
        png = write_png(stem.with_suffix(".png"), dataset.read(), rows)
    print(f"{png} (RGB preview)", flush=True)
    return [tif, png]


def _check_paths(ns: argparse.Namespace) -> None:
    """``--image`` / ``--mask`` readable rasters and ``--out`` a folder (or creatable)."""
    from rsfm.inference.engine import OutputPathError
    from rsfm.inference.input_checks import check_readable

    for given in (ns.image, ns.mask):
        if given is not None:
            check_readable(Path(given))
    if ns.out.exists() and not ns.out.is_dir():
        raise OutputPathError(ns.out, "is a file, not a folder: --out names the folder to write")


def _check_band_count(image: Path | None, channels: int, model: str) -> None:
    if image is None:
        return
    import rasterio

    from rsfm.data.errors import BandMismatchError

    with rasterio.open(image) as src:
        if src.count != channels:
            raise BandMismatchError(
                image, f"{src.count} bands, but {model} generates {channels}: give its bands"
            )


def generate_main(argv: list[str]) -> int:
    """Entry point of ``rsfm generate`` (see ``rsfm generate --help``)."""
    ns = _parser().parse_args(argv)
    if ns.bounds is not None and ns.gsd is None:
        raise SystemExit("rsfm generate: --bounds needs --gsd")
    import torch

    _check_paths(ns)  # before the model loads or anything is written
    model = load_generator(ns.model, ns.hub, ns.device)
    _check_band_count(ns.image, model.image_channels, ns.model)
    ns.out.mkdir(parents=True, exist_ok=True)
    tile = model.image_size
    canvas = ns.image is not None or ns.size is not None
    if ns.bounds is not None and ns.gsd:
        extent = (ns.bounds[2] - ns.bounds[0], ns.bounds[3] - ns.bounds[1])
        canvas = canvas or max(round(e / ns.gsd) for e in extent) != tile
    common = {
        "steps": ns.steps,
        "scheduler": ns.scheduler,
        "text_scale": ns.text_scale,
        "gsd_scale": ns.gsd_scale,
        "guidance_schedule": ns.guidance_schedule,
    }
    rows = rgb_rows(model)
    written: list[Path] = []
    bar = None
    if not canvas and not ns.no_progress:  # canvases show a bar over their tiles
        from tqdm.auto import tqdm

        bar = tqdm(total=ns.n * ns.steps, desc="rsfm generate: sampling", unit="step")
    try:
        for index in range(ns.n):
            stem = ns.out / f"generated_{index:03d}"
            if bar is not None:
                bar.set_postfix_str(f"image {index + 1}/{ns.n}")
            if canvas:
                written += _generate_one_canvas(model, ns, stem, index, rows, common)
                continue
            generator = torch.Generator(device="cpu").manual_seed(ns.seed + index)
            image = model.generate(
                [ns.prompt],
                [ns.gsd],
                generator=generator,
                progress=None if bar is None else lambda step, steps: _tick(bar, ns.n * steps),
                **common,
            )[0]
            array = image.float().cpu().numpy()
            tif = write_geotiff(
                stem.with_suffix(".tif"),
                array,
                model,
                ns.prompt,
                ns.gsd or math.nan,
                ns.bounds,
                ns.crs,
            )
            png = write_png(stem.with_suffix(".png"), array, rows)
            _report(bar, f"{tif} (GeoTIFF, {_shape(array, ns.gsd)})")
            _report(bar, f"{png} (RGB preview)")
            written += [tif, png]
    finally:
        if bar is not None:
            bar.close()
    tifs = sum(p.suffix == ".tif" for p in written)
    pngs = len(written) - tifs
    print(
        f"rsfm generate: wrote {tifs} GeoTIFF{'s' * (tifs != 1)} and {pngs} PNG "
        f"preview{'s' * (pngs != 1)} to {ns.out}/"
    )
    return 0
