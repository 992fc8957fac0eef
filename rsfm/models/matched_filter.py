"""The classic matched filter: the baseline every plume detector is compared against.

For a scene with background mean ``mu`` and covariance ``Sigma`` (estimated from the scene itself,
shrunk towards a scaled identity), a target signature ``t`` and a pixel ``x``, the matched-filter
score is the least-squares estimate of the target's abundance under Gaussian clutter::

    alpha(x) = (x - mu)^T Sigma^-1 t / (t^T Sigma^-1 t)

For an absorbing gas the radiance is multiplied by ``exp(-E a)``; to first order
``x = mu - E (mu * a)``, so the target is ``t = -mu * a`` (the unit absorption ``a`` scaled by the
mean radiance, as in the EMIT / AVIRIS-NG methane matched filters) and ``alpha`` estimates ``E``.
A second pass re-estimates the background without the pixels the first pass flagged, so strong
plumes do not leak into ``mu`` and ``Sigma``. A threshold on ``alpha`` is chosen on training
scenes (maximum F1) and applied to unseen ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def ledoit_wolf_covariance(centred: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance of centred samples ``[N, C]`` and its shrinkage (0..1).

    Written out because no declared dependency has it (scikit-learn is not one); it is the
    closed form of Ledoit & Wolf (2004) towards ``trace(S) / C * I``.
    """
    n, c = centred.shape
    sample = centred.T @ centred / n
    scale = torch.trace(sample) / c
    target = scale * torch.eye(c, dtype=sample.dtype, device=sample.device)
    delta = ((sample - target) ** 2).sum() / c
    fourth = (centred.pow(2).sum(dim=1) ** 2).sum()
    beta = ((fourth / n - (sample**2).sum()) / n) / c
    shrinkage = float(torch.clamp(beta / delta, 0.0, 1.0)) if delta > 0 else 1.0
    return (1.0 - shrinkage) * sample + shrinkage * target, shrinkage


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Threshold on ``scores`` maximising F1 for boolean ``labels``; returns (threshold, F1).

    Hand-written: torchmetrics' precision-recall curve squashes raw scores through a sigmoid.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], labels[order].astype(np.float64)
    true_positives = np.cumsum(hits)
    predicted = np.arange(1, len(hits) + 1)
    last_of_value = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]  # cut between values
    total = max(hits.sum(), 1.0)
    f1 = 2.0 * true_positives / (predicted + total)
    f1 = np.where(last_of_value, f1, -1.0)
    best = int(np.argmax(f1))
    return float(sorted_scores[best]), float(f1[best])


class MatchedFilter:
    """Per-scene matched filter with a threshold learned on training scenes.

    Args:
        signature: Unit absorption ``a`` per band (e.g.
            :func:`rsfm.data.synthetic.hyperspectral.plume_signature`).
        multiplicative: Target ``-mu * a`` (absorbing gas); False uses ``t = a`` as an additive
            signature.
        iterations: Background estimates (the second and later exclude flagged pixels).
        exclude_quantile: Share of the highest-scoring pixels left out of the re-estimate.
        threshold: Detection threshold on the score (set by :meth:`fit_threshold`).
    """

    def __init__(
        self,
        signature: Sequence[float] | np.ndarray,
        multiplicative: bool = True,
        iterations: int = 2,
        exclude_quantile: float = 0.1,
        threshold: float | None = None,
    ) -> None:
        self.signature = torch.as_tensor(np.asarray(signature, dtype=np.float64))
        self.multiplicative = multiplicative
        self.iterations = max(1, int(iterations))
        self.exclude_quantile = exclude_quantile
        self.threshold = threshold
        self.last_shrinkage: float | None = None

    def scores(self, image: np.ndarray | torch.Tensor, valid: Any = None) -> np.ndarray:
        """Matched-filter scores (estimated absorption depth) of a scene.

        Args:
            image: [C, H, W] radiance (any linear scaling).
            valid: Optional bool [H, W]; invalid pixels score NaN and never enter the statistics.

        Returns:
            float32 [H, W].

        Raises:
            ValueError: If the band count differs from the signature's.
        """
        cube = torch.as_tensor(np.asarray(image), dtype=torch.float64)
        bands, height, width = cube.shape
        if bands != self.signature.numel():
            raise ValueError(
                f"image has {bands} bands, the matched filter's signature {self.signature.numel()}"
            )
        pixels = cube.reshape(bands, -1).T  # [N, C]
        ok = (
            torch.ones(pixels.shape[0], dtype=torch.bool)
            if valid is None
            else torch.as_tensor(np.asarray(valid)).reshape(-1).bool()
        )
        ok &= torch.isfinite(pixels).all(dim=1)
        background = ok.clone()
        alpha = torch.full((pixels.shape[0],), float("nan"), dtype=torch.float64)
        for _ in range(self.iterations):
            mean = pixels[background].mean(dim=0)
            covariance, self.last_shrinkage = ledoit_wolf_covariance(pixels[background] - mean)
            target = -mean * self.signature if self.multiplicative else self.signature
            weights = torch.linalg.solve(covariance, target)  # Sigma^-1 t
            alpha = ((pixels - mean) @ weights) / (target @ weights)
            cut = torch.quantile(alpha[ok].float(), 1.0 - self.exclude_quantile).double()
            background = ok & (alpha < cut)
        alpha[~ok] = float("nan")
        return alpha.reshape(height, width).float().numpy()

    def fit_threshold(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        ignore_index: int = 255,
        valids: Sequence[np.ndarray] | None = None,
    ) -> float:
        """Choose the threshold maximising pooled F1 over training scenes; returns it.

        Args:
            images: [C, H, W] scenes.
            masks: [H, W] labels (1 = target, ``ignore_index`` = unlabelled, else background).
            ignore_index: Label value left out.
            valids: Optional per-scene valid masks.
        """
        all_scores, all_labels = [], []
        for k, (image, mask) in enumerate(zip(images, masks, strict=True)):
            scores = self.scores(image, None if valids is None else valids[k])
            keep = (np.asarray(mask) != ignore_index) & np.isfinite(scores)
            all_scores.append(scores[keep])
            all_labels.append(np.asarray(mask)[keep] == 1)
        self.threshold, _ = best_f1_threshold(
            np.concatenate(all_scores), np.concatenate(all_labels)
        )
        return self.threshold

    def predict(self, image: np.ndarray | torch.Tensor, valid: Any = None) -> np.ndarray:
        """Boolean detections [H, W] (``scores >= threshold``).

        Raises:
            RuntimeError: If no threshold was set or fitted.
        """
        if self.threshold is None:
            raise RuntimeError("the matched filter has no threshold: call fit_threshold first")
        return np.nan_to_num(self.scores(image, valid), nan=-np.inf) >= self.threshold
