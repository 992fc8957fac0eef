"""Segmentation quality assessment (RS-SQA-style): predict a segmenter's accuracy on an image.

Two branches meet in a cross-gating block, then a two-layer MLP regresses a score in [0, 1]::

    image ──▶ frozen semantic encoder (CLIP image tower, or a SmartiesEncoder) ──▶ s [Ds]
    segmenter features (pooled encoder features + prediction statistics)      ──▶ f [F]
    a = W_s s,  b = W_f f                       (after per-feature standardisation)
    a' = a ⊙ σ(G_b b),  b' = b ⊙ σ(G_a a)      (each branch gates the other)
    score = σ(MLP([a', b']))

The segmenter side is computed by :func:`segmenter_features` for any segmentation model (a
:class:`~rsfm.models.finetune.FineTuneModel`, a module offering ``segment_with_features``, or
any ``(image, wavelengths) -> logits`` module). ``use_semantic=False`` gives the
segmenter-features-only baseline (same MLP, no semantic branch).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from rsfm.band_stats import BandStats
from rsfm.models.registry import (
    create_model,
    list_models,
    register_model,
    register_to_config,
)
from rsfm.models.smarties import SmartiesEncoder
from rsfm.sensors import get_sensor

FEATURE_KEYS = ("encoder", "prediction")
SEMANTIC_FALLBACK = "smarties_tiny"


# ----------------------------------------------------------------------------- segmenter side
def prediction_features(logits: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Statistics of a dense prediction: ``[B, K, H, W]`` logits -> ``[B, 2K + 2]``.

    Per image, over valid pixels: the mean softmax probability of each class (K), the share of
    pixels predicted as each class (K), the mean top-1 probability and the mean normalised
    entropy (uncertainty). These are what the segmenter "thinks" the image holds.
    """
    probs = logits.float().softmax(dim=1)  # [B, K, H, W]
    num_classes = probs.shape[1]
    weight = torch.ones_like(probs[:, 0]) if valid is None else valid.to(probs.dtype)
    weight = weight / weight.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)  # [B, H, W]
    mean_probs = (probs * weight[:, None]).sum(dim=(2, 3))
    hard = F.one_hot(probs.argmax(dim=1), num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    shares = (hard * weight[:, None]).sum(dim=(2, 3))
    confidence = (probs.amax(dim=1) * weight).sum(dim=(1, 2))
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(dim=1)
    entropy = (entropy * weight).sum(dim=(1, 2)) / math.log(max(2, num_classes))
    return torch.cat([mean_probs, shares, confidence[:, None], entropy[:, None]], dim=1)


@torch.no_grad()
def segmenter_features(
    model: nn.Module,
    image: torch.Tensor,
    wavelengths: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a segmenter once; return its logits and its pooled intermediate features.

    Args:
        model: A ``FineTuneModel`` with a dense head, a module with
            ``segment_with_features(image, wavelengths) -> (logits, pooled [B, D])``, or any
            module ``(image, wavelengths) -> [B, K, H, W]`` (its ``encoder.forward_pooled`` is
            used when present).
        image: [B, C, H, W], normalised as the segmenter expects.
        wavelengths: [C] or [B, C] in nm.
        valid: Optional bool [B, H, W]; invalid pixels are left out of the prediction statistics.

    Returns:
        ``(logits [B, K, H, W], {"encoder": [B, D], "prediction": [B, 2K + 2]})``; ``encoder``
        is the mean of the last feature map fed to the head (``[B, 0]`` when unavailable).
    """
    if hasattr(model, "segment_with_features"):
        logits, pooled = model.segment_with_features(image, wavelengths)
    elif hasattr(model, "feature_maps") and getattr(model, "dense", False):
        maps = model.feature_maps(image, wavelengths)
        logits = model.head(maps, image.shape[-2:])
        pooled = maps[-1].mean(dim=(2, 3))
    else:
        logits = model(image, wavelengths)
        encoder = getattr(model, "encoder", None)
        if encoder is not None and hasattr(encoder, "forward_pooled"):
            pooled = encoder.forward_pooled(image, wavelengths, pool="avg")
        else:
            pooled = logits.new_zeros(logits.shape[0], 0)
    if logits.ndim != 4:
        raise ValueError(f"a segmenter must return [B, K, H, W] logits, got {tuple(logits.shape)}")
    features = {"encoder": pooled.float(), "prediction": prediction_features(logits, valid)}
    return logits, features


@dataclass
class Segmenter:
    """A segmentation model under assessment.

    Attributes:
        id: Name stored in the dataset (hub name, folder name or your label).
        model: Module ``(image, wavelengths) -> [B, K, H, W]`` (see
            :func:`rsfm.models.sqa.segmenter_features` for the features it yields).
        normalization: Statistics the model expects; None = the dataset's statistics.
        source: How to get it again: ``hub:<name>``, ``folder:<path>`` or a recipe string.
    """

    id: str
    model: nn.Module
    normalization: BandStats | None = None
    source: str = "memory"


def _card_stats(model: nn.Module) -> list[BandStats]:
    """Statistics of a hub model's typed card, those of its last-stage sensors first."""
    card = getattr(model, "rsfm_card", None)
    if card is None:
        return []
    first = [card.normalization[s] for s in card.sensors if s in card.normalization]
    return first + [v for k, v in card.normalization.items() if k not in card.sensors]


def resolve_segmenters(
    specs: Sequence[str | nn.Module | Segmenter | tuple[str, nn.Module]], hub: str | None = None
) -> list[Segmenter]:
    """Segmenters from hub names / entry folders, ``(id, module)`` pairs or modules with an id.

    Raises:
        ValueError: For a module without ``segmenter_id`` or duplicate ids.
    """
    out: list[Segmenter] = []
    for spec in specs:
        if isinstance(spec, Segmenter):
            out.append(spec)
        elif isinstance(spec, tuple):
            out.append(Segmenter(spec[0], spec[1]))
        elif isinstance(spec, nn.Module):
            name = getattr(spec, "segmenter_id", None)
            if not name:
                raise ValueError(
                    f"an in-memory {type(spec).__name__} needs an id: pass (id, model) or set "
                    "model.segmenter_id"
                )
            out.append(Segmenter(str(name), spec))
        else:
            from rsfm.hub import load  # the hub is only needed for named segmenters

            model = load(spec, hub=hub)
            stats = _card_stats(model)
            is_folder = Path(spec).expanduser().is_dir()
            ident = Path(spec).name if is_folder else str(spec)
            source = f"folder:{Path(spec).resolve()}" if is_folder else f"hub:{spec}"
            out.append(Segmenter(ident, model, stats[0] if stats else None, source))
    ids = [s.id for s in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"segmenter ids must be unique, got {ids}")
    return out


class ConfusedSegmenter(nn.Module):
    """A segmenter whose predictions of two classes are swapped (a content-dependent error).

    The corruption follows the image's content: pixels the wrapped model assigns to
    ``classes[0]`` become ``classes[1]`` and vice versa, so the damage grows with the share of
    those classes in the image. Features are the wrapped model's (its encoder is unchanged).

    Args:
        model: A dense ``FineTuneModel``.
        classes: The two class ids whose logits are swapped.
    """

    def __init__(self, model: nn.Module, classes: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.classes = (int(classes[0]), int(classes[1]))

    def _swap(self, logits: torch.Tensor) -> torch.Tensor:
        order = list(range(logits.shape[1]))
        a, b = self.classes
        order[a], order[b] = b, a
        return logits[:, order]

    def segment_with_features(
        self, image: torch.Tensor, wavelengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupted logits ``[B, K, H, W]`` and the wrapped encoder's pooled features."""
        logits, feats = segmenter_features(self.model, image, wavelengths)
        return self._swap(logits), feats["encoder"]

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Corrupted logits ``[B, K, H, W]``."""
        return self._swap(self.model(image, wavelengths))


# ----------------------------------------------------------------------------- semantic side
class PooledImageEncoder(nn.Module):
    """Adapts an image encoder to ``(image, wavelengths) -> [B, D]`` (kept frozen by its owner).

    Understands a ``SmartiesEncoder`` (or a model whose ``.encoder`` is one: pooled tokens),
    open_clip-style towers (``encode_image``; ``wavelengths`` passed when the method takes it)
    and plain callables ``(image, wavelengths) -> [B, D]``.

    Args:
        encoder: The wrapped module.
        pool: ``avg`` (mean of patch tokens) or ``cls`` for SmartiesEncoders.
        dim: Output size D (found from ``embed_dim`` / ``output_dim`` when omitted).
    """

    def __init__(self, encoder: nn.Module, pool: str = "avg", dim: int | None = None) -> None:
        super().__init__()
        inner = getattr(encoder, "encoder", None)
        self.encoder = inner if isinstance(inner, SmartiesEncoder) else encoder
        self.pool = pool
        found = dim or _output_dim(self.encoder)
        if found is None:
            raise ValueError(
                f"cannot tell the feature size of {type(encoder).__name__}; pass semantic_dim"
            )
        self.dim = int(found)

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Pooled image features ``[B, D]``."""
        encoder = self.encoder
        if isinstance(encoder, SmartiesEncoder):
            return encoder.forward_pooled(image, wavelengths, pool=self.pool)
        if hasattr(encoder, "encode_image"):
            params = inspect.signature(encoder.encode_image).parameters
            if "wavelengths" in params:
                return encoder.encode_image(image, wavelengths=wavelengths)
            return encoder.encode_image(image)
        return encoder(image, wavelengths)


def _output_dim(module: nn.Module) -> int | None:
    for owner in (module, getattr(module, "visual", None)):
        for name in ("output_dim", "embed_dim"):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                return value
    return None


def resolve_semantic_name(name: str) -> str:
    """``auto`` -> the project's smallest registered CLIP image tower, else ``smarties_tiny``."""
    if name != "auto":
        return name
    clips = list_models("*clip*tiny*") or list_models("*clip*")
    return clips[0] if clips else SEMANTIC_FALLBACK


# ----------------------------------------------------------------------------- fusion
class CrossGating(nn.Module):
    """Each branch gates the other: ``[a ⊙ σ(W_b b), b ⊙ σ(W_a a)]`` -> ``[B, 2H]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate_a = nn.Linear(dim, dim)  # computed from b, applied to a
        self.gate_b = nn.Linear(dim, dim)  # computed from a, applied to b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Fused features of two ``[B, H]`` branches."""
        return torch.cat([a * torch.sigmoid(self.gate_a(b)), b * torch.sigmoid(self.gate_b(a))], 1)


class SQAModel(nn.Module):
    """Segmentation quality assessor: semantic image features x segmenter features -> [0, 1].

    Args:
        segmenter_dim: Size F of the segmenter feature vector (16 = ``prediction`` features of
            7 classes).
        feature_keys: Which :func:`segmenter_features` outputs form that vector, in order.
        semantic_encoder: Registered image encoder for the semantic branch (``auto``: the
            project's CLIP when registered, else ``smarties_tiny``), or an ``nn.Module``
            ``(image, wavelengths) -> [B, D]`` injected directly (not rebuildable from a config).
        semantic_args: Overrides of the registered encoder's init args.
        semantic_dim: Feature size of an injected encoder without ``embed_dim``/``output_dim``.
        semantic_pool: ``avg`` or ``cls`` pooling of SmartiesEncoder tokens.
        hidden_dim: Width H of both branch projections and of the MLP.
        dropout: Dropout inside the MLP.
        use_semantic: False builds the baseline that sees segmenter features only.
    """

    @register_to_config
    def __init__(
        self,
        segmenter_dim: int = 16,
        feature_keys: Sequence[str] = ("prediction",),
        semantic_encoder: str | nn.Module = "auto",
        semantic_args: dict[str, Any] | None = None,
        semantic_dim: int | None = None,
        semantic_pool: str = "avg",
        hidden_dim: int = 64,
        dropout: float = 0.1,
        use_semantic: bool = True,
    ) -> None:
        super().__init__()
        self.use_semantic = use_semantic
        self.semantic: PooledImageEncoder | None = None
        name: str | None = None
        if use_semantic:
            if isinstance(semantic_encoder, nn.Module):
                module, name = semantic_encoder, f"custom:{type(semantic_encoder).__name__}"
            else:
                name = resolve_semantic_name(semantic_encoder)
                module = create_model(name, **dict(semantic_args or {}))
            self.semantic = PooledImageEncoder(module, semantic_pool, semantic_dim)
            self.semantic.requires_grad_(False)
            self.semantic_norm = nn.BatchNorm1d(self.semantic.dim, affine=False)
            self.semantic_proj = nn.Linear(self.semantic.dim, hidden_dim)
            self.fusion = CrossGating(hidden_dim)
        self.segmenter_norm = nn.BatchNorm1d(segmenter_dim, affine=False)
        self.segmenter_proj = nn.Linear(segmenter_dim, hidden_dim)
        width = 2 * hidden_dim if use_semantic else hidden_dim
        self.head = Mlp(width, hidden_dim, 1, drop=dropout)  # the 2-layer MLP (timm)
        self.segmenter_dim = segmenter_dim
        self.feature_keys = list(feature_keys)
        unknown = [k for k in self.feature_keys if k not in FEATURE_KEYS]
        if unknown or not self.feature_keys:
            raise ValueError(f"feature_keys must be a non-empty subset of {FEATURE_KEYS}")
        # normalised: the resolved encoder name (a module: "custom:<class>"), None args -> {}
        record = self.init_args
        record.update(semantic_encoder=name, semantic_args=record["semantic_args"] or {})

    def train(self, mode: bool = True) -> SQAModel:
        """Like ``nn.Module.train``; the frozen semantic encoder always stays in eval mode."""
        super().train(mode)
        if self.semantic is not None:
            self.semantic.eval()
        return self

    def example_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``forward`` kwargs: segmenter features and a Sentinel-2 image (registry tests)."""
        sensor = get_sensor("sentinel2_l1c")
        return {
            "segmenter_features": torch.rand(batch_size, self.segmenter_dim),
            "image": torch.randn(batch_size, len(sensor), 32, 32),
            "wavelengths": torch.from_numpy(sensor.wavelengths),
        }

    def segmenter_vector(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's input ``[B, F]`` from :func:`segmenter_features` output (zero-padded)."""
        vector = torch.cat([features[k].float() for k in self.feature_keys], dim=1)
        if vector.shape[1] < self.segmenter_dim:  # as SQADataset pads heterogeneous segmenters
            vector = F.pad(vector, (0, self.segmenter_dim - vector.shape[1]))
        return vector

    @torch.no_grad()
    def semantic_features(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Frozen semantic features ``[B, Ds]`` (cacheable: they never change in training)."""
        if self.semantic is None:
            raise RuntimeError("this SQA model has no semantic branch (use_semantic=False)")
        return self.semantic(image, wavelengths).float()

    def forward(
        self,
        segmenter_features: torch.Tensor,
        image: torch.Tensor | None = None,
        wavelengths: torch.Tensor | None = None,
        semantic: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted accuracy in [0, 1].

        Args:
            segmenter_features: ``[B, F]`` from :func:`segmenter_features` (concatenated).
            image: ``[B, C, H, W]`` normalised image (semantic branch), unless ``semantic``.
            wavelengths: ``[C]`` or ``[B, C]`` in nm.
            semantic: Precomputed ``semantic_features`` ``[B, Ds]``.

        Returns:
            Scores ``[B]``.
        """
        if segmenter_features.shape[-1] != self.segmenter_dim:
            raise ValueError(
                f"segmenter features have {segmenter_features.shape[-1]} values; this SQA model "
                f"was built for {self.segmenter_dim}"
            )
        b = self.segmenter_proj(self.segmenter_norm(segmenter_features.float()))
        if self.semantic is None:
            fused = b
        else:
            if semantic is None:
                if image is None or wavelengths is None:
                    raise ValueError("the semantic branch needs `image` and `wavelengths`")
                semantic = self.semantic_features(image, wavelengths)
            a = self.semantic_proj(self.semantic_norm(semantic.float()))
            fused = self.fusion(a, b)
        return torch.sigmoid(self.head(fused)).squeeze(-1)


# ----------------------------------------------------------------------------- variants
@register_model
def sqa_tiny(**overrides: Any) -> SQAModel:
    """Test-size SQA: frozen ``smarties_tiny`` semantic encoder, 64-d fusion, tiny segmenters."""
    defaults = dict(segmenter_dim=16, semantic_encoder="smarties_tiny", hidden_dim=64)
    return SQAModel(**{**defaults, **overrides})


@register_model
def sqa_base(**overrides: Any) -> SQAModel:
    """SQA on the project's CLIP image tower when registered (else ``smarties_tiny``), 256-d."""
    defaults = dict(segmenter_dim=16, semantic_encoder="auto", hidden_dim=256, dropout=0.2)
    return SQAModel(**{**defaults, **overrides})
