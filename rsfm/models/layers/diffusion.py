"""Family-neutral diffusion building blocks on top of diffusers.

Used by every diffusion family (text-to-image, reference-guided super-resolution):

* :func:`make_scheduler` / :func:`sampling_scheduler`: diffusers schedulers by short name
  (``ddpm`` for training; ``ddim``, ``euler``, ``euler_a``, ``dpm``, ``dpm_sde``, ``unipc``,
  ``pndm`` for sampling), sharing one noise schedule.
* :func:`training_target` (``epsilon``, ``v_prediction`` or ``sample``), :func:`min_snr_weights`
  (Hang et al. 2023, through diffusers' ``compute_snr``) and :func:`diffusion_loss`.
* :func:`make_ema`: diffusers' ``EMAModel`` with sensible defaults.
* :func:`combine_guidance` (classifier-free guidance over a chain of conditions) and
  :func:`guidance_factor` (a schedule of the guidance scale over sampling steps).

Nothing here knows about text, resolution or references; a family builds its predictions and
hands them to these helpers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.training_utils import EMAModel, compute_snr

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "dpm_sde": DPMSolverSDEScheduler,
    "unipc": UniPCMultistepScheduler,
    "pndm": PNDMScheduler,
}
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
GUIDANCE_SCHEDULES = ("constant", "linear", "cosine", "linear_up")


def _scheduler_class(name: str) -> type[SchedulerMixin]:
    try:
        return SCHEDULERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; choose from {sorted(SCHEDULERS)}") from None


def make_scheduler(
    name: str = "ddpm",
    num_train_timesteps: int = 1000,
    beta_schedule: str = "scaled_linear",
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    prediction_type: str = "epsilon",
    **kwargs: Any,
) -> SchedulerMixin:
    """A diffusers scheduler by short name (see :data:`SCHEDULERS`).

    Args:
        name: Scheduler name.
        num_train_timesteps: Length of the training noise schedule.
        beta_schedule: ``linear``, ``scaled_linear`` (Stable Diffusion) or
            ``squaredcos_cap_v2`` (cosine).
        beta_start: First beta.
        beta_end: Last beta.
        prediction_type: What the network predicts (see :data:`PREDICTION_TYPES`).
        **kwargs: Further scheduler config keys (e.g. ``clip_sample=False``).
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}")
    return _scheduler_class(name)(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type=prediction_type,
        **kwargs,
    )


def sampling_scheduler(training: SchedulerMixin, name: str, **overrides: Any) -> SchedulerMixin:
    """A sampling scheduler of another kind sharing ``training``'s noise schedule and target."""
    return _scheduler_class(name).from_config(training.config, **overrides)


def add_noise(
    scheduler: SchedulerMixin,
    sample: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """Forward diffusion ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` (DDPM-style schedulers)."""
    return scheduler.add_noise(sample, noise, timesteps)


def training_target(
    scheduler: SchedulerMixin,
    sample: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """What the network should output for ``scheduler.config.prediction_type``.

    ``epsilon``: the noise; ``v_prediction``: ``v = sqrt(a_t) eps - sqrt(1 - a_t) x_0``
    (``scheduler.get_velocity``); ``sample``: the clean sample.
    """
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(sample, noise, timesteps)
    if kind == "sample":
        return sample
    raise ValueError(f"unsupported prediction_type {kind!r}")


def min_snr_weights(
    scheduler: SchedulerMixin, timesteps: torch.Tensor, gamma: float = 5.0
) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-gamma weighting for the scheduler's target.

    ``min(SNR, gamma) / SNR`` for epsilon, ``min(SNR, gamma) / (SNR + 1)`` for v-prediction
    and ``min(SNR, gamma)`` for sample prediction (all equal min-SNR weighting of x0 error).
    """
    snr = compute_snr(scheduler, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return clipped / snr
    if kind == "v_prediction":
        return clipped / (snr + 1.0)
    return clipped


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error per sample (optionally masked), weighted per sample, then averaged.

    Args:
        prediction: Network output [B, C, H, W].
        target: Training target, same shape.
        weights: Per-sample weights [B] (e.g. :func:`min_snr_weights`).
        mask: Valid pixels [B, H, W] or [B, 1, H, W]; invalid pixels do not count.
    """
    error = (prediction.float() - target.float()) ** 2
    if mask is not None:
        mask = mask.float()
        mask = mask[:, None] if mask.ndim == 3 else mask
        mask = torch.nn.functional.interpolate(mask, size=error.shape[-2:], mode="nearest")
        per_sample = (error * mask).sum(dim=(1, 2, 3)) / (
            mask.sum(dim=(1, 2, 3)) * error.shape[1]
        ).clamp_min(1.0)
    else:
        per_sample = error.mean(dim=(1, 2, 3))
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample)
    return per_sample.mean()


def make_ema(
    parameters: Iterable[torch.nn.Parameter],
    decay: float = 0.9999,
    warmup: bool = True,
    update_after_step: int = 0,
) -> EMAModel:
    """diffusers' ``EMAModel`` over ``parameters``.

    With ``warmup`` the decay ramps as ``1 - (1 + step)^-2/3`` up to ``decay`` (so short runs
    still move the average); ``ema.step(params)`` after each optimiser step,
    ``ema.copy_to(params)`` to use the averages.
    """
    return EMAModel(
        list(parameters),
        decay=decay,
        use_ema_warmup=warmup,
        update_after_step=update_after_step,
        power=2.0 / 3.0,
    )


def guidance_factor(schedule: str, step: int, num_steps: int) -> float:
    """Multiplier of the guidance scale at sampling step ``step`` of ``num_steps`` (0 = noisiest).

    ``constant``: 1; ``linear``: 1 -> 0 over the steps (strong guidance early, for layout);
    ``cosine``: half-cosine 1 -> 0; ``linear_up``: 0 -> 1 (guidance on details only).
    """
    if schedule not in GUIDANCE_SCHEDULES:
        raise ValueError(f"guidance schedule must be one of {GUIDANCE_SCHEDULES}")
    progress = step / max(1, num_steps - 1)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return progress


def combine_guidance(predictions: Sequence[torch.Tensor], scales: Sequence[float]) -> torch.Tensor:
    """Classifier-free guidance over a chain of increasingly conditioned predictions.

    ``out = p_0 + sum_i s_i (p_i - p_{i-1})`` with ``p_0`` the unconditional prediction and
    ``p_i`` adding condition ``i`` (e.g. text, then resolution). One condition gives the usual
    ``p_0 + s (p_1 - p_0)``; scales of 1 give ``p_last``; identical predictions (all
    conditions dropped) give exactly ``p_0`` whatever the scales.

    Args:
        predictions: ``len(scales) + 1`` tensors of the same shape.
        scales: Guidance scale per added condition.
    """
    if len(predictions) != len(scales) + 1:
        raise ValueError(f"need {len(scales) + 1} predictions for {len(scales)} scales")
    out = predictions[0]
    for previous, current, scale in zip(predictions[:-1], predictions[1:], scales, strict=True):
        out = out + scale * (current - previous)
    return out
