"""``rsfm tile MODEL INPUT.tif OUTPUT.tif``: a hub model applied to a GeoTIFF of any size.

``rsfm tile MODEL INPUT... --out-dir DIR`` tiles many scenes (:mod:`rsfm.inference.scenes`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsfm.data.errors import RasterError
from rsfm.hub.backends import DEFAULT_HUB_HELP

if TYPE_CHECKING:  # torch loads once the command runs, so `rsfm tile --help` stays fast
    import numpy as np
    import torch
    from torch import nn

    from rsfm.inference.engine import TileReport

# Output kinds ``rsfm tile`` writes itself; a card whose default output is a key of
# TILE_HOOKS is handed to that function (``module:function``, called with the model and the
# parsed arguments), e.g. the per-tile quality map of an SQA model.
TILE_OUTPUTS = ("classes", "probabilities", "values", "embeddings")
TILE_HOOKS = {"quality": "rsfm.inference.assess:tile_quality_main"}
_OTHER_COMMANDS = {
    "image": "rsfm super-resolve (super-resolution) or rsfm generate (text-to-image)"
}


def make_predict_fn(  # noqa: ANN201
    model: nn.Module, wavelengths: np.ndarray, output: str, *, multilabel: bool = False
):
    """``[B,C,T,T] -> [B,K,T,T]`` for a fine-tuned model or an encoder (embeddings).

    A family that tiles differently provides ``model.tile_predict_fn(wavelengths, output)``
    (e.g. co-learning's window-level classes from the input's modality), which is used as is.
    A dense head predicts per pixel; a pooled (window-level) head's ``[B, K]`` output is spread
    over the tile, so blended overlapping tiles give a smooth map.

    Args:
        model: A hub model.
        wavelengths: Centre wavelengths of the input bands (nm).
        output: ``classes``, ``probabilities``, ``values`` or ``embeddings``.
        multilabel: Independent sigmoid per class instead of a softmax over classes.
    """
    import torch
    import torch.nn.functional as F

    waves = torch.as_tensor(wavelengths)
    adapter = getattr(model, "tile_predict_fn", None)
    if callable(adapter):
        return torch.no_grad()(adapter(waves, output))
    has_head = hasattr(model, "head")
    dense = has_head and getattr(model, "dense", False)

    @torch.no_grad()
    def predict(image: torch.Tensor) -> torch.Tensor:
        w = waves.to(image.device)
        if dense or (has_head and output != "embeddings"):
            out = model(image, w)
            if out.ndim == 2:  # window-level outputs [B, K] cover the whole tile
                out = out[:, :, None, None].expand(-1, -1, *image.shape[-2:])
            if output not in ("classes", "probabilities"):
                return out
            if out.shape[1] == 1 or multilabel:  # binary logit(s): sigmoid
                positive = out.sigmoid()
                return torch.cat([1 - positive, positive], dim=1) if out.shape[1] == 1 else positive
            return out.softmax(dim=1)
        encoder = getattr(model, "encoder", model)
        features = encoder.forward_spatial(image, w)
        return F.interpolate(features, size=image.shape[-2:], mode="bilinear", align_corners=False)

    return predict


def default_output(model: nn.Module, card: Any) -> str:
    """The output ``rsfm tile`` writes by default: the card's (set from the task when pushed,
    e.g. ``classes`` for segmentation); for cards without one, ``classes`` for dense
    classifiers and window-level adapters, ``values`` for regressors, else ``embeddings``."""
    if card is not None and card.output:
        return card.output
    task = str(card.task if card is not None else "")
    if callable(getattr(model, "tile_predict_fn", None)):
        return "values" if "regression" in task else "classes"
    if hasattr(model, "head") and getattr(model, "dense", False):
        single = getattr(model, "num_outputs", 2) == 1
        if "regression" in task or (single and "segmentation" not in task):
            return "values"
        return "classes"  # a one-channel segmenter outputs a binary logit (make_predict_fn)
    return "embeddings"


def output_channels(model: nn.Module, card: Any, kind: str) -> int | None:
    """Channels of a class output (a single binary logit gives two), None for other kinds."""
    if kind not in ("classes", "probabilities"):
        return None
    count = getattr(model, "num_outputs", None)
    if count is None and card is not None and card.class_names:
        count = len(card.class_names)
    if count == 1 and not (card is not None and card.task == "multilabel"):
        return 2
    return int(count) if count else None


def class_names_for(card: Any, channels: int | None) -> list[str] | None:
    """The card's class names when they name every output channel, else None."""
    names = list(card.class_names or []) if card is not None else []
    return names if names and channels == len(names) else None


def _run_hook(spec: str, model: nn.Module, args: Any) -> int:
    from importlib import import_module

    module, _, function = spec.partition(":")
    return int(getattr(import_module(module), function)(model, args))


def categorical_colours(count: int) -> list[tuple[float, float, float]]:
    """``count`` distinct colours (matplotlib's tab10/tab20 palettes)."""
    from matplotlib import colormaps

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [tuple(palette(i % palette.N)[:3]) for i in range(count)]


