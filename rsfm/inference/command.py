"""``rsfm tile MODEL INPUT.tif OUTPUT.tif``: a hub model applied to a GeoTIFF of any size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads once the command runs, so `rsfm tile --help` stays fast
    import numpy as np
    import torch
    from torch import nn


def make_predict_fn(model: nn.Module, wavelengths: np.ndarray, output: str):  # noqa: ANN201
    """``[B,C,T,T] -> [B,K,T,T]`` for a fine-tuned dense model or an encoder (embeddings)."""
    import torch
    import torch.nn.functional as F

    waves = torch.as_tensor(wavelengths)
    from rsfm.models.colearning import CoLearningModel, window_predict_fn

    if isinstance(model, CoLearningModel):  # window-level classes from the input's modality
        return torch.no_grad()(window_predict_fn(model, waves, probabilities=output != "values"))

    @torch.no_grad()
    def predict(image: torch.Tensor) -> torch.Tensor:
        w = waves.to(image.device)
        if hasattr(model, "head") and getattr(model, "dense", False):
            out = model(image, w)
            if output not in ("classes", "probabilities"):
                return out
            if out.shape[1] == 1:  # a binary logit: two-class probabilities [1 - p, p]
                positive = out.sigmoid()
                return torch.cat([1 - positive, positive], dim=1)
            return out.softmax(dim=1)
        encoder = getattr(model, "encoder", model)
        features = encoder.forward_spatial(image, w)
        return F.interpolate(features, size=image.shape[-2:], mode="bilinear", align_corners=False)

    return predict


def default_output(model: nn.Module, card: dict[str, Any]) -> str:
    """``classes`` for dense classifiers, ``values`` for regressors, else ``embeddings``."""
    task = str(card.get("rsfm", {}).get("task", ""))
    from rsfm.models.colearning import CoLearningModel

    if isinstance(model, CoLearningModel):  # window-level classes
        return "values" if "regression" in task else "classes"
    if hasattr(model, "head") and getattr(model, "dense", False):
        single = getattr(model, "num_outputs", 2) == 1
        if "regression" in task or (single and "segmentation" not in task):
            return "values"
        return "classes"  # a one-channel segmenter outputs a binary logit (make_predict_fn)
    return "embeddings"


def categorical_colours(count: int) -> list[tuple[float, float, float]]:
    """``count`` distinct colours (matplotlib's tab10/tab20 palettes)."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [tuple(palette(i % palette.N)[:3]) for i in range(count)]


def tile_main(argv: list[str]) -> int:
    """Parse ``rsfm tile`` arguments and run the tiled engine."""
    parser = argparse.ArgumentParser(
        prog="rsfm tile",
        description="Apply a hub model to a GeoTIFF of any size in overlapping, blended tiles.",
    )
    parser.add_argument("model", help="hub name[@version] or entry folder")
    parser.add_argument("input", type=Path, help="input GeoTIFF")
    parser.add_argument("output", type=Path, help="output GeoTIFF (tiled, compressed)")
    parser.add_argument("--hub", default=None, help="hub directory / URL (default: checkpoints/)")
    parser.add_argument("--sensor", default=None, help="registered sensor of the input's bands")
    parser.add_argument("--segmenter", default=None, help="segmenter assessed by an SQA model")
    parser.add_argument(
        "--output",
        dest="kind",
        default="auto",
        choices=["auto", "classes", "probabilities", "values", "embeddings"],
    )
    parser.add_argument("--tile-size", type=int, default=None, help="default: the card's")
    parser.add_argument("--overlap", type=int, default=None, help="default: tile size / 4")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tta", action="store_true", help="average horizontal/vertical flips")
    parser.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    parser.add_argument("--allow-missing-bands", action="store_true")
    parser.add_argument("--no-resume", action="store_true", help="ignore a previous partial run")
    parser.add_argument("--plot", type=Path, default=None, help="also write a side-by-side PNG")
    args = parser.parse_args(argv)

    import torch

    from rsfm.hub import load
    from rsfm.inference.bands import input_sensor, select_bands, true_colour_bands
    from rsfm.inference.engine import tile_raster

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    model = load(args.model, hub=args.hub, device=args.device)
    from rsfm.models.sqa import SQAModel

    if isinstance(model, SQAModel):  # a quality map: predicted accuracy of --segmenter per tile
        from rsfm.inference.assess import tile_quality_main

        return tile_quality_main(model, args)
    card: dict[str, Any] = getattr(model, "rsfm_card", {}) or {}
    sensor = input_sensor(args.input, args.sensor, card.get("rsfm", {}).get("sensors", {}))
    bands, wavelengths, stats = select_bands(args.input, sensor, card, args.allow_missing_bands)
    kind = default_output(model, card) if args.kind == "auto" else args.kind
    patch = int(card.get("rsfm", {}).get("patch_size") or 16)
    tile = args.tile_size or max(4 * patch, 64)
    if tile % patch:
        parser.error(f"--tile-size must be a multiple of the model's patch size {patch}")
    overlap = args.overlap if args.overlap is not None else tile // 4
    normalize = None
    if stats is not None:

        def normalize(image: torch.Tensor) -> torch.Tensor:
            return stats.normalize(image, torch.as_tensor(wavelengths))

    tile_raster(
        make_predict_fn(model, wavelengths, kind),
        args.input,
        args.output,
        bands=bands,
        tile_size=tile,
        overlap=overlap,
        batch_size=args.batch_size,
        output=kind,
        tta_flips=args.tta,
        normalize=normalize,
        num_classes=getattr(model, "num_outputs", None) if kind != "embeddings" else None,
        resume=not args.no_resume,
        device=args.device,
    )
    print(args.output)
    if args.plot is not None:
        from rsfm.inference.plot import render_side_by_side

        render_side_by_side(
            args.input,
            args.output,
            args.plot,
            rgb_bands=true_colour_bands(bands, wavelengths),
            class_colors=categorical_colours(model.num_outputs) if kind == "classes" else None,
        )
        print(args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(tile_main(sys.argv[1:]))
