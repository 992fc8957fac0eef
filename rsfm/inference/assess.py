"""``rsfm assess``: predicted segmentation accuracy, best-segmenter ranking, quality maps.

``rsfm assess IMAGE.tif --segmenter NAME --model SQA_NAME`` prints the SQA model's predicted
accuracy of segmenter NAME on the image (the valid-pixel-weighted mean over full tiles of the
model's input size); ``--rank a b c`` scores several segmenters and names the best;
``--quality-map OUT.tif`` also writes the per-tile predicted accuracy as a COG through the tiled
engine (:func:`quality_map`: a constant value per tile, no blending).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rsfm.data.errors import BandMismatchError
from rsfm.hub.backends import DEFAULT_HUB_HELP

if TYPE_CHECKING:  # torch, rasterio and the SQA model load once a command runs (fast --help)
    import torch
    from torch import nn

    from rsfm.band_stats import BandStats
    from rsfm.models.sqa import Segmenter, SQAModel

DEFAULT_TILE = 32


def _card(model: nn.Module) -> Any:
    """The typed card (:class:`rsfm.hub.card.ModelCard`) of a hub model, or None."""
    return getattr(model, "rsfm_card", None)


def _input_size(model: nn.Module) -> int:
    card = _card(model)
    return int((card.input_size if card is not None else None) or DEFAULT_TILE)


def stats_covering(model: nn.Module, wavelengths: np.ndarray) -> BandStats | None:
    """The first normalisation statistics of a model's card that cover every wavelength."""
    card = _card(model)
    for stats in (card.normalization if card is not None else {}).values():
        try:
            stats.rows_for(wavelengths)
        except ValueError:
            continue
        return stats
    return None