def resume_key(
    model: Any, card: Any, wavelengths: Sequence[float], stats: Any, multilabel: bool
) -> str:
    """What identifies the model side of a tiled run in its resume journal: the entry
    (``name@version``), the sha256 of its weights and a digest of the normalisation and
    wavelengths fed (a different one never continues another's partial output)."""
    feed = {
        "wavelengths": [float(w) for w in wavelengths],
        "stats": None if stats is None else {k: list(map(float, getattr(stats, k))) for k in
                                             ("wavelengths", "low", "high", "mean", "std")},
        "multilabel": multilabel,
    }  # fmt: skip
    feed_digest = hashlib.sha256(json.dumps(feed, sort_keys=True).encode()).hexdigest()
    ref = f"{card.name}@{card.version}" if card is not None else type(model).__name__
    weights = getattr(model, "rsfm_weights_sha256", None) or "unknown"
    return f"{ref} (weights sha256 {weights}, inputs fed {feed_digest[:16]})"


class TileRefusedError(ValueError):
    """A run refused once the model is known (a bad option for it, or ``--strict``): exit 2.

    Attributes:
        label: ``error`` or ``refused (--strict)``, the word after ``rsfm tile:``.
    """

    def __init__(self, message: str, label: str = "error") -> None:
        self.label = label
        super().__init__(message)


class EmptyOutputError(RasterError):
    """The output is (almost) all nodata although the input is mostly valid."""


def add_tile_options(parser: argparse.ArgumentParser) -> None:
    """The options a scene is tiled with, shared by ``rsfm tile`` for one and many scenes."""
    parser.add_argument("--hub", default=None, help=DEFAULT_HUB_HELP)
    parser.add_argument(
        "--sensor",
        default=None,
        help="registered sensor of the input's bands (`rsfm data sensors`; e.g. pan)",
    )
    parser.add_argument(
        "--bands",
        default=None,
        help="input bands to use: 1-based indexes, ranges or descriptions (e.g. 1,2 or VV,VH)",
    )
    parser.add_argument(
        "--wavelengths",
        default=None,
        help="the bands' centres or passbands in nm, one per band (e.g. 450-800 for a pan band)",
    )
    parser.add_argument(
        "--output",
        dest="kind",
        default="auto",
        choices=["auto", "classes", "probabilities", "values", "embeddings"],
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="default: the card's training input size, at least 4 patches and 64 px",
    )
    parser.add_argument("--overlap", type=int, default=None, help="default: tile size / 4")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tta", action="store_true", help="average horizontal/vertical flips")
    parser.add_argument(
        "--allow-missing-bands",
        action="store_true",
        help="no notice when the input lacks bands the model was trained with",
    )
    parser.add_argument("--no-resume", action="store_true", help="ignore a previous partial run")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse an input whose values or sensor are far from the model's training "
        "(default: warn; rules in docs/tiled_inference.md)",
    )


def output_kind(model: nn.Module, card: Any, requested: str, model_name: str) -> str:
    """The output kind a run writes (``--output``, else the card's default).

    Raises:
        TileRefusedError: If the model's output is not one ``rsfm tile`` writes (e.g. images).
    """
    kind = default_output(model, card) if requested == "auto" else requested
    if kind not in TILE_OUTPUTS:
        raise TileRefusedError(
            f"{model_name} is a {card.task if card else '?'} model (output {kind!r}); use "
            f"{_OTHER_COMMANDS.get(kind, 'the command of its family')}"
        )
    return kind


