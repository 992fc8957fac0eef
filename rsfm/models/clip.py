"""Remote-sensing CLIP (CLIP-RS-style) on open_clip: any open_clip architecture or a spectral tower.

:class:`RSCLIP` wraps an ``open_clip`` model (``CLIP`` / ``CustomTextCLIP``) built from an
architecture name (``"ViT-B-16"``, the tiny ``"rsfm_clip_tiny"`` registered here) or a config
dict, randomly initialised or from a local checkpoint file. With ``spectral_tower`` the image
tower is the project's spectrum-aware :class:`~rsfm.models.smarties.SmartiesEncoder` (pooled,
then a linear projection), so Sentinel-2 images embed with all their bands. The text tower,
tokenizer, ``logit_scale`` / ``logit_bias`` stay open_clip's.

An RGB tower fed a multispectral image takes the bands nearest to red, green and blue by
wavelength (documented mapping, within :data:`RGB_TOLERANCE_NM`), so ``model(image, wavelengths)``
works for any optical sensor and fails clearly otherwise.

The wrapped open_clip model writes checkpoints open_clip reads itself
(:meth:`RSCLIP.export_open_clip`): ``open_clip.create_model_and_transforms(arch,
pretrained=".../open_clip_model.safetensors")`` or ``"local-dir:..."``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg
from safetensors.torch import save_file
from torch import nn

from rsfm.models.registry import create_model, register_model, register_to_config
from rsfm.models.smarties import SmartiesEncoder, SmartiesMAE

# Red, green, blue centre wavelengths of the registry's "rgb" sensor, in open_clip's channel order.
RGB_WAVELENGTHS_NM = (640.0, 545.0, 470.0)
RGB_TOLERANCE_NM = 50.0
DEFAULT_TEMPLATES = ("a satellite image of {}.",)
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"

# Architectures as data (open_clip's JSON config schema), registered with open_clip by name.
RSFM_CLIP_ARCHS: dict[str, dict[str, Any]] = {
    "rsfm_clip_tiny": {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    },
}

# Stand-in vision tower built (and immediately replaced) when the spectral tower is used.
_PLACEHOLDER_VISION = {"image_size": 8, "layers": 1, "width": 32, "head_width": 32, "patch_size": 8}


def register_open_clip_arch(name: str, config: Mapping[str, Any]) -> None:
    """Make an architecture config known to open_clip by name (``create_model(name)``).

    Raises:
        ValueError: If the config lacks ``embed_dim``, ``vision_cfg`` or ``text_cfg``.
    """
    if not all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError(f"open_clip config {name!r} needs embed_dim, vision_cfg and text_cfg")
    # open_clip.add_model_config only scans JSON files on disk; this is the registry it fills.
    open_clip.factory._MODEL_CONFIGS[name] = copy.deepcopy(dict(config))


for _name, _config in RSFM_CLIP_ARCHS.items():
    register_open_clip_arch(_name, _config)


def resolve_arch(arch: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Architecture name and open_clip config of a name or a config dict.

    A dict is registered with open_clip under ``rsfm_custom_<hash>`` so open_clip's tokenizer
    and factory find it.

    Raises:
        KeyError: If a name is not an open_clip architecture (the message lists rsfm's).
    """
    if isinstance(arch, str):
        config = open_clip.get_model_config(arch)
        if config is None:
            raise KeyError(
                f"unknown open_clip architecture {arch!r}; rsfm adds {sorted(RSFM_CLIP_ARCHS)}, "
                "open_clip.list_models() lists the rest"
            )
        return arch, config
    config = copy.deepcopy(dict(arch))
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    name = f"rsfm_custom_{digest}"
    register_open_clip_arch(name, config)
    return name, config


