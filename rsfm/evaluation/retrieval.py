"""Image-text retrieval and zero-shot classification metrics (plain torch).

Conventions of the remote-sensing retrieval benchmarks (RSICD, RSITMD, CLIP-RS): an image may
have several captions; image-to-text R@K is the fraction of images with at least one of their
captions among the K most similar texts, text-to-image R@K the fraction of captions whose image
is among the K most similar images, and the mean recall averages R@1/5/10 of both directions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_KS = (1, 5, 10)


def recall_at_k(
    similarity: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = DEFAULT_KS
) -> dict[int, float]:
    """Fraction of queries with a relevant item among their top-K results.

    Args:
        similarity: [Q, G] query-gallery scores (higher = closer).
        relevant: [Q, G] bool, True where the gallery item answers the query.
        ks: Cut-offs (K larger than the gallery counts the whole gallery).

    Returns:
        ``{K: recall in [0, 1]}``.

    Raises:
        ValueError: If the shapes differ or the query set is empty.
    """
    if similarity.shape != relevant.shape or similarity.ndim != 2:
        raise ValueError(
            f"similarity {tuple(similarity.shape)} and relevant {tuple(relevant.shape)} "
            "must be the same [queries, gallery] shape"
        )
    if similarity.shape[0] == 0:
        raise ValueError("no queries")
    largest = min(max(ks), similarity.shape[1])
    top = similarity.topk(largest, dim=1).indices  # [Q, Kmax]
    hits = relevant.gather(1, top)  # [Q, Kmax], relevance of the ranked items
    return {int(k): float(hits[:, : min(k, largest)].any(dim=1).float().mean()) for k in ks}


def group_texts_by_image(image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Deduplicate images given one image id per (image, caption) pair.

    Args:
        image_ids: [N] id of each pair's image.

    Returns:
        ``(first, text_to_image)``: positions [Ni] of each distinct image's first pair, and
        [N] the distinct-image index of every pair's caption.
    """
    unique, text_to_image = torch.unique(image_ids, sorted=True, return_inverse=True)
    positions = torch.arange(image_ids.numel(), device=image_ids.device)
    first = torch.full((unique.numel(),), image_ids.numel(), device=image_ids.device)
    first = first.scatter_reduce(0, text_to_image, positions, reduce="amin")
    return first, text_to_image


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Image-to-text and text-to-image R@K and their mean recall.

    Args:
        image_features: [Ni, D] (normalised for cosine similarity).
        text_features: [Nt, D].
        text_to_image: [Nt] index of each caption's image; None = one caption per image, in
            order (Nt = Ni).
        ks: Cut-offs.

    Returns:
        ``image_to_text/R@K``, ``text_to_image/R@K`` for each K, and ``mean_recall``.
    """
    n_images, n_texts = image_features.shape[0], text_features.shape[0]
    if text_to_image is None:
        if n_images != n_texts:
            raise ValueError(f"{n_images} images and {n_texts} texts need text_to_image")
        text_to_image = torch.arange(n_texts, device=text_features.device)
    text_to_image = text_to_image.to(text_features.device).long()
    similarity = image_features.float() @ text_features.float().T  # [Ni, Nt]
    images = torch.arange(n_images, device=similarity.device)
    relevant = text_to_image[None, :] == images[:, None]  # [Ni, Nt]
    image_to_text = recall_at_k(similarity, relevant, ks)
    text_to_image_recall = recall_at_k(similarity.T, relevant.T, ks)
    metrics = {f"image_to_text/R@{k}": v for k, v in image_to_text.items()}
    metrics.update({f"text_to_image/R@{k}": v for k, v in text_to_image_recall.items()})
    values = list(image_to_text.values()) + list(text_to_image_recall.values())
    metrics["mean_recall"] = sum(values) / len(values)
    return metrics


def zero_shot_logits(
    image_features: torch.Tensor, class_embeddings: torch.Tensor, scale: float = 100.0
) -> torch.Tensor:
    """Class logits [B, K] = scale x cosine(image, class) (features normalised here)."""
    images = torch.nn.functional.normalize(image_features.float(), dim=-1)
    classes = torch.nn.functional.normalize(class_embeddings.float(), dim=-1)
    return scale * images @ classes.T


def zero_shot_accuracy(
    image_features: torch.Tensor,
    class_embeddings: torch.Tensor,
    labels: torch.Tensor,
    top_k: int = 1,
) -> float:
    """Fraction of images whose label is among the ``top_k`` most similar class embeddings.

    Args:
        image_features: [B, D].
        class_embeddings: [K, D], one per class (e.g. mean of prompt-template embeddings).
        labels: [B] class indices.
        top_k: Cut-off.
    """
    if labels.numel() == 0:
        raise ValueError("no labelled images")
    logits = zero_shot_logits(image_features, class_embeddings)
    top = logits.topk(min(top_k, logits.shape[1]), dim=1).indices
    return float((top == labels.to(top.device).long()[:, None]).any(dim=1).float().mean())