def tile_scene(
    model: nn.Module,
    args: argparse.Namespace,
    input_path: Path,
    output_path: Path,
    kind: str,
    *,
    progress: bool = True,
    notice: Callable[[str], None] | None = None,
) -> SceneRun:
    """Tile one scene with a loaded model as ``rsfm tile`` does (bands matched, input checked,
    resumable, an all-nodata output refused); ``args`` holds the options of
    :func:`add_tile_options` and ``device``.

    Raises:
        TileRefusedError: A tile size off the patch grid, or a notice under ``--strict``.
        EmptyOutputError: The output is nodata although the input is valid (output removed).
        rsfm.data.errors.RasterError: A bad input (unreadable, no CRS, bands, all nodata).
    """
    import torch

    from rsfm.inference.bands import input_sensor, match_bands, parse_band_subset
    from rsfm.inference.engine import TiledPredictor, TileOptions
    from rsfm.inference.input_checks import EMPTY_OUTPUT_SHARE, input_notices, nodata_share

    say = notice or (lambda message: print(f"rsfm tile: {message}", file=sys.stderr))
    card = getattr(model, "rsfm_card", None)  # a typed rsfm.hub.card.ModelCard
    subset = parse_band_subset(input_path, args.bands)
    sensor = input_sensor(input_path, args.sensor, card, subset, args.wavelengths)
    selection = match_bands(
        input_path, sensor, card, args.allow_missing_bands, model=model, subset=subset
    )
    bands, wavelengths, stats = selection.bands, selection.wavelengths, selection.stats
    notices = [
        *selection.notices,
        *input_notices(input_path, sensor, card, bands, wavelengths, stats),
    ]
    for message in notices:
        if args.strict:
            raise TileRefusedError(message, label="refused (--strict)")
        say(f"warning: {message}")
    patch = int((card.patch_size if card is not None else None) or 16)
    trained = int((card.input_size if card is not None else None) or 0)
    trained = -(-trained // patch) * patch  # the training input size, on the patch grid
    tile = args.tile_size or max(4 * patch, 64, trained)
    if tile % patch:
        raise TileRefusedError(
            f"--tile-size {tile} must be a multiple of the model's patch size {patch} "
            f"(e.g. {max(patch, tile // patch * patch)})"
        )
    overlap = args.overlap if args.overlap is not None else tile // 4
    normalize = None
    if stats is not None:

        def normalize(image: torch.Tensor) -> torch.Tensor:
            return stats.normalize(image, torch.as_tensor(wavelengths))

    channels = output_channels(model, card, kind)
    names = class_names_for(card, channels)
    multilabel = card is not None and card.task == "multilabel"
    key = resume_key(model, card, wavelengths, stats, multilabel)
    options = TileOptions(
        tile_size=tile, overlap=overlap, batch_size=args.batch_size, output=kind,
        tta_flips=args.tta, num_classes=channels, band_names=tuple(names) if names else None,
        resume=not args.no_resume, resume_key=key, progress=progress, device=args.device,
    )  # fmt: skip
    predict_fn = make_predict_fn(model, wavelengths, kind, multilabel=multilabel)
    report = TiledPredictor(predict_fn, options, normalize, say).run(input_path, output_path, bands)
    lost = nodata_share(output_path)
    if lost >= EMPTY_OUTPUT_SHARE and nodata_share(input_path, bands) < EMPTY_OUTPUT_SHARE:
        output_path.unlink(missing_ok=True)
        raise EmptyOutputError(
            output_path,
            f"{lost:.1%} of the output is nodata although {input_path} is mostly valid "
            "(a band fed as nodata everywhere?); output removed",
        )
    return SceneRun(report, bands, wavelengths, channels, names, key, tile, overlap)


@dataclass
class SceneRun:
    """What :func:`tile_scene` did: the engine's report and the choices made for the scene."""

    report: TileReport
    bands: list[int]
    wavelengths: np.ndarray
    channels: int | None
    class_names: list[str] | None
    resume_key: str
    tile_size: int
    overlap: int


def tile_main(argv: list[str]) -> int:
    """Parse ``rsfm tile`` arguments and run the tiled engine (many scenes with ``--out-dir``)."""
    if any(arg == "--out-dir" or arg.startswith("--out-dir=") for arg in argv):
        from rsfm.inference.scenes import scenes_main

        return scenes_main(argv)
    parser = argparse.ArgumentParser(
        prog="rsfm tile",
        description="Apply a hub model to a GeoTIFF of any size in overlapping, blended tiles. "
        "Many scenes (files, globs, @list.txt, STAC) on many workers: "
        "rsfm tile MODEL INPUT... --out-dir DIR (see rsfm tile --out-dir DIR --help).",
    )
    parser.add_argument("model", help="hub name[@version] or entry folder")
    parser.add_argument("input", type=Path, help="input GeoTIFF")
    parser.add_argument("output", type=Path, help="output GeoTIFF (tiled, compressed)")
    add_tile_options(parser)
    parser.add_argument("--segmenter", default=None, help="segmenter assessed by an SQA model")
    parser.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    parser.add_argument("--plot", type=Path, default=None, help="also write a side-by-side PNG")
    args = parser.parse_args(argv)

    import torch

    from rsfm.hub import load
    from rsfm.inference.bands import true_colour_bands
    from rsfm.inference.engine import check_output_path
    from rsfm.inference.input_checks import check_readable

    check_output_path(args.input, args.output)  # before the model loads or anything is read
    check_readable(args.input)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    model = load(args.model, hub=args.hub, device=args.device)
    card = getattr(model, "rsfm_card", None)  # a typed rsfm.hub.card.ModelCard
    if card is not None and card.output in TILE_HOOKS:  # e.g. an SQA model's quality map
        return _run_hook(TILE_HOOKS[card.output], model, args)
    try:
        kind = output_kind(model, card, args.kind, args.model)
        done = tile_scene(model, args, args.input, args.output, kind)
    except TileRefusedError as err:
        print(f"rsfm tile: {err.label}: {err}", file=sys.stderr)
        return 2
    except EmptyOutputError as err:
        print(f"rsfm tile: error: {err}", file=sys.stderr)
        return 1
    print(args.output)
    if args.plot is not None:
        from rsfm.inference.plot import render_side_by_side

        render_side_by_side(
            args.input,
            args.output,
            args.plot,
            rgb_bands=true_colour_bands(done.bands, done.wavelengths),
            class_colors=categorical_colours(done.channels) if kind == "classes" else None,
            class_names=done.class_names,
        )
        print(args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(tile_main(sys.argv[1:]))