def build_open_clip_model(config: Mapping[str, Any], pretrained: str | None = None) -> nn.Module:
    """An open_clip ``CLIP`` / ``CustomTextCLIP`` from a config dict, random init or a file.

    Built directly from the classes (not ``open_clip.create_model``, which moves the model to a
    device and so cannot build on the meta device); class choice follows open_clip's factory.

    Args:
        config: open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg`` ...).
        pretrained: Local checkpoint file loaded with ``open_clip.load_checkpoint`` (strict).

    Raises:
        ValueError: For CoCa configs (captioning models are not contrastive towers).
        FileNotFoundError: If ``pretrained`` does not exist.
    """
    config = copy.deepcopy(dict(config))
    if "multimodal_cfg" in config:
        raise ValueError("CoCa (multimodal_cfg) architectures are not supported by RSCLIP")
    custom_text = config.pop("custom_text", False) or "hf_model_name" in config["text_cfg"]
    config.pop("name", None)
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    model = model_class(**config)
    preprocess = asdict(PreprocessCfg())
    preprocess["size"] = model.visual.image_size
    open_clip.model.set_model_preprocess_cfg(model, preprocess)
    if pretrained:
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"{pretrained}: no such open_clip checkpoint file")
        open_clip.load_checkpoint(model, pretrained, strict=True)
    return model


class SpectralImageTower(nn.Module):
    """Spectrum-aware image tower: pooled :class:`SmartiesEncoder` tokens, linear projection.

    Args:
        embed_dim: Joint image-text embedding size.
        encoder: SmartiesEncoder init args.
        pool: ``avg`` (patch-token mean) or ``cls``.
    """

    def __init__(self, embed_dim: int, encoder: Mapping[str, Any], pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "cls"):
            raise ValueError(f"pool must be 'avg' or 'cls', got {pool!r}")
        self.encoder = SmartiesEncoder(**encoder)
        self.proj = nn.Linear(self.encoder.embed_dim, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.encoder.embed_dim**-0.5)
        self.pool = pool
        self.image_size = self.encoder.img_size

    def no_weight_decay(self) -> set[str]:
        """Parameter names optimisers should not decay."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] with wavelengths [C] or [B, C] -> unnormalised embeddings [B, E]."""
        return self.proj(self.encoder.forward_pooled(image, wavelengths, pool=self.pool))


def _spectral_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Resolved spectral-tower args: a registered encoder/MAE name becomes its encoder's args."""
    spec = dict(spec)
    encoder = spec.get("encoder", "smarties_tiny")
    if isinstance(encoder, str):
        with torch.device("meta"):  # only the init args are needed
            built = create_model(encoder)
        if isinstance(built, SmartiesMAE):
            built = built.encoder
        if not isinstance(built, SmartiesEncoder):
            raise TypeError(f"{encoder!r} is not a SmartiesEncoder / SmartiesMAE variant")
        encoder = dict(built.init_args)
    unknown = set(spec) - {"encoder", "pool"}
    if unknown:
        raise TypeError(f"unknown spectral_tower keys {sorted(unknown)}; use encoder, pool")
    return {"encoder": dict(encoder), "pool": spec.get("pool", "avg")}


def select_rgb_bands(image: torch.Tensor, wavelengths: torch.Tensor | None) -> torch.Tensor:
    """The red, green, blue bands of an image, chosen by wavelength (nearest within tolerance).

    Args:
        image: [B, C, H, W].
        wavelengths: [C] or [B, C] in nm (first row used); None = the image is RGB already.

    Raises:
        ValueError: If the bands cannot be mapped to RGB (no wavelengths and C != 3, or no band
            within :data:`RGB_TOLERANCE_NM` of red / green / blue).
    """
    channels = image.shape[1]
    if wavelengths is None:
        if channels != 3:
            raise ValueError(
                f"an RGB image tower needs 3 bands or their wavelengths; got {channels} bands "
                "without wavelengths (or use a spectral tower, e.g. clip_rs_s2_tiny)"
            )
        return image
    waves = torch.as_tensor(wavelengths, dtype=torch.float64).reshape(-1, channels)[0].cpu()
    targets = torch.tensor(RGB_WAVELENGTHS_NM, dtype=torch.float64)
    distance = (waves.nan_to_num(nan=1e12)[None, :] - targets[:, None]).abs()  # [3, C]
    nearest = distance.argmin(dim=1)
    if bool((distance.gather(1, nearest[:, None]) > RGB_TOLERANCE_NM).any()):
        raise ValueError(
            f"bands at {waves.tolist()} nm hold no red/green/blue band within "
            f"{RGB_TOLERANCE_NM} nm of {list(RGB_WAVELENGTHS_NM)}; an RGB image tower cannot "
            "embed them (use a spectral tower, e.g. clip_rs_s2_tiny)"
        )
    if channels == 3 and nearest.tolist() == [0, 1, 2]:
        return image
    return image[:, nearest.to(image.device)]


