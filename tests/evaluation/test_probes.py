"""Probes and metrics of rsfm.evaluation.probes, on values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from rsfm.evaluation.probes import (
    accuracy,
    average_precision,
    fit_linear_probe,
    iou_per_class,
    knn_scores,
    matched_filter_scores,
    mean_average_precision,
    mean_iou,
    predict_linear,
)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]])
    return centres[labels] + torch.randn(n, 4, generator=g), labels


def test_linear_probe_learns_separable_classes() -> None:
    x, y = _blobs(600, 0)
    x_test, y_test = _blobs(300, 1)
    layer, scaler = fit_linear_probe(x, y, 3)
    assert accuracy(predict_linear(layer, scaler, x_test).argmax(1), y_test) > 0.95
    untrained, scaler = fit_linear_probe(x, y, 3, max_iter=1, weight_decay=1e6)
    assert accuracy(predict_linear(untrained, scaler, x_test).argmax(1), y_test) < 0.9


def test_linear_probe_multilabel_and_knn() -> None:
    x, y = _blobs(400, 2)
    multi = torch.nn.functional.one_hot(y, 3).float()
    layer, scaler = fit_linear_probe(x, multi, 3, multilabel=True)
    x_test, y_test = _blobs(200, 3)
    scores = predict_linear(layer, scaler, x_test)
    assert mean_average_precision(scores, torch.nn.functional.one_hot(y_test, 3)) > 0.95
    knn = knn_scores(x, y, x_test, 3, k=10)
    assert knn.shape == (200, 3) and torch.allclose(knn.sum(1), torch.ones(200))
    assert accuracy(knn.argmax(1), y_test) > 0.95


def test_segmentation_metrics_by_hand() -> None:
    pred = torch.tensor([0, 0, 1, 1, 1])
    target = torch.tensor([0, 1, 1, 1, -1])  # the last pixel is unlabelled
    assert accuracy(pred, target) == pytest.approx(0.75)
    ious = iou_per_class(pred, target, 3)
    assert ious[0] == pytest.approx(0.5) and ious[1] == pytest.approx(2 / 3)
    assert torch.isnan(ious[2])  # absent from prediction and truth
    assert mean_iou(pred, target, 3) == pytest.approx((0.5 + 2 / 3) / 2)
    # a class only predicted is not averaged in, but costs the class it was confused with
    assert mean_iou(torch.tensor([2, 1]), torch.tensor([0, 1]), 3) == pytest.approx(0.5)


def test_average_precision_by_hand() -> None:
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert average_precision(scores, torch.tensor([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(scores, torch.tensor([0, 0, 1])) == pytest.approx(1 / 3)
    targets = torch.tensor([[1, 0], [0, 0], [1, 0]])
    both = torch.stack([scores, scores], 1)
    assert mean_average_precision(both, targets) == pytest.approx(
        (1 + 2 / 3) / 2
    )  # class 1 skipped


def _correlated_background(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two bands whose background varies together (std 3.2 each, correlation 0.99) and a
    target offset by 1.5 in band 1 only: hidden along each band, plain along band1 - band2."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, generator=g) < 0.2).long()
    cov = torch.tensor([[10.0, 9.9], [9.9, 10.0]])
    noise = torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(cov).T
    return noise + labels[:, None] * torch.tensor([1.5, 0.0]), labels


def test_matched_filter_whitens_the_background() -> None:
    x, y = _correlated_background(4000, 0)
    x_test, y_test = _correlated_background(2000, 1)
    scores = matched_filter_scores(x, y, x_test, 3)  # class 2 never seen
    assert torch.isneginf(scores[:, 2]).all()
    target_score = scores[:, 1]
    # normalised: about 1 on targets, about 0 on the background
    assert target_score[y_test == 1].mean() == pytest.approx(1.0, abs=0.1)
    assert target_score[y_test == 0].mean() == pytest.approx(0.0, abs=0.1)
    detected = (target_score > 0.5).long()
    assert iou_per_class(detected, y_test, 2)[1] > 0.8
    # the same detector without whitening (projection on t - mu) cannot see the target
    mu = x.mean(0)
    plain = (x_test - mu) @ (x[y == 1].mean(0) - mu)
    threshold = plain[y_test == 1].mean() / 2
    assert iou_per_class((plain > threshold).long(), y_test, 2)[1] < 0.4
