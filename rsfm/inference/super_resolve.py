"""``rsfm super-resolve LR.tif --ref REF.tif --model NAME --scale 10 --out SR.tif``.

Runs a reference-guided SR model (:class:`~rsfm.models.crefdiff.CRefDiffModel` from the hub)
through the tiled engine (:func:`~rsfm.inference.engine.tile_raster` machinery, ``scale=S``):
overlapping LR tiles, Hann-blended SR tiles, output transform = input transform / S, CRS kept,
bounded memory. The reference (and an optional strength GeoTIFF) is read per tile, warped onto
the tile's HR grid, so neither is ever loaded whole.

The engine's ``predict_fn`` sees only pixels; the engine's ``current_tiles`` names the tiles of
the batch being predicted, so the closure knows where to read the reference.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch and diffusers load once the command runs, so `--help` stays fast
    import torch

    from rsfm.band_stats import BandStats
    from rsfm.data.triplet_coregistration import CoRegisteredTriplet
    from rsfm.inference.engine import TiledPredictor, TileReport
    from rsfm.inference.tiling import Tile
    from rsfm.models.crefdiff import CRefDiffModel


class ReferenceSRPredictor:
    """``predict_fn`` for the engine: reads the reference of each tile and samples the model.

    Args:
        model: The SR model (eval mode).
        grid: Co-registration of LR (and reference) on the HR grid (``files.hr`` is None).
        strength: Scalar reference strength.
        strength_grid: Co-registration of a strength GeoTIFF (read as its ``reference``).
        lr_stats: LR normalisation (the output is de-normalised with it).
        ref_stats: Reference normalisation.
        steps: DDIM steps of the full schedule.
        start: ``lr``, ``reference`` or ``noise``.
        start_fraction: Fraction of the schedule run from a better start.
        seed: Seed of the initial noise (per tile position, so batching cannot change pixels).
    """

    def __init__(
        self,
        model: CRefDiffModel,
        grid: CoRegisteredTriplet,
        strength: float = 1.0,
        strength_grid: CoRegisteredTriplet | None = None,
        lr_stats: BandStats | None = None,
        ref_stats: BandStats | None = None,
        steps: int = 20,
        start: str = "lr",
        start_fraction: float = 0.25,
        seed: int = 0,
    ) -> None:
        self.model, self.grid, self.strength = model, grid, float(strength)
        self.strength_grid, self.lr_stats, self.ref_stats = strength_grid, lr_stats, ref_stats
        self.steps, self.start, self.start_fraction, self.seed = steps, start, start_fraction, seed
        self.predictor: TiledPredictor | None = None

    def _tile_inputs(
        self, tile: Tile, size: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Reference ``[Cr, T*s, T*s]`` (normalised), strength map ``[1, T*s, T*s]``, noise."""
        import torch

        s = self.grid.scale
        row, col, side = tile.row * s, tile.col * s, size * s
        strength = torch.full((1, side, side), self.strength)
        reference = None
        if self.grid.files.reference is not None:
            values, valid = self.grid.read_window("reference", row, col, side, side)
            reference = torch.from_numpy(values)
            if self.ref_stats is not None:
                reference = self.ref_stats.normalize(reference, self.grid.reference_wavelengths)
            reference = reference * torch.from_numpy(valid)
            strength = strength * torch.from_numpy(valid)
        if self.strength_grid is not None:
            values, valid = self.strength_grid.read_window("reference", row, col, side, side)
            strength = strength * torch.from_numpy(values[:1] * valid)
        generator = torch.Generator().manual_seed(hash((self.seed, tile.row, tile.col)) % 2**63)
        noise = torch.randn((self.model.in_channels, side, side), generator=generator)
        return reference, strength, noise

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, T]`` normalised LR tiles -> ``[B, C, T*s, T*s]`` physical values."""
        import torch

        from rsfm.inference.tiling import Tile

        tiles = self.predictor.current_tiles if self.predictor is not None else None
        size, s = image.shape[-1], self.grid.scale
        if tiles is None:  # the engine's shape probe: no position, no reference
            tiles = [Tile(0, 0, 0, 0, size, size)] * image.shape[0]
            inputs = [(None, torch.zeros(1, size * s, size * s), None) for _ in tiles]
        else:
            inputs = [self._tile_inputs(tile, size) for tile in tiles]
        device = image.device
        references = [r for r, _, _ in inputs]
        reference = (
            torch.stack(references).to(device) if all(r is not None for r in references) else None
        )
        strength = torch.stack([m for _, m, _ in inputs]).to(device)
        noises = [n for _, _, n in inputs]
        noise = torch.stack(noises).to(device) if all(n is not None for n in noises) else None
        output = self.model.sample(
            image, reference, strength, steps=self.steps, start=self.start,
            start_fraction=self.start_fraction, scale=s, noise=noise,
        )  # fmt: skip
        if self.lr_stats is not None:
            rows = self.lr_stats.rows_for(self.grid.wavelengths)
            mean = torch.tensor(
                np.asarray(self.lr_stats.mean)[rows], dtype=output.dtype, device=device
            )
            std = torch.tensor(
                np.asarray(self.lr_stats.std)[rows], dtype=output.dtype, device=device
            )
            output = output * std[None, :, None, None] + mean[None, :, None, None]
        return output


def super_resolve(
    model: CRefDiffModel,
    lr_path: str | Path,
    output_path: str | Path,
    reference_path: str | Path | None = None,
    *,
    scale: int | None = None,
    strength: float | str | Path = 1.0,
    steps: int = 20,
    start: str = "lr",
    start_fraction: float = 0.25,
    lr_stats: BandStats | None = None,
    ref_stats: BandStats | None = None,
    bands: Sequence[int] | None = None,
    ref_bands: Sequence[int] | None = None,
    tile_size: int = 64,
    overlap: int = 16,
    batch_size: int = 4,
    seed: int = 0,
    progress: bool = True,
    device: str = "cpu",
) -> TileReport:
    """Super-resolve a GeoTIFF tile by tile with a reference GeoTIFF.

    Args:
        model: SR model (moved to ``device``, eval mode).
        lr_path: Low-resolution input (any size; must have a CRS).
        output_path: Output GeoTIFF (``scale`` x the input's pixels, same CRS).
        reference_path: High-resolution reference (any CRS / resolution; warped per tile).
        scale: Upscaling factor (default: the model's).
        strength: Scalar strength, or a GeoTIFF of per-pixel strengths (band 1).
        steps: DDIM steps of the full schedule.
        start: ``lr``, ``reference`` or ``noise``.
        start_fraction: Fraction of the schedule run from a better start.
        lr_stats: LR normalisation (from the model card).
        ref_stats: Reference normalisation.
        bands: 1-based LR bands (default all).
        ref_bands: 1-based reference bands (default all).
        tile_size: LR tile side.
        overlap: LR pixels shared by neighbouring tiles.
        batch_size: Tiles per forward pass.
        seed: Noise seed.
        progress: Show a progress bar.
        device: Torch device.

    Raises:
        BandMismatchError: Before any compute, naming the file, when the LR bands (or the
            reference's) are not as many as the model takes (see :func:`check_inputs`).
        OutputIsInputError / OutputPathError: Before anything is read, when the output is one
            of the inputs (LR, reference, strength GeoTIFF) or cannot be written there.
    """
    import torch

    from rsfm.data.triplet_coregistration import CoRegisteredTriplet, TripletFiles
    from rsfm.inference.engine import TiledPredictor, TileOptions, check_output_path

    strength_file = None if _is_number(strength) else strength
    for source in (lr_path, reference_path, strength_file):  # writing one would destroy it
        if source is not None:
            check_output_path(Path(source), Path(output_path))
    factor = check_inputs(model, lr_path, reference_path, bands, ref_bands, scale)
    model = model.to(device).eval()
    files = TripletFiles(
        lr=Path(lr_path), reference=Path(reference_path) if reference_path else None
    )
    grid = CoRegisteredTriplet(files, scale=factor, lr_bands=bands, ref_bands=ref_bands)
    strength_grid = None
    if isinstance(strength, str | Path) and not _is_number(strength):
        strength_grid = CoRegisteredTriplet(
            TripletFiles(lr=Path(lr_path), reference=Path(strength)), scale=factor
        )
        strength = 1.0
    predict = ReferenceSRPredictor(
        model, grid, float(strength), strength_grid, lr_stats, ref_stats, steps, start,
        start_fraction, seed,
    )  # fmt: skip
    waves = grid.wavelengths
    normalize = None
    if lr_stats is not None:
        normalize = lambda batch: lr_stats.normalize(batch, torch.from_numpy(waves))  # noqa: E731
    options = TileOptions(
        tile_size=tile_size, overlap=overlap, batch_size=batch_size, scale=factor, output="values",
        band_names=tuple(f"sr_{i + 1}" for i in range(model.in_channels)), progress=progress,
        resume=False, device=device,
    )  # fmt: skip
    engine = TiledPredictor(predict, options, normalize)
    predict.predictor = engine
    try:
        return engine.run(lr_path, output_path, bands)
    finally:
        grid.close()
        if strength_grid is not None:
            strength_grid.close()


def _model_name(model: Any) -> str:
    card = getattr(model, "rsfm_card", None)
    if card is not None and card.name:
        return f"{card.name}@{card.version}" if card.version else card.name
    return type(model).__name__


def _card_bands(model: Any, role: str) -> str:
    """`` (B4, B3, B2)``: the band names of the card's ``role`` statistics, when it has them."""
    stats = _card_stats(model)[0 if role == "lr" else 1]
    names = list(stats.band_names) if stats is not None else []
    return f" ({', '.join(names)})" if names else ""


def _example_bands(model: Any, role: str, path: Path, wanted: int) -> list[int]:
    """1-based bands of ``path`` nearest the card's wavelengths (else the first ``wanted``)."""
    from rsfm.sensors import sensor_from_raster

    stats = _card_stats(model)[0 if role == "lr" else 1]
    try:
        waves = np.asarray(sensor_from_raster(path).wavelengths, dtype=float)
        targets = [float(w) for w in stats.wavelengths] if stats is not None else []
    except (ValueError, TypeError):
        targets = []
    if len(targets) != wanted or not np.isfinite(targets).all():
        return list(range(1, wanted + 1))
    return [int(np.abs(waves - t).argmin()) + 1 for t in targets]


def check_inputs(
    model: CRefDiffModel,
    lr_path: str | Path,
    reference_path: str | Path | None = None,
    bands: Sequence[int] | None = None,
    ref_bands: Sequence[int] | None = None,
    scale: int | None = None,
) -> int:
    """Check the inputs fit the model before any compute; return the upscaling factor.

    The LR input must give the model its ``in_channels`` bands (all of the file's, or the
    ``--bands`` picked), the reference its ``ref_channels`` (``--ref-bands``); a conv layer would
    otherwise fail deep in the first tile with a shape error.

    Raises:
        UnreadableRasterError: If a file does not open as a raster.
        BandMismatchError: Naming the file, what the model takes and the flag that fixes it.
        ValueError: If ``scale`` is not a positive integer.
    """
    import rasterio

    from rsfm.data.errors import BandMismatchError
    from rsfm.inference.input_checks import check_readable

    trained = int(getattr(model, "scale", 0) or 0)
    if scale is not None and (int(scale) != scale or int(scale) < 1):
        raise ValueError(
            f"--scale must be a positive integer, got {scale} (the model was trained at x{trained})"
        )
    factor = int(scale or trained)
    name = _model_name(model)
    inputs = [("lr", Path(lr_path), bands, int(model.in_channels), "--bands")]
    if reference_path is not None and getattr(model, "uses_reference", True):
        inputs.append(
            ("reference", Path(reference_path), ref_bands, int(model.ref_channels), "--ref-bands")
        )
    for role, path, picked, wanted, flag in inputs:
        check_readable(path)
        with rasterio.open(path) as src:
            count = src.count
        what = "input" if role == "lr" else "reference"
        outside = [b for b in picked or () if not 1 <= b <= count]
        if outside:
            raise BandMismatchError(
                path, f"{flag} {' '.join(map(str, picked))} asks for band(s) {outside}, but the "
                f"{what} has {count} band(s) (1-based)",
            )  # fmt: skip
        given = len(picked) if picked else count
        if given == wanted:
            continue
        takes = f"{name} takes {wanted} band(s){_card_bands(model, role)} as its {what}"
        if picked:
            problem = f"{flag} picks {given} band(s), but {takes}; give {flag} {wanted} numbers"
        elif count > wanted:
            example = " ".join(map(str, _example_bands(model, role, path, wanted)))
            problem = (
                f"the {what} has {count} bands, but {takes}; pick them with {flag} (1-based, "
                f"e.g. {flag} {example})"
            )
        else:
            problem = f"the {what} has {count} band(s), but {takes}; give one with {wanted}"
        raise BandMismatchError(path, problem)
    return factor


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _card_stats(model: Any) -> tuple[BandStats | None, BandStats | None]:
    """LR and reference statistics of a hub card (its ``lr`` / ``reference`` normalisation)."""
    card = getattr(model, "rsfm_card", None)  # a typed rsfm.hub.card.ModelCard
    stats: dict[str, BandStats] = card.normalization if card is not None else {}
    return stats.get("lr"), stats.get("reference")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``rsfm super-resolve``."""
    parser = argparse.ArgumentParser(prog="rsfm super-resolve", description=__doc__.splitlines()[0])
    parser.add_argument("lr", help="low-resolution GeoTIFF")
    parser.add_argument("--ref", help="high-resolution reference GeoTIFF (optional)")
    parser.add_argument(
        "--model",
        help="hub name[@version] or entry folder of a reference-guided SR (CRefDiff) model; "
        "none ships in checkpoints/: train one (configs/crefdiff/quickstart.yaml) and push it",
    )
    parser.add_argument("--hub", help="hub root (default: the local hub)")
    parser.add_argument("--scale", type=int, help="upscaling factor (default: the model's)")
    parser.add_argument("--strength", default="1.0", help="reference strength or strength GeoTIFF")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of the full schedule")
    parser.add_argument("--start", choices=("lr", "reference", "noise"), default="lr")
    parser.add_argument("--start-fraction", type=float, default=0.25)
    parser.add_argument("--bands", type=int, nargs="+", help="1-based LR bands (default all)")
    parser.add_argument(
        "--ref-bands", type=int, nargs="+", help="1-based reference bands (default all)"
    )
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", required=True, help="output GeoTIFF")
    return parser


def super_resolve_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rsfm super-resolve``; returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else sys.argv[1:])
    if not args.model:
        raise ValueError(
            "no --model given, and no super-resolution model ships in checkpoints/: train one "
            "(rsfm fit --config configs/crefdiff/quickstart.yaml), publish it (rsfm hub push RUN "
            "--name NAME), then pass --model NAME"
        )

    from rsfm.hub import load
    from rsfm.models.crefdiff import CRefDiffModel

    model = load(args.model, hub=args.hub, device=args.device)
    if not isinstance(model, CRefDiffModel):
        card = getattr(model, "rsfm_card", None)
        task = f"a {card.task} model" if card is not None and card.task else "not an SR model"
        raise ValueError(
            f"--model {args.model} is {task} ({type(model).__name__}), not a reference-guided "
            "super-resolution (CRefDiff) model; pass --model NAME of one"
        )
    lr_stats, ref_stats = _card_stats(model)
    strength: float | str = float(args.strength) if _is_number(args.strength) else args.strength
    report = super_resolve(
        model, args.lr, args.out, args.ref, scale=args.scale, strength=strength, steps=args.steps,
        start=args.start, start_fraction=args.start_fraction, lr_stats=lr_stats,
        ref_stats=ref_stats, bands=args.bands, ref_bands=args.ref_bands,
        tile_size=args.tile_size, overlap=args.overlap,
        batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
        device=args.device,
    )  # fmt: skip
    print(f"wrote {args.out}: {report.tiles_predicted} tiles in {report.seconds:.1f} s")
    return 0


__all__ = [
    "ReferenceSRPredictor",
    "check_inputs",
    "super_resolve",
    "super_resolve_main",
]
