"""Probes and metrics for frozen-feature evaluation: linear probe, k-NN, the matched filter,
accuracy, mIoU, mAP.

Everything is plain torch (deterministic on CPU for a given seed): a linear probe is an
L2-regularised logistic regression fitted full-batch with L-BFGS on standardised features; k-NN
is the temperature-weighted cosine vote used by DINO-style evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -1


@dataclass
class Standardizer:
    """Per-feature mean / std from training features (constant features get std 1)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor) -> Standardizer:
        """Statistics of ``features`` [N, D]."""
        mean = features.mean(dim=0)
        std = features.std(dim=0)
        return cls(mean, torch.where(std > 1e-8, std, torch.ones_like(std)))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


def fit_linear_probe(
    features: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    multilabel: bool = False,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
    seed: int = 0,
) -> tuple[nn.Linear, Standardizer]:
    """An L2-regularised logistic regression on standardised features.

    Args:
        features: [N, D] training features.
        targets: [N] class ids (multi-class) or [N, K] 0/1 (``multilabel``).
        num_classes: K.
        multilabel: One sigmoid per class (binary cross-entropy) instead of a softmax.
        weight_decay: L2 penalty on the weights (mean loss + wd/2 * ||W||^2).
        max_iter: L-BFGS iterations.
        seed: Seed of the weight initialisation.

    Returns:
        The fitted layer and the standardiser to apply to any features before it.
    """
    scaler = Standardizer.fit(features)
    x = scaler(features)
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.01)
        layer.bias.zero_()
    optimizer = torch.optim.LBFGS(
        layer.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )
    y = targets.float() if multilabel else targets.long()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = layer(x)
        if multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, y)
        else:
            loss = F.cross_entropy(logits, y)
        loss = loss + 0.5 * weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer.eval(), scaler


def predict_linear(layer: nn.Linear, scaler: Standardizer, features: torch.Tensor) -> torch.Tensor:
    """Logits [N, K] of a fitted probe, in chunks."""
    with torch.no_grad():
        return torch.cat([layer(scaler(chunk)) for chunk in features.split(65536)])


def knn_scores(
    train: torch.Tensor,
    train_targets: torch.Tensor,
    query: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    multilabel: bool = False,
) -> torch.Tensor:
    """Class scores [M, K] from the k nearest training features by cosine similarity.

    Votes are weighted by ``exp(similarity / temperature)``; multi-label targets vote their
    multi-hot vectors.
    """
    scaler = Standardizer.fit(train)
    bank = F.normalize(scaler(train), dim=1)
    votes = (
        train_targets.float()
        if multilabel
        else F.one_hot(train_targets.long(), num_classes).float()
    )
    k = min(k, bank.shape[0])
    scores = []
    with torch.no_grad():
        for chunk in query.split(4096):
            sims = F.normalize(scaler(chunk), dim=1) @ bank.T
            top, index = sims.topk(k, dim=1)
            weights = (top / temperature).exp()
            scores.append((weights[..., None] * votes[index]).sum(dim=1) / weights.sum(1, True))
    return torch.cat(scores)


# ------------------------------------------------------------------------------- metrics
def matched_filter_scores(
    features: torch.Tensor,
    targets: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    shrinkage: float = 1e-3,
) -> torch.Tensor:
    """Per-class matched-filter scores [M, K], the classic spectral target detector.

    For class ``k`` the background is every other training pixel, with mean ``b`` and
    covariance ``S`` (shrunk towards ``trace(S)/D * I`` by ``shrinkage``); with the class's
    mean spectrum ``t`` the score of a pixel ``x`` is
    ``(t - b)' S^-1 (x - b) / ((t - b)' S^-1 (t - b))``: 0 at the background mean, 1 at the
    class mean, the background's correlated variation whitened away. A pixel's class is its
    highest score; classes absent from the training pixels score ``-inf``.

    Args:
        features: [N, D] training spectra.
        targets: [N] class ids.
        test_features: [M, D] spectra to score.
        num_classes: K.
        shrinkage: Share of the covariance replaced by its mean variance (keeps S invertible).
    """
    x = features.double()
    total_sum, total_second = x.sum(dim=0), x.T @ x
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    test = test_features.double()
    scores = torch.full((len(test), num_classes), float("-inf"), dtype=torch.float64)
    for k in range(num_classes):
        inside = targets == k
        n_in = int(inside.sum())
        n_out = len(x) - n_in
        if n_in == 0 or n_out < 2:
            continue
        members = x[inside]
        target = members.mean(dim=0)
        background = (total_sum - members.sum(dim=0)) / n_out
        second = total_second - members.T @ members
        cov = (second - n_out * torch.outer(background, background)) / (n_out - 1)
        cov = (1 - shrinkage) * cov + shrinkage * cov.trace() / len(eye) * eye
        diff = target - background
        whitened = torch.linalg.solve(cov, diff)
        scores[:, k] = (test - background) @ whitened / (diff @ whitened).clamp(min=1e-12)
    return scores.float()


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Share of labelled items (target != -1) predicted right."""
    keep = target != IGNORE_INDEX
    return float((pred[keep] == target[keep]).float().mean()) if keep.any() else float("nan")


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion matrix [K, K] (rows: truth) over labelled items."""
    keep = target != IGNORE_INDEX
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """IoU per class (NaN for a class absent from both prediction and truth)."""
    matrix = confusion(pred, target, num_classes).double()
    hits = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - hits
    return torch.where(union > 0, hits / union.clamp(min=1), torch.full_like(hits, float("nan")))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """mIoU over the classes present in the truth (a class only predicted still costs IoU 0
    to the classes it was confused with, never counted on its own)."""
    present = torch.bincount(target[target != IGNORE_INDEX].long(), minlength=num_classes) > 0
    ious = iou_per_class(pred, target, num_classes)
    return float(ious[present].nanmean())


def average_precision(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Average precision of one class (area under the step precision-recall curve)."""
    order = scores.argsort(descending=True)
    hits = target[order].float()
    if hits.sum() == 0:
        return float("nan")
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float32)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro mAP over the classes with at least one positive in ``targets`` [N, K]."""
    values = [average_precision(scores[:, k], targets[:, k]) for k in range(targets.shape[1])]
    values = [v for v in values if v == v]
    return float(sum(values) / len(values)) if values else float("nan")
