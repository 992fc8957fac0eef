"""Multi-modal co-learning (MDiCo-style): modality-specific and shared encoders per modality.

Every modality ``m`` (e.g. Sentinel-2 and Sentinel-1 of the same place) has two encoders of the
same architecture, each giving one vector per sample (``[B, E]``):

- the **specific** encoder's output is split in two halves (MDiCo): ``specific`` ``[B, E/2]``
  feeds the predictions, ``unused`` ``[B, E/2]`` gives modality-only information room to live
  outside the task features;
- the **shared** encoder's output goes through a projection ``Linear + BatchNorm + ReLU`` to
  ``shared`` ``[B, E/2]``, the space where the modalities are aligned (NT-Xent in the task).

Heads: a main head per modality on ``concat[specific, shared]`` (``[B, K]``), one auxiliary head
(shared by all modalities) applied to each part, and modality-discrimination heads on the
specific halves (``[B, M]``). Any subset of modalities predicts (:meth:`CoLearningModel.predict`):
the available ``shared`` parts are averaged, each available modality's main head reads its own
``specific`` part with that average, and the logits are averaged. A single modality is the
all-but-one missing-modality case MDiCo targets.

Encoders come from the registry: a SMARTIES encoder or MAE (pooled: ``cls`` or ``avg`` of patch
tokens; images ``[B, C, H, W]``) or :class:`TempCNNEncoder` for time series ``[B, C, T]``.

Reference: F. Mena et al., "Multi-modal co-learning for Earth observation: enhancing
single-modality models via modality collaboration", Machine Learning 114 (2025).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from rsfm.models.registry import create_model, register_model, register_to_config
from rsfm.models.smarties import SmartiesEncoder
from rsfm.sensors import get_sensor

ModalityInputs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
WAVELENGTH_TOLERANCE_NM = 1.0


# --------------------------------------------------------------------------- encoders
class TempCNNEncoder(nn.Module):
    """TempCNN (Pelletier et al. 2019) for band time series: 1-D convolutions over time.

    Args:
        in_channels: Bands per time step C.
        seq_len: Time steps T (the flattening dense layer needs a fixed length).
        embed_dim: Output vector size E.
        hidden: Channels of the convolution blocks.
        depth: Number of ``Conv1d + BatchNorm + ReLU + Dropout`` blocks.
        kernel_size: Temporal kernel size (odd).
        dropout: Dropout probability.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 2,
        seq_len: int = 12,
        embed_dim: int = 64,
        hidden: int = 64,
        depth: int = 2,
        kernel_size: int = 5,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            layers += [
                nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            channels = hidden
        self.convolutions = nn.Sequential(*layers)
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(hidden * seq_len, embed_dim),
            nn.BatchNorm1d(embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.in_channels = in_channels
        self.seq_len = seq_len
        self.embed_dim = embed_dim

    def forward(
        self, series: torch.Tensor, wavelengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> ``[B, E]``; ``wavelengths`` (``[C]``/``[B, C]``) only checks C."""
        if series.ndim != 3 or series.shape[1:] != (self.in_channels, self.seq_len):
            raise ValueError(
                f"TempCNN expects [B, {self.in_channels}, {self.seq_len}], got {list(series.shape)}"
            )
        if wavelengths is not None and wavelengths.shape[-1] != self.in_channels:
            raise ValueError(
                f"{wavelengths.shape[-1]} wavelengths for a TempCNN of {self.in_channels} bands"
            )
        return self.dense(self.convolutions(series))


class PooledSmartiesEncoder(nn.Module):
    """A SMARTIES encoder giving one vector per image (``cls`` token or patch-token mean).

    Args:
        encoder: The spectrum-aware encoder.
        pool: ``cls`` or ``avg``.
    """

    def __init__(self, encoder: SmartiesEncoder, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("cls", "avg"):
            raise ValueError(f"unknown pool {pool!r}; expected 'cls' or 'avg'")
        self.encoder = encoder
        self.pool = pool
        self.embed_dim = encoder.embed_dim

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` and wavelengths ``[C]``/``[B, C]`` -> ``[B, E]``."""
        return self.encoder.forward_pooled(image, wavelengths, pool=self.pool)


def build_modality_encoder(spec: Mapping[str, Any]) -> nn.Module:
    """One encoder of a modality spec (``encoder``, ``encoder_args``, ``pool``).

    A registered SMARTIES encoder or MAE (its ``.encoder``) is pooled; any other registered
    module must map ``(x, wavelengths)`` to ``[B, E]`` and expose ``embed_dim``.

    Raises:
        TypeError: If the registered model is neither.
    """
    model = create_model(spec["encoder"], **dict(spec.get("encoder_args") or {}))
    inner = getattr(model, "encoder", model)
    if isinstance(inner, SmartiesEncoder):
        return PooledSmartiesEncoder(inner, spec.get("pool", "avg"))
    if isinstance(getattr(model, "embed_dim", None), int):
        return model
    raise TypeError(
        f"encoder {spec['encoder']!r} builds a {type(model).__name__}: neither a SMARTIES "
        "encoder/MAE nor a module with `embed_dim` returning [B, E]"
    )


# --------------------------------------------------------------------------- the model
class CoLearningModel(nn.Module):
    """Per-modality specific + shared encoders with MDiCo heads (see the module docstring).

    Args:
        modalities: Ordered ``{name: spec}``; a spec holds ``encoder`` (registered name),
            optional ``encoder_args``, ``pool`` (SMARTIES: ``avg``/``cls``) and ``sensor`` (a
            registered sensor, lets :meth:`forward` recognise the modality by wavelength).
        num_outputs: Classes or regression outputs K.
        split_specific: Split the specific output into ``specific`` and ``unused`` halves
            (MDiCo); otherwise the whole output is ``specific`` and ``shared`` has size E.
        dropout: Dropout before the heads.
        one_shared_encoder: One shared encoder for every modality (its weights serve all; a
            spectrum-aware SMARTIES encoder reads any band set) instead of one per modality
            (MDiCo). Every modality must then name the same encoder, args and pooling.
    """

    @register_to_config
    def __init__(
        self,
        modalities: Mapping[str, Mapping[str, Any]],
        num_outputs: int = 7,
        split_specific: bool = True,
        dropout: float = 0.0,
        one_shared_encoder: bool = False,
    ) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("give at least one modality")
        self.modality_names = list(modalities)
        self.specific_encoders = nn.ModuleDict()
        self.shared_encoders = nn.ModuleDict()
        encoder_keys = {
            (s["encoder"], repr(s.get("encoder_args")), s.get("pool")) for s in modalities.values()
        }
        if one_shared_encoder and len(encoder_keys) > 1:
            raise ValueError("one_shared_encoder needs the same encoder, args and pool everywhere")
        common = (
            build_modality_encoder(next(iter(modalities.values()))) if one_shared_encoder else None
        )
        for name, spec in modalities.items():
            self.specific_encoders[name] = build_modality_encoder(spec)
            # one_shared_encoder: the same module under every name (its parameters counted once)
            self.shared_encoders[name] = (
                common if common is not None else build_modality_encoder(spec)
            )
        widths = {n: e.embed_dim for n, e in self.specific_encoders.items()}
        if len(set(widths.values())) != 1:
            raise ValueError(f"encoders must share one output size E (set embed_dim): {widths}")
        width = next(iter(widths.values()))
        if split_specific and width % 2:
            raise ValueError(f"split_specific needs an even encoder output size, got {width}")
        dim = width // 2 if split_specific else width
        self.feature_dim = dim
        self.shared_projections = nn.ModuleDict(
            {
                n: nn.Sequential(nn.Linear(width, dim), nn.BatchNorm1d(dim), nn.ReLU())
                for n in self.modality_names
            }
        )
        self.dropout = nn.Dropout(dropout)
        count = len(self.modality_names)
        self.main_heads = nn.ModuleDict(
            {n: nn.Linear(2 * dim, num_outputs) for n in self.modality_names}
        )
        self.auxiliary_head = nn.Linear(dim, num_outputs)
        self.modality_head = nn.Linear(dim, count)
        self.unused_modality_head = nn.Linear(dim, count) if split_specific else None
        self.num_outputs = num_outputs
        self.split_specific = split_specific
        self.sensors = {n: s.get("sensor") for n, s in modalities.items()}

    # ------------------------------------------------------------------ representations
    def encode(self, inputs: ModalityInputs) -> dict[str, dict[str, torch.Tensor]]:
        """Representations of the given modalities.

        Args:
            inputs: ``{name: (x, wavelengths)}`` for any subset of the modalities.

        Returns:
            ``{name: {"specific": [B, d], "unused": [B, d] (split only), "shared": [B, d]}}``.

        Raises:
            KeyError: For a modality the model does not have.
        """
        unknown = sorted(set(inputs) - set(self.modality_names))
        if unknown:
            raise KeyError(f"unknown modalities {unknown}; the model has {self.modality_names}")
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for name in self.modality_names:
            if name not in inputs:
                continue
            x, wavelengths = inputs[name]
            specific = self.specific_encoders[name](x, wavelengths)  # [B, E]
            shared = self.shared_projections[name](self.shared_encoders[name](x, wavelengths))
            if self.split_specific:
                specific, unused = specific.chunk(2, dim=1)  # [B, d] each
                parts[name] = {"specific": specific, "unused": unused, "shared": shared}
            else:
                parts[name] = {"specific": specific, "shared": shared}
        return parts

    def heads(self, parts: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, Any]:
        """Everything the co-learning losses need, per modality, from :meth:`encode` output.

        Returns:
            ``{"logits", "aux_specific", "aux_shared", "modality_specific", "modality_unused",
            "specific", "shared"}``, each ``{name: tensor}``: logits ``[B, K]``, modality
            logits ``[B, M]`` (``modality_unused`` empty without the split), features
            ``[B, d]``.
        """
        keys = ("logits", "aux_specific", "aux_shared", "modality_specific", "modality_unused")
        out: dict[str, dict[str, torch.Tensor]] = {k: {} for k in (*keys, "specific", "shared")}
        for name, part in parts.items():
            specific, shared = self.dropout(part["specific"]), self.dropout(part["shared"])
            out["logits"][name] = self.main_heads[name](torch.cat([specific, shared], dim=1))
            out["aux_specific"][name] = self.auxiliary_head(specific)
            out["aux_shared"][name] = self.auxiliary_head(shared)
            out["modality_specific"][name] = self.modality_head(part["specific"])
            if self.unused_modality_head is not None:
                out["modality_unused"][name] = self.unused_modality_head(part["unused"])
            out["specific"][name] = part["specific"]
            out["shared"][name] = part["shared"]
        return out

    def forward_train(self, inputs: ModalityInputs) -> dict[str, Any]:
        """:meth:`heads` of :meth:`encode`: the training outputs of the given modalities."""
        return self.heads(self.encode(inputs))

    def predict_from_parts(self, parts: Mapping[str, Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """Logits ``[B, K]`` from the :meth:`encode` output of any non-empty modality subset.

        The shared parts are averaged; each modality's main head reads ``concat[its specific
        part, the average]``; the logits are averaged over the modalities.
        """
        if not parts:
            raise ValueError(f"give at least one of the modalities {self.modality_names}")
        shared = torch.stack([p["shared"] for p in parts.values()]).mean(dim=0)
        logits = [
            self.main_heads[name](torch.cat([part["specific"], shared], dim=1))
            for name, part in parts.items()
        ]
        return torch.stack(logits).mean(dim=0)

    def predict(self, inputs: ModalityInputs) -> torch.Tensor:
        """Logits ``[B, K]`` from any non-empty subset of the modalities (missing ones absent)."""
        if not inputs:
            raise ValueError(f"give at least one of the modalities {self.modality_names}")
        return self.predict_from_parts(self.encode(inputs))

    def modality_of(self, wavelengths: torch.Tensor) -> str:
        """The modality whose sensor has these band wavelengths (``[C]`` or ``[B, C]``).

        Raises:
            ValueError: When no single modality matches (give the name explicitly).
        """
        if len(self.modality_names) == 1:
            return self.modality_names[0]
        waves = wavelengths.detach().reshape(-1, wavelengths.shape[-1])[0].cpu().numpy()
        waves = waves[np.isfinite(waves)]
        matches = []
        for name, sensor in self.sensors.items():
            if not sensor:
                continue
            known = get_sensor(sensor).wavelengths.astype(float)
            if all(np.abs(known - w).min() <= WAVELENGTH_TOLERANCE_NM for w in waves):
                matches.append(name)
        if len(matches) != 1:
            raise ValueError(
                f"wavelengths {waves.tolist()} match modalities {matches} of "
                f"{self.modality_names}; pass the modality name"
            )
        return matches[0]

    def tile_predict_fn(
        self, wavelengths: torch.Tensor | np.ndarray, output: str
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``rsfm tile``'s adapter: window-level classes of the input's modality (see
        :func:`window_predict_fn`; raw outputs for ``values``, else probabilities)."""
        return window_predict_fn(self, wavelengths, probabilities=output != "values")

    def example_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        """Random :meth:`forward` inputs for the first modality (smoke tests, tracing)."""
        name = self.modality_names[0]
        encoder = self.specific_encoders[name]
        sensor = get_sensor(self.sensors.get(name) or "sentinel2_l1c")
        if isinstance(encoder, TempCNNEncoder):
            shape: tuple[int, ...] = (batch_size, encoder.in_channels, encoder.seq_len)
            count = encoder.in_channels
        else:
            size = int(getattr(getattr(encoder, "encoder", None), "img_size", 32))
            count = len(sensor)
            shape = (batch_size, count, size, size)
        waves = torch.as_tensor(sensor.wavelengths, dtype=torch.float32)
        if len(waves) != count:
            waves = torch.full((count,), float("nan"))
        return {"image": torch.randn(shape), "wavelengths": waves, "modality": name}

    def forward(
        self, image: torch.Tensor, wavelengths: torch.Tensor, modality: str | None = None
    ) -> torch.Tensor:
        """Single-modality logits ``[B, K]`` (the modality found from the wavelengths if None)."""
        name = modality or self.modality_of(wavelengths)
        return self.predict({name: (image, wavelengths)})


def window_predict_fn(
    model: CoLearningModel,
    wavelengths: torch.Tensor | np.ndarray,
    modality: str | None = None,
    probabilities: bool = True,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``predict_fn`` for :func:`rsfm.inference.tile_raster`: one modality, window-level.

    Each tile is classified as a whole and its class probabilities (or raw outputs) are spread
    over the tile (``[B, K, h, w]``); overlapping, blended tiles give a smooth class map.
    """
    waves = torch.as_tensor(np.asarray(wavelengths, dtype=np.float32))
    name = modality or model.modality_of(waves)

    @torch.no_grad()
    def predict(image: torch.Tensor) -> torch.Tensor:
        out = model.predict({name: (image, waves.to(image.device))})
        out = out.softmax(dim=1) if probabilities else out
        return out[:, :, None, None].expand(-1, -1, *image.shape[-2:])

    return predict


# --------------------------------------------------------------------------- registered variants
TINY_ENCODER = {"encoder": "smarties_tiny", "pool": "avg"}
S2_TINY = {**TINY_ENCODER, "sensor": "sentinel2_l1c"}
S1_TINY = {**TINY_ENCODER, "sensor": "sentinel1_grd"}


def _colearning(defaults: dict[str, Any], overrides: dict[str, Any]) -> CoLearningModel:
    return CoLearningModel(**{**defaults, **overrides})


@register_model
def tempcnn_s1_series(**overrides: Any) -> TempCNNEncoder:
    """TempCNN for 2-band (VV, VH) series of 12 steps -> 64-d vectors."""
    return TempCNNEncoder(**{"in_channels": 2, "seq_len": 12, "embed_dim": 64, **overrides})


@register_model
def colearn_tiny_s1s2(**overrides: Any) -> CoLearningModel:
    """Sentinel-2 + Sentinel-1 co-learning on tiny SMARTIES encoders, 7 classes."""
    return _colearning({"modalities": {"s2": S2_TINY, "s1": S1_TINY}, "num_outputs": 7}, overrides)


@register_model
def colearn_tiny_s1(**overrides: Any) -> CoLearningModel:
    """Single-modality baseline: the same Sentinel-1 branch trained alone, 7 classes."""
    return _colearning({"modalities": {"s1": S1_TINY}, "num_outputs": 7}, overrides)


@register_model
def colearn_tiny_s2(**overrides: Any) -> CoLearningModel:
    """Single-modality baseline: the same Sentinel-2 branch trained alone, 7 classes."""
    return _colearning({"modalities": {"s2": S2_TINY}, "num_outputs": 7}, overrides)
