"""Exponential moving average of a task's trainable weights (diffusers' ``EMAModel``).

Used by the diffusion tasks: validation runs on the averaged weights, checkpoints store them under
``ema_model.*`` beside the raw weights, with their step under ``rsfm_ema_step`` (push them with
``rsfm.hub.push_checkpoint(..., prefix="ema_model.")`` or ``rsfm.hub.push(task.ema_network(),
...)``), resuming restores them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rsfm.hub.checkpoint_keys import EMA_STEP
from rsfm.models.layers.diffusion import make_ema

EMA_PREFIX = "ema_model."


class EMAMixin:
    """Lightning hooks keeping an EMA of ``self.model``'s trainable parameters.

    A task mixes it in before :class:`~rsfm.tasks.base.BaseTask` and calls :meth:`init_ema` in
    ``__init__``; the checkpoint hooks add the averages to BaseTask's checkpoint contract.
    """

    model: nn.Module
    device: torch.device

    def init_ema(self, decay: float | None, warmup: bool = True) -> None:
        """Remember the settings (the average itself is made on the right device at fit start)."""
        self.ema_decay, self.ema_warmup = decay, warmup
        self.ema: Any = None
        self._loaded_ema: dict[str, torch.Tensor] | None = None
        self._ema_swapped = False

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def on_fit_start(self) -> None:
        """Create the EMA (on the model's device), restoring averages from a checkpoint."""
        if self.ema_decay is None:
            return
        self.ema = make_ema(self._trainable(), self.ema_decay, self.ema_warmup)
        if self._loaded_ema is not None:
            names = self._trainable_names()
            self.ema.shadow_params = [self._loaded_ema[n].to(self.device) for n in names]
            self.ema.optimization_step = int(self._loaded_ema.get("__step__", torch.tensor(0)))
            self._loaded_ema = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the moving average after each optimiser step."""
        if self.ema is not None:
            self.ema.step(self._trainable())

    def on_validation_epoch_start(self) -> None:
        """Validate with the EMA weights."""
        if self.ema is not None:
            self.ema.store(self._trainable())
            self.ema.copy_to(self._trainable())
            self._ema_swapped = True

    def on_validation_epoch_end(self) -> None:
        """Put the training weights back."""
        if self._ema_swapped:
            self.ema.restore(self._trainable())
            self._ema_swapped = False

    def ema_network(self) -> nn.Module:
        """A copy of the network carrying the EMA weights (the network itself without EMA)."""
        network = copy.deepcopy(self.model)
        if self.ema is not None:
            self.ema.copy_to([p for p in network.parameters() if p.requires_grad])
        return network.eval()

    def save_ema(self, checkpoint: dict[str, Any]) -> None:
        """Add the averaged weights to ``checkpoint["state_dict"]`` under ``ema_model.``."""
        if self.ema is None:
            return
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        for name, shadow in zip(self._trainable_names(), self.ema.shadow_params, strict=True):
            state[name] = shadow.detach().clone()
        checkpoint["state_dict"].update({EMA_PREFIX + k: v for k, v in state.items()})
        checkpoint[EMA_STEP] = int(self.ema.optimization_step)

    def load_ema(self, checkpoint: dict[str, Any]) -> None:
        """Take the averaged weights out of the state dict (restored in :meth:`on_fit_start`)."""
        state = checkpoint["state_dict"]
        ema = {k[len(EMA_PREFIX) :]: state.pop(k) for k in list(state) if k.startswith(EMA_PREFIX)}
        if ema:
            ema["__step__"] = torch.tensor(int(checkpoint.get(EMA_STEP, 0)))
            self._loaded_ema = ema

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The task's checkpoint contract, plus the averaged weights."""
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        self.save_ema(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the averaged weights out of the state dict, then the task's contract."""
        self.load_ema(checkpoint)
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
