"""Quick-look PNG (matplotlib Agg): the input's RGB beside the prediction, both read decimated.

Both rasters are read with rasterio's ``out_shape`` (GDAL uses the file's overviews when it has
them, else it decimates block by block), so a full-resolution array is never held in memory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling

PathLike = str | os.PathLike[str]
LEGEND_KEY = "rsfm_legend"  # PNG text chunk holding the legend labels (a JSON list)


def legend_labels(
    count: int, class_names: Sequence[str] | None = None, tags: dict[str, str] | None = None
) -> list[str]:
    """Legend labels of ``count`` classes: ``class_names``, else the prediction's
    ``CLASS_NAMES`` tag (JSON list), else its ``rsfm_class_names`` tag, padded with
    ``class <k>``."""
    tags = tags or {}
    names = list(class_names or [])
    if not names and tags.get("CLASS_NAMES"):
        names = [str(n) for n in json.loads(tags["CLASS_NAMES"])]
    if not names and tags.get("rsfm_class_names"):
        names = tags["rsfm_class_names"].split(",")
    return [*names[:count], *(f"class {k}" for k in range(len(names), count))]


def legend_of(png_path: PathLike) -> list[str] | None:
    """The legend labels :func:`render_side_by_side` recorded in a PNG (None: no legend)."""
    from PIL import Image

    with Image.open(png_path) as image:
        text = image.info.get(LEGEND_KEY)
    return json.loads(text) if text else None


def _decimated_shape(height: int, width: int, max_size: int) -> tuple[int, int]:
    factor = max(1, math.ceil(max(height, width) / max_size))
    return math.ceil(height / factor), math.ceil(width / factor)


def percentile_stretch(
    image: np.ma.MaskedArray, low: float = 2.0, high: float = 98.0
) -> np.ndarray:
    """Per-band percentile stretch of a masked ``[C, H, W]`` array to float ``[H, W, C]`` in 0..1.

    Masked (nodata) pixels become 0 (black).
    """
    out = np.zeros(image.shape[1:] + (image.shape[0],), dtype=np.float32)
    for index, band in enumerate(image):
        values = band.compressed()
        if values.size == 0:
            continue
        lo, hi = np.percentile(values, [low, high])
        scaled = (band.filled(lo).astype(np.float32) - lo) / max(float(hi - lo), 1e-12)
        out[..., index] = np.clip(scaled, 0.0, 1.0) * ~np.ma.getmaskarray(band)
    return out


def _read_rgb(path: PathLike, bands: Sequence[int], max_size: int) -> np.ndarray:
    with rasterio.open(path) as src:
        bands = [b for b in bands if 1 <= b <= src.count] or [1]
        shape = _decimated_shape(src.height, src.width, max_size)
        image = src.read(bands, out_shape=(len(bands), *shape), masked=True,
                         resampling=Resampling.average)  # fmt: skip
    rgb = percentile_stretch(image)
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb[..., :3]


def render_side_by_side(
    input_path: PathLike,
    prediction_path: PathLike,
    png_path: PathLike,
    rgb_bands: Sequence[int] = (1, 2, 3),
    class_colors: Sequence[Sequence[float]] | None = None,
    max_size: int = 1024,
    class_names: Sequence[str] | None = None,
    prediction_band: int = 1,
    dpi: int = 100,
) -> Path:
    """Save a PNG with the input (RGB, percentile-stretched) left and the prediction right.

    Args:
        input_path: Input GeoTIFF.
        prediction_path: Prediction GeoTIFF (same footprint, any resolution).
        png_path: Where to write the PNG.
        rgb_bands: 1-based input bands shown as red, green, blue (e.g. ``(4, 3, 2)`` for
            Sentinel-2); a single band is shown in grey.
        class_colors: One RGB colour per class (0..255 or 0..1); the prediction band is then
            read as class indexes (nearest resampling) and drawn with a legend. Without it the
            band is drawn with viridis and a colour bar.
        max_size: Longest side, in pixels, of each decimated panel.
        class_names: Legend labels (default: the prediction's class-name tags, else
            ``class <k>``; see :func:`legend_labels`). They are also stored in the PNG's
            ``rsfm_legend`` text chunk (:func:`legend_of` reads them back).
        prediction_band: 1-based prediction band to show.
        dpi: PNG resolution.

    Returns:
        ``png_path``.
    """
    rgb = _read_rgb(input_path, rgb_bands, max_size)
    categorical = class_colors is not None
    with rasterio.open(prediction_path) as src:
        shape = _decimated_shape(src.height, src.width, max_size)
        resampling = Resampling.nearest if categorical else Resampling.average
        prediction = src.read(prediction_band, out_shape=shape, masked=True, resampling=resampling)
        tags = src.tags()
        title = src.descriptions[prediction_band - 1] or f"band {prediction_band}"
    # Figure + Agg canvas, not pyplot: no global backend or figure state in the caller's process.
    figure = Figure(figsize=(12, 6), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    left.imshow(rgb, interpolation="nearest")
    left.set_title(f"{Path(input_path).name} (bands {tuple(rgb_bands)})")
    metadata = {}
    if categorical:
        colors = np.asarray(class_colors, dtype=np.float32)
        colors = colors / 255.0 if colors.max() > 1.0 else colors
        cmap = ListedColormap(colors).with_extremes(bad=(1, 1, 1, 0))  # nodata transparent
        norm = BoundaryNorm(np.arange(len(colors) + 1) - 0.5, len(colors))
        right.imshow(prediction, cmap=cmap, norm=norm, interpolation="nearest")
        names = legend_labels(len(colors), class_names, tags)
        metadata[LEGEND_KEY] = json.dumps(names)
        handles = [Patch(color=c, label=n) for c, n in zip(colors, names, strict=True)]
        right.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    else:
        shown = right.imshow(prediction, cmap="viridis", interpolation="nearest")
        figure.colorbar(shown, ax=right, shrink=0.8, label=title)
    right.set_title(f"{Path(prediction_path).name} ({title})")
    for axis in (left, right):
        axis.set_axis_off()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path, dpi=dpi, metadata=metadata)
    return png_path