def make_quality_fn(
    sqa: SQAModel,
    segmenter: Segmenter,
    wavelengths: np.ndarray,
    sqa_stats: BandStats | None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``predict_fn(raw [B, C, h, w]) -> [B, 1, h, w]``: each tile filled with its score.

    The segmenter sees the tile normalised with its own statistics, the SQA semantic branch
    with the SQA model's (raw values when either has none).
    """
    import torch

    from rsfm.models.sqa import segmenter_features

    waves = torch.as_tensor(np.asarray(wavelengths, dtype=np.float32))

    @torch.no_grad()
    def predict(image: torch.Tensor) -> torch.Tensor:
        w = waves.to(image.device)
        seg_in = segmenter.normalization.normalize(image, w) if segmenter.normalization else image
        _, features = segmenter_features(segmenter.model, seg_in, w)
        sem_in = sqa_stats.normalize(image, w) if sqa_stats is not None else image
        score = sqa(sqa.segmenter_vector(features), sem_in, w)  # [B]
        return score[:, None, None, None].expand(-1, 1, *image.shape[-2:]).contiguous()

    return predict


def _tiles(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of full tiles covering the image (the last ones shifted inward)."""

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        out = list(range(0, size - tile + 1, tile))
        return out if out[-1] == size - tile else [*out, size - tile]

    return [(r, c) for r in starts(height) for c in starts(width)]


def assess_image(
    sqa: SQAModel,
    segmenters: list[Segmenter],
    path: Path,
    bands: list[int],
    wavelengths: np.ndarray,
    tile_size: int,
    sqa_stats: BandStats | None,
    patch_size: int = 8,
) -> dict[str, float]:
    """Predicted accuracy of each segmenter on an image (valid-pixel-weighted tile mean).

    Raises:
        BandMismatchError: Naming the file when it holds no valid pixel.
        NonFiniteError: Naming the file and the window of a NaN/inf that is not nodata (as
            the tiled engine, training and ``rsfm data stats`` refuse them).
        UnreadableRasterError: Naming the file when a block cannot be decoded.
    """
    import rasterio
    import torch
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    from rsfm.data.errors import NonFiniteError, UnreadableRasterError

    with rasterio.open(path) as src:
        height, width = src.height, src.width
        tile = min(tile_size, (min(height, width) // patch_size) * patch_size)
        if tile < patch_size:
            raise BandMismatchError(
                path, f"{height}x{width} px is smaller than a {patch_size} px patch"
            )
        batches, weights = [], []
        for row, col in _tiles(height, width, tile):
            window = Window(col, row, tile, tile)
            where = f"window rows {row}:{row + tile}, cols {col}:{col + tile}"
            try:
                data = src.read(bands, window=window, masked=True).astype(np.float32)
            except RasterioError as err:
                raise UnreadableRasterError(
                    path, f"cannot decode {where} (truncated or corrupt file): {err}"
                ) from None
            bad = int((~np.isfinite(data.filled(0))).sum())
            if bad:
                raise NonFiniteError(
                    path, f"{where} holds {bad} NaN/inf values that are not the declared "
                    "nodata; set the file's nodata or clean it",
                )  # fmt: skip
            valid = ~np.ma.getmaskarray(data).any(axis=0)
            if valid.any():
                batches.append(np.where(valid, data.filled(0.0), 0.0))
                weights.append(float(valid.mean()))
    if not batches:
        raise BandMismatchError(path, "holds no valid pixel to assess")
    image = torch.from_numpy(np.stack(batches))
    weight = torch.tensor(weights)
    scores = {}
    for segmenter in segmenters:
        predict = make_quality_fn(sqa, segmenter, wavelengths, sqa_stats)
        per_tile = predict(image)[:, 0, 0, 0]
        scores[segmenter.id] = float((per_tile * weight).sum() / weight.sum())
    return scores


def quality_map(
    sqa: SQAModel,
    segmenter: Segmenter,
    input_path: str | Path,
    output_path: str | Path,
    *,
    bands: list[int] | None = None,
    wavelengths: np.ndarray,
    sqa_stats: BandStats | None = None,
    tile_size: int = DEFAULT_TILE,
    batch_size: int = 8,
    progress: bool = False,
    device: str = "cpu",
) -> Any:
    """Write the per-tile predicted accuracy of ``segmenter`` as a one-band float32 COG.

    Tiles do not overlap and are not blended: every output pixel carries the score of the tile
    it lies in (nodata where the input has none).

    Returns:
        The engine's :class:`~rsfm.inference.engine.TileReport`.
    """
    from rsfm.inference.engine import tile_raster

    return tile_raster(
        make_quality_fn(sqa, segmenter, wavelengths, sqa_stats),
        input_path,
        output_path,
        bands=bands,
        tile_size=tile_size,
        overlap=0,
        batch_size=batch_size,
        output="values",
        blend="none",
        band_names=["predicted_accuracy"],
        progress=progress,
        resume=False,
        device=device,
    )


def _task(model: nn.Module) -> str | None:
    """The canonical task of a hub model's card (None without a card)."""
    from rsfm.hub.card import canonical_task

    card = _card(model)
    return canonical_task(card.task) if card is not None else None


def check_segmenters(segmenters: list[Segmenter], flag: str = "--segmenter") -> None:
    """Refuse, before any pixel is read, a model whose card says it is not a segmenter.

    The SQA model scores a segmenter from its class predictions and features: an encoder, an
    SQA model or a classifier has none to give. A model with a dense head (``feature_maps``
    and ``dense``, or ``segment_with_features``) is a segmenter whatever its card says;
    modules without a card (the Python API) are taken as they are.

    Raises:
        ValueError: Naming the model, what its card says it is and what is needed.
    """
    for segmenter in segmenters:
        model, task = segmenter.model, _task(segmenter.model)
        dense = hasattr(model, "segment_with_features") or (
            hasattr(model, "feature_maps") and bool(getattr(model, "dense", False))
        )
        if task is not None and task != "segmentation" and not dense:
            raise ValueError(
                f"{flag} {segmenter.id} is a {task} model ({type(segmenter.model).__name__}), "
                "not a segmenter: give segmentation models (card task 'segmentation'; "
                "`rsfm hub show NAME` shows a model's task)"
            )


def _load(args: argparse.Namespace) -> tuple[SQAModel, list[Segmenter]]:
    from rsfm.hub import load
    from rsfm.models.sqa import SQAModel, resolve_segmenters

    sqa = load(args.model, hub=args.hub, device=args.device)
    if not isinstance(sqa, SQAModel):
        task = _task(sqa)
        raise ValueError(
            f"--model {args.model} is {f'a {task} model' if task else 'not an SQA model'} "
            f"({type(sqa).__name__}), not a segmentation-quality-assessment (SQA) model; "
            "--segmenter / --rank name the segmenters it assesses"
        )
    names = list(args.rank or []) or [args.segmenter]
    segmenters = resolve_segmenters(names, hub=args.hub)
    check_segmenters(segmenters, "--rank" if args.rank else "--segmenter")
    return sqa, segmenters


def assess_main(argv: list[str]) -> int:
    """Parse ``rsfm assess`` arguments; print predicted accuracies (and write a quality map)."""
    parser = argparse.ArgumentParser(
        prog="rsfm assess",
        description="Predict how accurately segmenters will segment an image (RS-SQA).",
    )
    parser.add_argument("image", type=Path, help="input GeoTIFF")
    parser.add_argument("--model", required=True, help="SQA model: hub name[@version] or folder")
    parser.add_argument("--segmenter", default=None, help="segmenter to assess (hub name)")
    parser.add_argument("--rank", nargs="+", default=None, help="segmenters to rank")
    parser.add_argument("--hub", default=None, help=DEFAULT_HUB_HELP)
    parser.add_argument("--sensor", default=None, help="registered sensor of the image's bands")
    parser.add_argument("--tile-size", type=int, default=None, help="default: the card's")
    parser.add_argument("--quality-map", type=Path, default=None, help="write a per-tile COG")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allow-missing-bands", action="store_true")
    args = parser.parse_args(argv)
    if (args.segmenter is None) == (args.rank is None):
        parser.error("give exactly one of --segmenter NAME or --rank NAME [NAME ...]")

    from rsfm.inference.bands import input_sensor, select_bands
    from rsfm.inference.engine import check_output_path
    from rsfm.inference.input_checks import check_readable

    if args.quality_map is not None:  # before a model loads or a score is printed
        check_output_path(args.image, args.quality_map)
    check_readable(args.image)
    sqa, segmenters = _load(args)
    card = _card(segmenters[0].model)
    sensor = input_sensor(args.image, args.sensor, card)
    bands, wavelengths, _ = select_bands(args.image, sensor, card, args.allow_missing_bands)
    tile = args.tile_size or _input_size(sqa)
    patch = int(getattr(getattr(sqa.semantic, "encoder", None), "patch_size", 8) or 8)
    sqa_stats = stats_covering(sqa, wavelengths)
    scores = assess_image(
        sqa, segmenters, args.image, bands, wavelengths, tile, sqa_stats, patch_size=patch
    )
    best = max(scores, key=scores.get)
    if args.json:
        print(json.dumps({"image": str(args.image), "scores": scores, "best": best}))
    elif args.rank:
        for rank, (name, value) in enumerate(sorted(scores.items(), key=lambda kv: -kv[1]), 1):
            print(f"{rank}. {name}: predicted accuracy {value:.3f}")
        print(f"recommended segmenter: {best}")
    else:
        print(f"{args.image}: predicted accuracy of {best}: {scores[best]:.3f}")
    if args.quality_map is not None:
        chosen = next(s for s in segmenters if s.id == best)
        quality_map(
            sqa, chosen, args.image, args.quality_map, bands=bands, wavelengths=wavelengths,
            sqa_stats=sqa_stats, tile_size=tile, device=args.device,
        )  # fmt: skip
        print(args.quality_map)
    return 0


def tile_quality_main(model: SQAModel, args: argparse.Namespace) -> int:
    """``rsfm tile SQA_MODEL IN OUT --segmenter NAME``: the quality map of ``rsfm tile``.

    The tile command's hook for cards whose default output is ``quality``
    (:data:`rsfm.inference.command.TILE_HOOKS`).
    """
    if not getattr(args, "segmenter", None):
        raise SystemExit("rsfm tile: an SQA model needs --segmenter NAME")
    from rsfm.inference.bands import input_sensor, select_bands
    from rsfm.models.sqa import resolve_segmenters

    (segmenter,) = resolve_segmenters([args.segmenter], hub=args.hub)
    check_segmenters([segmenter])
    card = _card(segmenter.model)
    sensor = input_sensor(args.input, args.sensor, card)
    bands, wavelengths, _ = select_bands(args.input, sensor, card, args.allow_missing_bands)
    quality_map(
        model, segmenter, args.input, args.output, bands=bands, wavelengths=wavelengths,
        sqa_stats=stats_covering(model, wavelengths),
        tile_size=args.tile_size or _input_size(model),
        batch_size=args.batch_size, device=args.device,
    )  # fmt: skip
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(assess_main(sys.argv[1:]))
