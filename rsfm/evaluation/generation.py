"""Metrics of generated images: FID / KID, CLIP score and zero-shot classification accuracy.

These are the three numbers Text2Earth reports (RSICD: FID 24.49, zero-shot OA 90.26 %, CLIP
score 25.62). FID and KID are torchmetrics' implementations with an injectable feature
extractor (torchmetrics' default Inception weights are a download; any ``nn.Module`` mapping
images to ``[N, D]`` features works: an open_clip image tower, an rsfm encoder, or the
Inception network from a local weights file). CLIP score and zero-shot accuracy take any
open_clip model (``encode_image`` / ``encode_text``) and its tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FeatureExtractor(nn.Module):
    """Wrap a callable ``images -> features`` as the module torchmetrics expects.

    Args:
        encode: Maps a float batch ``[N, C, H, W]`` to features ``[N, D]`` (or more dims,
            pooled to ``[N, D]`` by averaging).
        num_features: Feature size D.
        preprocess: Optional callable applied to the images first (resize, normalise, bands).
    """

    def __init__(
        self,
        encode: Callable[[torch.Tensor], torch.Tensor],
        num_features: int,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.encode, self.preprocess = encode, preprocess
        self.num_features = int(num_features)
        if isinstance(encode, nn.Module):
            self.encoder = encode  # registered so .to(device) moves it

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[N, num_features]`` in float64-safe float32."""
        x = images.float()
        if self.preprocess is not None:
            x = self.preprocess(x)
        features = self.encode(x)
        if features.ndim > 2:
            features = features.flatten(2).mean(-1)
        return features.float()


def _batches(images: torch.Tensor | Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    return [images] if isinstance(images, torch.Tensor) else images


def fid_kid(
    real: torch.Tensor | Iterable[torch.Tensor],
    fake: torch.Tensor | Iterable[torch.Tensor],
    extractor: nn.Module,
    kid_subset_size: int = 50,
    kid_subsets: int = 100,
) -> dict[str, float]:
    """FID and KID (torchmetrics) between two image sets with a given feature extractor.

    Args:
        real: Reference images ``[N, C, H, W]`` (or batches of them), floats.
        fake: Generated images, same layout.
        extractor: ``nn.Module`` images -> ``[N, D]`` with a ``num_features`` attribute (see
            :class:`FeatureExtractor`).
        kid_subset_size: KID subset size (clipped to the smaller set's size).
        kid_subsets: Number of KID subsets.

    Returns:
        ``{"fid", "kid_mean", "kid_std", "n_real", "n_fake"}``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = list(_batches(real)), list(_batches(fake))
    n_real, n_fake = sum(len(b) for b in real), sum(len(b) for b in fake)
    subset = max(2, min(kid_subset_size, n_real, n_fake))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=True)
    kid = KernelInceptionDistance(
        feature=extractor, normalize=True, subset_size=subset, subsets=kid_subsets
    )
    fid.set_dtype(torch.float64)
    for metric in (fid, kid):
        for batch in real:
            metric.update(batch.float(), real=True)
        for batch in fake:
            metric.update(batch.float(), real=False)
    kid_mean, kid_std = kid.compute()
    return {
        "fid": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "n_real": n_real,
        "n_fake": n_fake,
    }


def clip_preprocess(
    size: int,
    rgb: Sequence[int] = (0, 1, 2),
    value_range: tuple[float, float] = (0.0, 1.0),
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images -> CLIP input: pick RGB bands, map ``value_range`` to 0..1, resize, normalise."""
    mean_t = torch.tensor(mean)[:, None, None]
    std_t = torch.tensor(std)[:, None, None]
    low, high = value_range

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        x = images[:, list(rgb)].float()
        x = ((x - low) / (high - low)).clamp(0, 1)
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        return (x - mean_t.to(x)) / std_t.to(x)

    return preprocess


class ClipScorer:
    """Image and text embeddings of an open_clip model for CLIP score and zero-shot accuracy.

    Args:
        model: An open_clip model (``encode_image``, ``encode_text``).
        tokenizer: Its tokenizer (``open_clip.get_tokenizer(...)`` or ``SimpleTokenizer``).
        preprocess: Images -> model input (see :func:`clip_preprocess`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Callable[[list[str]], torch.Tensor],
        preprocess: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.model, self.tokenizer, self.preprocess = model, tokenizer, preprocess

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``[N, D]``."""
        return F.normalize(self.model.encode_image(self.preprocess(images)).float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``[N, D]``."""
        return F.normalize(self.model.encode_text(self.tokenizer(list(texts))).float(), dim=-1)


def clip_score(images: torch.Tensor, captions: Sequence[str], scorer: ClipScorer) -> float:
    """CLIP score ``100 * mean(max(cos(image, caption), 0))`` (Hessel et al. 2021's scale).

    Text2Earth's 25.62 on RSICD is on this scale with its remote-sensing CLIP.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images for {len(captions)} captions")
    cosine = (scorer.image_embeddings(images) * scorer.text_embeddings(captions)).sum(-1)
    return float(100.0 * cosine.clamp_min(0).mean())


def zero_shot_accuracy(
    images: torch.Tensor,
    labels: Sequence[str],
    class_names: Sequence[str],
    scorer: ClipScorer,
    template: str = "a satellite image of {}",
) -> dict[str, Any]:
    """Overall accuracy of classifying images among ``class_names`` by CLIP similarity.

    Args:
        images: Generated images ``[N, C, H, W]``.
        labels: The class each image was generated for.
        class_names: Candidate classes.
        scorer: The CLIP used as zero-shot classifier.
        template: Prompt template per class.

    Returns:
        ``{"accuracy", "predictions": list[str], "per_class": {class: accuracy}}``.
    """
    unknown = sorted(set(labels) - set(class_names))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(class_names)}")
    texts = scorer.text_embeddings([template.format(c.replace("_", " ")) for c in class_names])
    predicted = (scorer.image_embeddings(images) @ texts.T).argmax(-1).tolist()
    names = [class_names[i] for i in predicted]
    hits = [p == t for p, t in zip(names, labels, strict=True)]
    per_class = {
        c: sum(h for h, t in zip(hits, labels, strict=True) if t == c) / labels.count(c)
        for c in class_names
        if c in labels
    }
    return {"accuracy": sum(hits) / len(hits), "predictions": names, "per_class": per_class}