class RSCLIP(nn.Module):
    """open_clip model with an optional spectrum-aware image tower and a zero-shot head.

    Args:
        arch: open_clip architecture name or config dict (open_clip's JSON schema).
        spectral_tower: None (open_clip's RGB tower) or ``{"encoder": name or SmartiesEncoder
            args, "pool": "avg" | "cls"}``.
        class_names: Classes of the zero-shot head used by :meth:`forward` (optional).
        templates: Prompt templates for the class names (``{}`` = class name).
        init_logit_scale: Initial log temperature (open_clip default: log(1/0.07)).
        init_logit_bias: Initial logit bias; set it (e.g. -10) for the SigLIP loss.
        rgb_mean: Per-channel mean subtracted from RGB-tower inputs (e.g. open_clip's
            ``OPENAI_DATASET_MEAN`` for pretrained weights on 0..1 pictures); None = none.
        rgb_std: Per-channel standard deviation dividing RGB-tower inputs; None = none.
        pretrained: Local open_clip checkpoint for the wrapped model (not recorded in
            ``init_args``: the weights travel with saved entries).
    """

    @register_to_config(ignore=("pretrained",))
    def __init__(
        self,
        arch: str | Mapping[str, Any] = "rsfm_clip_tiny",
        spectral_tower: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        init_logit_scale: float | None = None,
        init_logit_bias: float | None = None,
        rgb_mean: Sequence[float] | None = None,
        rgb_std: Sequence[float] | None = None,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.arch_name, config = resolve_arch(arch)
        if init_logit_scale is not None:
            config["init_logit_scale"] = float(init_logit_scale)
        if init_logit_bias is not None:
            config["init_logit_bias"] = float(init_logit_bias)
        spectral = _spectral_args(spectral_tower) if spectral_tower is not None else None
        build_config = dict(config)
        if spectral is not None:
            build_config["vision_cfg"] = dict(_PLACEHOLDER_VISION)
            if pretrained:
                raise ValueError("pretrained open_clip weights need the open_clip image tower")
        self.clip = build_open_clip_model(build_config, pretrained)
        if spectral is not None:
            self.clip.visual = SpectralImageTower(config["embed_dim"], **spectral)
        self.open_clip_config = config
        self.init_args["spectral_tower"] = spectral  # normalised: an encoder name -> its args
        mean = torch.tensor(rgb_mean if rgb_mean is not None else (0.0,) * 3)
        std = torch.tensor(rgb_std if rgb_std is not None else (1.0,) * 3)
        self.register_buffer("rgb_mean", mean.float().reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", std.float().reshape(1, 3, 1, 1), persistent=False)
        self.tokenizer = open_clip.get_tokenizer(self.arch_name)
        self.embed_dim = int(config["embed_dim"])
        self.spectral = spectral is not None
        size = self.clip.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)
        self.patch_size = self.image_size  # one embedding per image_size window (tiling)
        self.class_names = self.init_args["class_names"]
        self.num_outputs = len(self.class_names) if self.class_names else None
        self.templates = self.init_args["templates"]

    # ------------------------------------------------------------------ open_clip parts
    @property
    def logit_scale(self) -> nn.Parameter:
        """Log inverse temperature (open_clip's parameter; ``.exp()`` scales the logits)."""
        return self.clip.logit_scale

    @property
    def logit_bias(self) -> nn.Parameter | None:
        """Logit bias (SigLIP) or None."""
        return self.clip.logit_bias

    def no_weight_decay(self) -> set[str]:
        """Parameter names optimisers should not decay (open_clip's, prefixed)."""
        return {f"clip.{name}" for name in self.clip.no_weight_decay()} | {"clip.logit_scale"}

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """open_clip tokens [N, context_length] on the model's device."""
        return self.tokenizer(list(texts)).to(self.logit_scale.device)

    # ------------------------------------------------------------------ encoders
    def encode_image(
        self,
        image: torch.Tensor,
        wavelengths: torch.Tensor | None = None,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Image embeddings [B, E].

        Args:
            image: [B, C, H, W]; open_clip towers need H = W = ``image_size``.
            wavelengths: [C] or [B, C] in nm (required by the spectral tower; used by the RGB
                tower to pick red, green, blue).
            normalize: L2-normalise the embeddings.

        Raises:
            ValueError: For bands the tower cannot use or a wrong input size.
        """
        if self.spectral:
            if wavelengths is None:
                raise ValueError("the spectral image tower needs the bands' wavelengths")
            waves = torch.as_tensor(wavelengths, device=image.device, dtype=image.dtype)
            features = self.clip.visual(image, waves)
        else:
            image = select_rgb_bands(image, wavelengths)
            if tuple(image.shape[-2:]) != (self.image_size, self.image_size):
                raise ValueError(
                    f"{self.arch_name} takes {self.image_size}x{self.image_size} images, got "
                    f"{tuple(image.shape[-2:])}; resize or crop in the data pipeline"
                )
            if self.init_args["rgb_mean"] is not None or self.init_args["rgb_std"] is not None:
                image = (image - self.rgb_mean) / self.rgb_std
            features = self.clip.visual(image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(
        self, text: Sequence[str] | torch.Tensor, normalize: bool = False
    ) -> torch.Tensor:
        """Text embeddings [N, E] of strings (tokenised here) or open_clip tokens."""
        tokens = text if isinstance(text, torch.Tensor) else self.tokenize(text)
        return self.clip.encode_text(tokens, normalize=normalize)

    def forward_contrastive(
        self,
        image: torch.Tensor,
        text: Sequence[str] | torch.Tensor,
        wavelengths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """Normalised features and temperature, as open_clip's ``output_dict`` forward.

        Returns:
            ``image_features`` [B, E], ``text_features`` [N, E], ``logit_scale`` (exp'ed),
            ``logit_bias`` (or None).
        """
        return {
            "image_features": self.encode_image(image, wavelengths, normalize=True),
            "text_features": self.encode_text(text, normalize=True),
            "logit_scale": self.logit_scale.exp(),
            "logit_bias": self.logit_bias,
        }

    # ------------------------------------------------------------------ zero-shot head
    def class_embeddings(
        self, class_names: Sequence[str] | None = None, templates: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Normalised class embeddings [K, E], averaged over templates (open_clip's recipe)."""
        names = list(class_names or self.class_names or [])
        if not names:
            raise ValueError("no class names: pass class_names or build the model with them")
        prompts = list(templates or self.templates)
        texts = [t.format(name.replace("_", " ")) for name in names for t in prompts]
        features = self.encode_text(texts, normalize=True).reshape(len(names), len(prompts), -1)
        return F.normalize(features.mean(dim=1), dim=-1)

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        """Zero-shot class logits [B, K] against the model's class prompts."""
        image_features = self.encode_image(image, wavelengths, normalize=True)
        logits = self.logit_scale.exp() * image_features @ self.class_embeddings().T
        return logits + self.logit_bias if self.logit_bias is not None else logits

    def forward_spatial(
        self, image: torch.Tensor, wavelengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised embeddings of each ``image_size`` window: [B, E, H/s, W/s].

        Sides that are not multiples of ``image_size`` are resized to one window.
        """
        size = self.image_size
        batch, channels, height, width = image.shape
        if height % size or width % size:
            image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
            height = width = size
        rows, cols = height // size, width // size
        windows = image.reshape(batch, channels, rows, size, cols, size)
        windows = windows.permute(0, 2, 4, 1, 3, 5).reshape(-1, channels, size, size)
        waves = wavelengths
        if waves is not None and torch.as_tensor(waves).ndim == 2:
            waves = torch.as_tensor(waves).repeat_interleave(rows * cols, dim=0)
        features = self.encode_image(windows, waves, normalize=True)  # [B*rows*cols, E]
        return features.reshape(batch, rows, cols, -1).permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ open_clip export
    def open_clip_state_dict(self) -> dict[str, torch.Tensor]:
        """The wrapped open_clip model's state dict (keys as open_clip names them).

        Raises:
            ValueError: With a spectral tower (open_clip has no such image tower).
        """
        if self.spectral:
            raise ValueError(
                "a spectral image tower has no open_clip equivalent; load it with rsfm.hub"
            )
        return {k: v.detach().contiguous().cpu() for k, v in self.clip.state_dict().items()}

    def export_open_clip(self, directory: str | os.PathLike[str]) -> Path:
        """Write a folder open_clip loads by itself; returns the weights file.

        Files: ``open_clip_model.safetensors`` (the state dict), ``open_clip_config.json``
        (``model_cfg`` + ``preprocess_cfg``, for ``"local-dir:<folder>"``) and
        ``<arch>.json`` (for ``open_clip.add_model_config`` when the name is not built in).
        """
        folder = Path(directory).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / OPEN_CLIP_WEIGHTS
        save_file(self.open_clip_state_dict(), os.fspath(weights), metadata={"format": "pt"})
        preprocess = open_clip.model.get_model_preprocess_cfg(self.clip)
        config = {"model_cfg": self.open_clip_config, "preprocess_cfg": preprocess}
        (folder / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (folder / f"{self.arch_name}.json").write_text(
            json.dumps(self.open_clip_config, indent=2) + "\n"
        )
        return weights


def clip_image_features(
    model: nn.Module, image: torch.Tensor, wavelengths: torch.Tensor | None = None
) -> torch.Tensor:
    """L2-normalised CLIP image features [B, E] of an :class:`RSCLIP` or an open_clip model."""
    if isinstance(model, RSCLIP):
        return model.encode_image(image, wavelengths, normalize=True)
    return model.encode_image(select_rgb_bands(image, wavelengths), normalize=True)


# --------------------------------------------------------------------------- registered variants
def _synthetic_class_names() -> list[str]:
    from rsfm.data.synthetic.spectra import CLASS_NAMES

    return list(CLASS_NAMES)


@register_model
def clip_rs_tiny(**overrides: Any) -> RSCLIP:
    """Test-size CLIP: ``rsfm_clip_tiny`` (32 px ViT, patch 8, 64-d x 2; text 64-d x 2)."""
    defaults: dict[str, Any] = {"arch": "rsfm_clip_tiny", "class_names": _synthetic_class_names()}
    return RSCLIP(**{**defaults, **overrides})


@register_model
def clip_rs_s2_tiny(**overrides: Any) -> RSCLIP:
    """Test-size CLIP with the spectral tower (smarties_tiny encoder): any band set, 32 px."""
    defaults: dict[str, Any] = {
        "arch": "rsfm_clip_tiny",
        "spectral_tower": {"encoder": "smarties_tiny", "pool": "avg"},
        "class_names": _synthetic_class_names(),
    }
    return RSCLIP(**{**defaults, **overrides})


@register_model
def clip_rs_vit_b16(**overrides: Any) -> RSCLIP:
    """open_clip ViT-B-16 (224 px, 512-d joint space), random init unless ``pretrained``."""
    return RSCLIP(**{"arch": "ViT-B-16", **overrides})


@register_model
def clip_rs_s2_base(**overrides: Any) -> RSCLIP:
    """Spectral tower on smarties_base (ViT-B/16, any band set) + ViT-B-16's text tower."""
    defaults: dict[str, Any] = {
        "arch": "ViT-B-16",
        "spectral_tower": {"encoder": "smarties_base", "pool": "avg"},
    }
    return RSCLIP(**{**defaults, **overrides})
