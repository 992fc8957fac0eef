"""See what a masked autoencoder learns: a reconstruction picture every validation epoch.

:class:`MAEReconstructionPlot` takes the first validation batch, runs the MAE on it with a fixed
mask, and draws one row per sensor in the batch (an optical sensor as a composite of its own
red/green/blue-like bands, a SAR sensor as its first band): the input, the masked input, the
reconstruction with the visible patches pasted back, and the target. The PNG goes under the run
folder (``<log dir>/reconstructions/epoch_XXX.png`` and ``latest.png``) and, when a
TensorBoard logger is attached, to TensorBoard as ``val/reconstruction``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from rsfm.sensors import rgb_band_indices

PANELS = ("input", "masked input", "reconstruction (visible pasted)", "target")


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Inverse of :func:`rsfm.models.layers.spectral.patchify`: [B, N, C, p*p] -> [B, C, H, W]."""
    batch, _, channels, _ = patches.shape
    rows, cols = grid
    image = patches.reshape(batch, rows, cols, channels, patch_size, patch_size)
    return image.permute(0, 3, 1, 4, 2, 5).reshape(
        batch, channels, rows * patch_size, cols * patch_size
    )


def _stretch(panels: list[np.ndarray]) -> list[np.ndarray]:
    """Scale every panel of a row with the 2-98 % range of the first (the input)."""
    low, high = np.percentile(panels[0], (2, 98))
    scale = max(float(high - low), 1e-6)
    return [np.clip((p - low) / scale, 0.0, 1.0) for p in panels]


def reconstruction_rows(
    model: torch.nn.Module, batch: dict[str, Any], seed: int = 0
) -> list[tuple[str, list[np.ndarray]]]:
    """``[(sensor, [input, masked, reconstruction, target])]``, one row per sensor of a batch.

    Each panel is float [H, W, 3] or [H, W] before stretching; masked patches of the masked
    input are NaN (drawn grey).
    """
    generator = torch.Generator(device=batch["image"].device).manual_seed(seed)
    out = model(
        batch["image"],
        batch["wavelengths"],
        pair_image=batch.get("pair_image"),
        pair_wavelengths=batch.get("pair_wavelengths"),
        generator=generator,
    )
    patch = model.patch_size
    grid = (batch["image"].shape[-2] // patch, batch["image"].shape[-1] // patch)
    views = [("image", "wavelengths", "sensor", "pred", "target")]
    if "pred_pair" in out:
        views.append(("pair_image", "pair_wavelengths", "pair_sensor", "pred_pair", "target_pair"))
    mask = out["mask"].bool()[:, :, None, None]  # [B, N, 1, 1], True = masked
    rows = []
    for image_key, wave_key, sensor_key, pred_key, target_key in views:
        target = out[target_key]
        pasted = torch.where(mask, out[pred_key], target)
        hidden = target.masked_fill(mask, float("nan"))
        images = [
            batch[image_key],
            unpatchify(hidden, grid, patch),
            unpatchify(pasted, grid, patch),
            unpatchify(target, grid, patch),
        ]
        names = batch.get(sensor_key) or [image_key] * batch[image_key].shape[0]
        waves = batch[wave_key]
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                continue
            seen.add(name)
            w = (waves[index] if waves.ndim == 2 else waves).detach().cpu().numpy()
            bands = rgb_band_indices(w)
            panels = [img[index, bands].detach().float().cpu().numpy() for img in images]
            panels = [p.transpose(1, 2, 0) if len(bands) == 3 else p[0] for p in panels]
            rows.append((str(name), panels))
    return rows


def render_rows(rows: list[tuple[str, list[np.ndarray]]], path: Path, title: str) -> np.ndarray:
    """Draw the rows as a PNG at ``path``; returns the picture as uint8 [H, W, 3]."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(rows), len(PANELS), figsize=(2.4 * len(PANELS), 2.4 * len(rows)), squeeze=False, dpi=80
    )
    for row, (sensor, panels) in enumerate(rows):
        for col, panel in enumerate(_stretch([np.nan_to_num(p, nan=0.0) for p in panels])):
            ax = axes[row, col]
            if col == 1:  # masked patches grey
                hidden = np.isnan(panels[1])
                panel = np.where(hidden, 0.5, panel)
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(PANELS[col], fontsize=8)
            if col == 0:
                ax.set_ylabel(sensor, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture


class MAEReconstructionPlot(pl.Callback):
    """Write a reconstruction PNG (and a TensorBoard image) every ``every_n_epochs`` validations.

    Args:
        every_n_epochs: Validation epochs between pictures.
        seed: Seed of the masking used for the picture (same mask every epoch).
        folder: Output folder (default: ``<trainer.log_dir>/reconstructions``).
    """

    def __init__(self, every_n_epochs: int = 1, seed: int = 0, folder: str | None = None) -> None:
        super().__init__()
        self.every_n_epochs = max(1, every_n_epochs)
        self.seed = seed
        self.folder = folder
        self._batch: dict[str, Any] | None = None
        self.last_path: Path | None = None

    def output_folder(self, trainer: pl.Trainer) -> Path:
        """Where the PNGs go."""
        if self.folder is not None:
            return Path(self.folder)
        return Path(trainer.log_dir or trainer.default_root_dir) / "reconstructions"

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the first batch of each sub-loader (single sensors, pairs)."""
        if trainer.sanity_checking or batch_idx != 0 or self._batch is not None:
            return
        parts = batch if "image" not in batch else {"batch": batch}
        self._batch = {k: v for k, v in parts.items() if isinstance(v, dict) and "image" in v}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Draw and save the picture."""
        parts, self._batch = self._batch, None
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        folder = self.output_folder(trainer)  # on every rank: trainer.log_dir broadcasts
        if not parts or not trainer.is_global_zero:
            return
        rows = []
        with torch.no_grad():
            for part in parts.values():
                rows += reconstruction_rows(pl_module.model, part, self.seed)
        name = f"epoch_{trainer.current_epoch:03d}.png"
        loss = trainer.callback_metrics.get("val/loss")
        title = f"epoch {trainer.current_epoch}" + (f", val/loss {float(loss):.4f}" if loss else "")
        picture = render_rows(rows, folder / name, title)
        (folder / "latest.png").write_bytes((folder / name).read_bytes())
        self.last_path = folder / name
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard's SummaryWriter
                experiment.add_image(
                    "val/reconstruction", picture, trainer.global_step, dataformats="HWC"
                )
