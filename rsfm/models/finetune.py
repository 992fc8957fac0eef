"""Fine-tuning models: a spectrum-aware encoder plus a task head.

``FineTuneModel(image, wavelengths)`` returns ``[B, K, H, W]`` (dense heads: segmentation logits
or per-pixel regression) or ``[B, K]`` (pooled head: classification or image-level regression).
Every constructor argument is JSON-ready and recorded in ``init_args``, so fine-tuned models
round-trip through :func:`~rsfm.models.registry.model_config` /
:func:`~rsfm.models.registry.model_from_config` like every registered model.

Training modes (:meth:`FineTuneModel.set_mode`) decide what learns:

- ``linear_probe``: frozen encoder, BatchNorm-without-affine + linear layer (SMARTIES protocol),
- ``frozen``: frozen encoder, any trainable head (e.g. UPerNet),
- ``full``: everything trains (optionally with layer-wise LR decay via :meth:`group_matcher`),
- ``lora``: frozen encoder except low-rank adapters (``lora`` init arg), trainable head.

Pretrained encoder weights come from an ``MAEPretrainTask`` Lightning checkpoint or a hub entry
(:func:`load_backbone_weights`); their normalisation statistics come along.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from rsfm.models.layers.heads import LinearHead, PooledHead, UPerNetHead
from rsfm.models.layers.lora import apply_lora, lora_layers, mark_only_lora_trainable, merge_lora
from rsfm.models.registry import create_model, register_model, register_to_config
from rsfm.models.smarties import SmartiesEncoder

HEADS = ("linear", "upernet", "pooled")
MODES = ("linear_probe", "frozen", "full", "lora")
_ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")


def default_feature_blocks(depth: int, count: int) -> list[int]:
    """``count`` block indices spread evenly over ``depth`` blocks, ending at the last one."""
    return [max(0, math.ceil((i + 1) * depth / count) - 1) for i in range(count)]


def build_encoder(backbone: str, backbone_args: dict[str, Any] | None = None) -> SmartiesEncoder:
    """The encoder of a registered encoder or MAE (``smarties_tiny`` -> its ``.encoder``).

    ``backbone_args`` override the registered variant's init args; ``drop_path_rate`` (an
    encoder-only argument) is applied to the encoder after the variant is built.
    """
    args = dict(backbone_args or {})
    drop_path_rate = float(args.pop("drop_path_rate", 0.0))
    model = create_model(backbone, **args)
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, SmartiesEncoder):
        raise TypeError(
            f"backbone {backbone!r} builds a {type(model).__name__}, which is neither a "
            "SmartiesEncoder nor has one as `.encoder`"
        )
    if drop_path_rate:
        encoder = SmartiesEncoder(**{**encoder.init_args, "drop_path_rate": drop_path_rate})
    return encoder


class FineTuneModel(nn.Module):
    """Spectrum-aware encoder + task head.

    Args:
        backbone: Registered encoder or MAE name (an MAE contributes its ``.encoder``).
        backbone_args: Overrides of the backbone's init args (plus ``drop_path_rate``).
        head: ``linear`` (dense, per token), ``upernet`` (dense, multi-scale) or ``pooled``.
        num_outputs: Classes or regression channels K.
        head_args: Extra arguments of the head class (``batchnorm``, ``dropout``, ``channels``,
            ``scales``).
        feature_blocks: Encoder blocks feeding a dense head (default: the last block for
            ``linear``, four evenly spaced blocks for ``upernet``).
        pool: Pooling of the ``pooled`` head: ``cls`` token or ``avg`` of patch tokens.
        lora: LoRA adapters on the encoder, as :func:`~rsfm.models.layers.lora.apply_lora` kwargs
            (``rank``, ``alpha``, ``target``, ``dropout``); None for no adapters.
    """

    @register_to_config
    def __init__(
        self,
        backbone: str = "smarties_tiny",
        backbone_args: dict[str, Any] | None = None,
        head: str = "linear",
        num_outputs: int = 7,
        head_args: dict[str, Any] | None = None,
        feature_blocks: Sequence[int] | None = None,
        pool: str = "cls",
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
        if pool not in ("cls", "avg"):
            raise ValueError(f"unknown pool {pool!r}; expected 'cls' or 'avg'")
        self.encoder = build_encoder(backbone, backbone_args)
        depth = len(self.encoder.blocks)
        head_args = dict(head_args or {})
        if head == "upernet":
            count = len(feature_blocks) if feature_blocks else int(head_args.get("num_features", 4))
            head_args["num_features"] = count
            blocks = list(feature_blocks or default_feature_blocks(depth, count))
        else:
            blocks = list(feature_blocks or [depth - 1])
        if any(not 0 <= b < depth for b in blocks):
            raise ValueError(f"feature_blocks {blocks} outside the encoder's {depth} blocks")
        self.feature_blocks = blocks
        self.lora_adapted = (
            apply_lora(self.encoder, freeze=False, **lora) if lora else []
        )  # freezing is decided by set_mode
        dim = self.encoder.embed_dim
        if head == "pooled":
            self.head: nn.Module = PooledHead(dim, num_outputs, **head_args)
        elif head == "linear":
            self.head = LinearHead(dim, num_outputs, **head_args)
        else:
            self.head = UPerNetHead(dim, num_outputs, **head_args)
        self.head_type = head
        self.num_outputs = num_outputs
        self.pool = pool
        self.mode = "full"
        record = self.init_args  # normalised: None -> {}, the resolved blocks and head args
        record.update(head_args=dict(head_args), feature_blocks=blocks)
        record.update(backbone_args=record["backbone_args"] or {}, lora=record["lora"] or None)

    @property
    def dense(self) -> bool:
        """Whether the head predicts per pixel (``[B, K, H, W]``)."""
        return self.head_type != "pooled"

    # ------------------------------------------------------------------ training modes
    def set_mode(self, mode: str) -> None:
        """Choose which parameters train (see the module docstring); the head always trains.

        Raises:
            ValueError: On an unknown mode, ``linear_probe`` with a non-linear head, or ``lora``
                without adapters.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if mode == "linear_probe" and self.head_type == "upernet":
            raise ValueError(
                "mode 'linear_probe' needs a linear head ('linear' or 'pooled'); "
                "use mode 'frozen' to train a UPerNet head on a frozen encoder"
            )
        if mode == "lora" and not self.lora_adapted:
            raise ValueError("mode 'lora' needs adapters: build the model with lora={'rank': ...}")
        self.mode = mode
        for param in self.encoder.parameters():
            param.requires_grad = mode == "full"
        if mode == "lora":
            mark_only_lora_trainable(self.encoder)
        for param in self.head.parameters():
            param.requires_grad = True
        self.train(self.training)

    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder parameter trains (``linear_probe`` and ``frozen``)."""
        return self.mode in ("linear_probe", "frozen")

    def train(self, mode: bool = True) -> FineTuneModel:
        """Like ``nn.Module.train``, but a frozen encoder always stays in eval mode."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def trainable_parameter_names(self) -> list[str]:
        """Names of the parameters that require gradients."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    # ------------------------------------------------------------------ optimiser support
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm layer groups (for ``create_optimizer_v2(layer_decay=...)``): stem, blocks."""
        return {
            "stem": r"^encoder\.(?:cls_token|patch_embed)",
            "blocks": [(r"^encoder\.blocks\.(\d+)", None), (r"^encoder\.norm", (99999,))],
        }

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        return {"encoder.cls_token"}

    # ------------------------------------------------------------------ forward
    def feature_maps(self, image: torch.Tensor, wavelengths: torch.Tensor) -> list[torch.Tensor]:
        """Normalised outputs of ``feature_blocks`` as maps ``[B, D, H/p, W/p]``."""
        encoder = self.encoder
        rows, cols = encoder.grid_size(image)
        tokens = encoder.embed(image, wavelengths)  # [B, N, D]
        x = torch.cat([encoder.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        wanted = set(self.feature_blocks)
        outputs: dict[int, torch.Tensor] = {}
        use_checkpoint = encoder.grad_checkpointing and torch.is_grad_enabled()
        for index, block in enumerate(encoder.blocks[: max(wanted) + 1]):
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
            if index in wanted:
                outputs[index] = x
        maps = []
        for index in self.feature_blocks:
            patch = encoder.norm(outputs[index])[:, 1:]  # [B, N, D], cls dropped
            maps.append(patch.transpose(1, 2).reshape(patch.shape[0], -1, rows, cols))
        return maps

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Predictions for an image.

        Args:
            image: [B, C, H, W], H and W multiples of the patch size.
            wavelengths: [C] or [B, C] centre wavelengths in nm (NaN = padded band).

        Returns:
            [B, K, H, W] for dense heads, [B, K] for the pooled head.
        """
        if not self.dense:
            return self.head(self.encoder.forward_pooled(image, wavelengths, pool=self.pool))
        return self.head(self.feature_maps(image, wavelengths), image.shape[-2:])


# --------------------------------------------------------------------------- weights
def _encoder_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Encoder entries of a state dict, prefixes stripped (task, MAE or bare encoder keys)."""
    for prefix in _ENCODER_PREFIXES:
        found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if any(k.startswith("blocks.") for k in found):
            return {k: v for k, v in found.items() if not k.startswith("decoder")}
    raise ValueError(f"{source}: holds no encoder weights (no '*blocks.*' keys)")


def _card_band_stats(card: Any) -> dict[str, dict[str, Any]] | None:
    """Normalisation statistics of a typed hub card (:class:`rsfm.hub.card.ModelCard`) as
    ``{sensor: BandStats dict}``, or None when it records none."""
    stats = getattr(card, "normalization", None)
    if not stats:
        return None
    return {str(sensor): value.to_dict() for sensor, value in stats.items()}


def _checkpoint_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _encoder_state(load_file(str(path)), str(path)), None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds of errors on bad files
        raise ValueError(f"{path}: cannot read as a checkpoint ({err})") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds no state_dict")
    return _encoder_state(state, str(path)), ckpt.get("rsfm_band_stats")


def _hub_weights(name: str) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Encoder weights of a hub model and the statistics of its typed card."""
    try:
        from rsfm.hub import load as hub_load  # imported lazily: the hub is optional here
    except ImportError as err:
        raise ValueError(
            f"weights {name!r} is neither a checkpoint file nor loadable from the hub "
            f"(rsfm.hub.load is unavailable: {err})"
        ) from err
    model = hub_load(name)
    encoder = getattr(model, "encoder", model)
    if any(True for _ in lora_layers(encoder)):
        merge_lora(encoder)  # a LoRA-tuned hub model: take its effective weights
    state = {k: v for k, v in encoder.state_dict().items() if ".lora_" not in k}
    card = getattr(model, "rsfm_card", None)
    return _encoder_state(state, name), _card_band_stats(card)


def load_backbone_weights(model: FineTuneModel, weights: str) -> dict[str, dict] | None:
    """Load pretrained encoder weights into ``model.encoder``.

    Args:
        model: The fine-tuning model (adapters, if any, keep their initialisation).
        weights: A Lightning checkpoint of ``MAEPretrainTask`` (its ``model.encoder.*`` keys; a
            fine-tuning checkpoint works too), a ``.safetensors`` file, or a hub name / folder
            (``rsfm.hub.load``).

    Returns:
        The normalisation statistics that came with the weights, ``{sensor: BandStats dict}``,
        or None.

    Raises:
        FileNotFoundError: If ``weights`` names a checkpoint file that does not exist.
        ValueError: Naming ``weights`` when it cannot be read or does not fit the encoder.
    """
    path = Path(weights).expanduser()
    if not path.exists() and path.suffix in (".ckpt", ".pt", ".pth", ".safetensors"):
        raise FileNotFoundError(f"{weights}: no such checkpoint file")
    state, stats = _checkpoint_weights(path) if path.is_file() else _hub_weights(weights)
    try:
        missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(
            f"{weights}: encoder weights do not fit backbone {model.init_args['backbone']!r} "
            f"(set `backbone` to the architecture the weights were trained with): {err}"
        ) from err
    missing = [k for k in missing if ".lora_" not in k]
    if missing or unexpected:
        raise ValueError(
            f"{weights}: encoder weights do not match backbone {model.init_args['backbone']!r}: "
            f"missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    return stats


# --------------------------------------------------------------------------- registered variants
def _finetune(defaults: dict[str, Any], overrides: dict[str, Any]) -> FineTuneModel:
    if overrides.get("head", defaults["head"]) != defaults["head"]:
        defaults = {k: v for k, v in defaults.items() if k not in ("head_args", "feature_blocks")}
    return FineTuneModel(**{**defaults, **overrides})


@register_model
def smarties_tiny_seg_linear(**overrides: Any) -> FineTuneModel:
    """Tiny encoder + per-token linear head, 7 synthetic land-cover classes."""
    return _finetune(dict(backbone="smarties_tiny", head="linear", num_outputs=7), overrides)


@register_model
def smarties_tiny_seg_upernet(**overrides: Any) -> FineTuneModel:
    """Tiny encoder + UPerNet head (32 channels), 7 synthetic land-cover classes."""
    defaults = dict(
        backbone="smarties_tiny", head="upernet", num_outputs=7, head_args={"channels": 32}
    )
    return _finetune(defaults, overrides)


@register_model
def smarties_tiny_cls(**overrides: Any) -> FineTuneModel:
    """Tiny encoder + pooled (cls token) linear classifier, 7 classes."""
    return _finetune(dict(backbone="smarties_tiny", head="pooled", num_outputs=7), overrides)


@register_model
def smarties_tiny_reg(**overrides: Any) -> FineTuneModel:
    """Tiny encoder + UPerNet head (32 channels) regressing one value per pixel."""
    defaults = dict(
        backbone="smarties_tiny", head="upernet", num_outputs=1, head_args={"channels": 32}
    )
    return _finetune(defaults, overrides)
