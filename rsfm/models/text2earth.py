"""Text2Earth-style text-to-image diffusion with resolution guidance.

Parts (all from libraries, wired here):

* a diffusers ``UNet2DConditionModel`` in pixel space or in the latent space of a diffusers
  ``AutoencoderKL`` (``latent=True``);
* an open_clip text tower (``TextTransformer`` built from a ``CLIPTextCfg``; its per-token
  outputs are the UNet's cross-attention states; frozen or trainable); tokenizer: open_clip's
  ``SimpleTokenizer`` (its BPE vocabulary ships with the package, so it works offline);
* a **resolution embedding**: ``log(gsd)`` -> sinusoidal features -> MLP, added to the timestep
  embedding. The hook is the UNet's own ``class_embed_type="projection"``: the UNet holds the MLP
  (a ``TimestepEmbedding``) and adds its output to the time embedding, so the saved UNet runs
  in plain diffusers with ``class_labels=model.resolution_features(gsd)``. "No resolution"
  is a learned vector in the sinusoidal feature space (``null_resolution``), used for NaN GSDs.

Conditions are dropped independently during training (``text_drop``, ``gsd_drop``: empty
caption / null resolution) and recombined at sampling by classifier-free guidance with separate
text and resolution scales (:func:`rsfm.models.layers.diffusion.combine_guidance`), optionally
scheduled over the steps (:func:`rsfm.models.layers.diffusion.guidance_factor`).

Images enter in data space (e.g. reflectance), are standardised with ``pixel_mean`` /
``pixel_std`` and, in latent mode, encoded by the VAE; :meth:`Text2Earth.generate` returns data
space again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from rsfm.models.layers.diffusion import (
    combine_guidance,
    diffusion_loss,
    guidance_factor,
    make_scheduler,
    min_snr_weights,
    sampling_scheduler,
    training_target,
)
from rsfm.models.registry import register_model, register_to_config

TINY_UNET = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TINY_TEXT = {"context_length": 32, "width": 64, "heads": 2, "layers": 2}
BASE_UNET = {
    "block_out_channels": [192, 384, 576, 768],
    "layers_per_block": 2,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
BASE_TEXT = {"context_length": 77, "width": 512, "heads": 8, "layers": 12}  # CLIP ViT-B text
BASE_VAE = {  # Stable Diffusion's AutoencoderKL layout (8x downsampling, 4 latent channels)
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}


def sinusoidal_features(values: torch.Tensor, dim: int, max_period: float = 100.0) -> torch.Tensor:
    """Sin/cos features of scalars ``[B] -> [B, dim]`` (frequencies 1 .. 1/max_period).

    ``log(gsd)`` spans about -3 (5 cm) to 7 (1 km), so periods from ~6 up to ``max_period``
    separate every practical resolution.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=values.device) / max(half - 1, 1)
    frequencies = torch.exp(-math.log(max_period) * exponent)
    angles = values.float()[:, None] * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Text2Earth(nn.Module):
    """Text- and resolution-conditioned diffusion model (see the module docstring).

    Args:
        image_channels: Bands of the generated images.
        image_size: Image side in pixels (the latent side is ``image_size / 2**(levels-1)``).
        latent: Diffuse in an ``AutoencoderKL``'s latent space instead of pixel space.
        vae: ``AutoencoderKL`` config overrides (latent mode).
        unet: ``UNet2DConditionModel`` config overrides.
        text: ``open_clip.model.CLIPTextCfg`` fields of the text tower.
        text_trainable: Train the text tower (else frozen).
        resolution_dim: Size of the sinusoidal log-GSD features.
        pixel_mean: Per-band mean of the data (standardisation before diffusion).
        pixel_std: Per-band standard deviation of the data.
        band_wavelengths: Wavelengths (nm) of the bands, in order; inputs with other band
            tables are matched by wavelength (error if a band is missing).
        prediction_type: ``epsilon``, ``v_prediction`` or ``sample``.
        num_train_timesteps: Length of the noise schedule.
        beta_schedule: diffusers beta schedule name.
    """

    @register_to_config
    def __init__(
        self,
        image_channels: int = 4,
        image_size: int = 32,
        latent: bool = False,
        vae: dict[str, Any] | None = None,
        unet: dict[str, Any] | None = None,
        text: dict[str, Any] | None = None,
        text_trainable: bool = False,
        resolution_dim: int = 64,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
        band_wavelengths: Sequence[float] | None = None,
        prediction_type: str = "epsilon",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "scaled_linear",
    ) -> None:
        super().__init__()
        record = self.init_args  # normalised: None -> {} for the sub-configs, floats per band
        for name in ("vae", "unet", "text"):
            record[name] = record[name] or {}
        for name in ("pixel_mean", "pixel_std", "band_wavelengths"):
            record[name] = None if record[name] is None else [float(v) for v in record[name]]
        for name, values in (("pixel_mean", pixel_mean), ("pixel_std", pixel_std)):
            if values is not None and len(values) != image_channels:
                raise ValueError(f"{name} has {len(values)} values for {image_channels} bands")
        self.image_channels, self.image_size = image_channels, image_size
        self.text_trainable = text_trainable
        mean = torch.tensor(pixel_mean or [0.0] * image_channels, dtype=torch.float32)
        std = torch.tensor(pixel_std or [1.0] * image_channels, dtype=torch.float32)
        self.register_buffer("pixel_mean", mean[:, None, None], persistent=False)
        self.register_buffer("pixel_std", std[:, None, None], persistent=False)

        self.text_config = CLIPTextCfg(**{**TINY_TEXT, **(text or {}), "output_tokens": True})
        self.text_config.proj_type = "none"  # only per-token states are used (no projection)
        self.text_encoder = _build_text_tower(self.text_config.width, self.text_config)
        self.text_encoder.requires_grad_(text_trainable)
        self._tokenizer: SimpleTokenizer | None = None

        self.vae: AutoencoderKL | None = None
        diffusion_channels, diffusion_size = image_channels, image_size
        if latent:
            vae_config = {**BASE_VAE, **(vae or {})}
            vae_config.setdefault("in_channels", image_channels)
            vae_config.setdefault("out_channels", image_channels)
            self.vae = AutoencoderKL(**vae_config)
            self.vae.requires_grad_(False)  # a pretrained autoencoder stays fixed
            diffusion_channels = self.vae.config.latent_channels
            diffusion_size = image_size // 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet_config = {**TINY_UNET, **(unet or {})}
        unet_config.update(
            sample_size=diffusion_size,
            in_channels=diffusion_channels,
            out_channels=diffusion_channels,
            cross_attention_dim=self.text_config.width,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=resolution_dim,
        )
        self.unet = UNet2DConditionModel(**unet_config)
        self.resolution_dim = resolution_dim
        self.null_resolution = nn.Parameter(torch.zeros(resolution_dim))
        self.scheduler = make_scheduler(
            "ddpm",
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            clip_sample=False,
        )

    # ------------------------------------------------------------------------- conditions
    @property
    def tokenizer(self) -> SimpleTokenizer:
        """open_clip's BPE tokenizer at the text tower's context length."""
        if self._tokenizer is None:
            self._tokenizer = SimpleTokenizer(context_length=self.text_config.context_length)
        return self._tokenizer

    @property
    def diffusion_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of the diffused tensor (pixels or latents)."""
        return (
            self.unet.config.in_channels,
            self.unet.config.sample_size,
            self.unet.config.sample_size,
        )

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Per-token text states ``[B, L, D]`` (the empty caption is the null text)."""
        tokens = self.tokenizer(list(captions)).to(self.null_resolution.device)
        with torch.set_grad_enabled(self.text_trainable and torch.is_grad_enabled()):
            return self.text_encoder(tokens)[1]

    def resolution_features(
        self, gsd: torch.Tensor | Sequence[float | None] | None
    ) -> torch.Tensor:
        """Sinusoidal ``log(gsd)`` features ``[B, resolution_dim]``; NaN/None -> null token."""
        if gsd is None:
            raise ValueError("give one GSD per sample (NaN or None for 'no resolution')")
        if not isinstance(gsd, torch.Tensor):
            gsd = torch.tensor([float("nan") if g is None else float(g) for g in gsd])
        gsd = gsd.to(self.null_resolution.device, torch.float32).reshape(-1)
        known = torch.isfinite(gsd) & (gsd > 0)
        features = sinusoidal_features(torch.log(torch.where(known, gsd, 1.0)), self.resolution_dim)
        return torch.where(known[:, None], features, self.null_resolution[None].to(features))

    # ----------------------------------------------------------------------------- spaces
    def select_bands(self, image: torch.Tensor, wavelengths: torch.Tensor | None) -> torch.Tensor:
        """The model's bands of ``image``, matched by wavelength (1 nm tolerance).

        Raises:
            ValueError: If a band of the model is missing or the batch mixes band tables.
        """
        expected = self.init_args["band_wavelengths"]
        if wavelengths is None or expected is None:
            if image.shape[1] != self.image_channels:
                raise ValueError(f"expected {self.image_channels} bands, got {image.shape[1]}")
            return image
        waves = torch.as_tensor(wavelengths, dtype=torch.float32).cpu()
        if waves.ndim == 2:
            if not torch.equal(
                torch.nan_to_num(waves), torch.nan_to_num(waves[:1]).expand_as(waves)
            ):
                raise ValueError("a batch mixes band tables; generate per sensor")
            waves = waves[0]
        rows = []
        for wanted in expected:
            close = torch.nonzero((waves - wanted).abs() <= 1.0).flatten()
            if close.numel() == 0:
                raise ValueError(
                    f"input has no band at {wanted} nm (model bands {expected} nm, "
                    f"input {waves.tolist()} nm)"
                )
            rows.append(int(close[0]))
        return image[:, rows]

    def to_diffusion_space(self, image: torch.Tensor) -> torch.Tensor:
        """Data-space images -> standardised pixels or scaled VAE latents."""
        x = (image - self.pixel_mean) / self.pixel_std
        if self.vae is None:
            return x
        with torch.no_grad():
            latents = self.vae.encode(x).latent_dist.sample()
        return latents * self.vae.config.scaling_factor

    def to_data_space(self, sample: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_diffusion_space` (the VAE decodes latents)."""
        if self.vae is not None:
            sample = self.vae.decode(sample / self.vae.config.scaling_factor).sample
        return sample * self.pixel_std + self.pixel_mean

    # ---------------------------------------------------------------------------- network
    def denoise(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        text_states: torch.Tensor,
        resolution: torch.Tensor,
    ) -> torch.Tensor:
        """One UNet evaluation (the output the scheduler's ``prediction_type`` names)."""
        return self.unet(
            sample, timesteps, encoder_hidden_states=text_states, class_labels=resolution
        ).sample

    def example_inputs(self, batch_size: int = 2) -> dict[str, Any]:
        """Random ``forward`` kwargs (registry tests): images, their bands, captions, GSDs."""
        size = self.image_size
        waves = self.init_args["band_wavelengths"]
        return {
            "image": torch.randn(batch_size, self.image_channels, size, size),
            "wavelengths": None if waves is None else torch.tensor(waves),
            "captions": ["a forest next to a river"] * batch_size,
            "gsd": torch.full((batch_size,), 10.0),
        }

    def forward(
        self,
        image: torch.Tensor,
        wavelengths: torch.Tensor | None = None,
        captions: Sequence[str] | None = None,
        gsd: torch.Tensor | Sequence[float | None] | None = None,
        *,
        valid: torch.Tensor | None = None,
        text_drop: float = 0.0,
        gsd_drop: float = 0.0,
        min_snr_gamma: float | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Denoising loss of a batch at random timesteps.

        Args:
            image: Data-space images ``[B, C, H, W]``.
            wavelengths: Their band wavelengths (``[C]`` or ``[B, C]``), to select bands.
            captions: One caption per image (None: all empty = unconditional).
            gsd: GSD per image (None / NaN entries: no resolution).
            valid: Valid-pixel mask ``[B, H, W]`` (pixel space: invalid pixels do not count).
            text_drop: Probability of replacing a caption by the empty caption.
            gsd_drop: Probability (independent of ``text_drop``) of the null resolution.
            min_snr_gamma: Min-SNR-gamma loss weighting (None: plain MSE).
            generator: Random generator for timesteps, noise and dropping.

        Returns:
            ``{"loss", "prediction", "target", "timesteps"}``.
        """
        batch = image.shape[0]
        device = image.device
        captions = list(captions) if captions is not None else [""] * batch
        gsd_values = (
            torch.full((batch,), float("nan"))
            if gsd is None
            else torch.as_tensor(
                [float("nan") if g is None else float(g) for g in gsd]
                if not isinstance(gsd, torch.Tensor)
                else gsd,
                dtype=torch.float32,
            )
        ).to(device)
        draws = torch.rand(
            2, batch, generator=generator, device=generator.device if generator else "cpu"
        )
        drop_text, drop_gsd = (draws[0] < text_drop).tolist(), (draws[1] < gsd_drop).to(device)
        captions = ["" if drop else c for c, drop in zip(captions, drop_text, strict=True)]
        gsd_values = torch.where(drop_gsd, torch.full_like(gsd_values, float("nan")), gsd_values)

        clean = self.to_diffusion_space(self.select_bands(image, wavelengths))
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(clean.shape, generator=generator, device=gen_device).to(clean)
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (batch,), generator=generator, device=gen_device)
        timesteps = timesteps.to(device)
        noisy = self.scheduler.add_noise(clean, noise, timesteps)
        prediction = self.denoise(
            noisy, timesteps, self.encode_text(captions), self.resolution_features(gsd_values)
        )
        target = training_target(self.scheduler, clean, noise, timesteps)
        weights = (
            min_snr_weights(self.scheduler, timesteps, min_snr_gamma) if min_snr_gamma else None
        )
        mask = valid if self.vae is None else None
        loss = diffusion_loss(prediction, target, weights, mask)
        return {"loss": loss, "prediction": prediction, "target": target, "timesteps": timesteps}

    # --------------------------------------------------------------------------- sampling
    def guided_prediction(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        text_states: torch.Tensor,
        resolution: torch.Tensor,
        text_scale: float,
        gsd_scale: float,
        null_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Classifier-free guidance over (null, +text, +resolution) in one batched UNet call.

        ``p = p_null + s_text (p_text - p_null) + s_gsd (p_text,gsd - p_text)``. With both
        scales 1 only the fully conditioned branch runs. ``null_text``: precomputed states of
        the empty caption (``encode_text([""])``), computed here when None.
        """
        batch = sample.shape[0]
        if text_scale == 1.0 and gsd_scale == 1.0:
            return self.denoise(sample, timestep, text_states, resolution)
        if null_text is None:
            null_text = self.encode_text([""])
        null_text = null_text.expand(batch, -1, -1)
        null_res = self.null_resolution[None].expand(batch, -1).to(resolution)
        out = self.denoise(
            torch.cat([sample] * 3),
            timestep,
            torch.cat([null_text, text_states, text_states]),
            torch.cat([null_res, null_res, resolution]),
        )
        return combine_guidance(out.chunk(3), [text_scale, gsd_scale])

    @torch.no_grad()
    def generate(
        self,
        captions: Sequence[str],
        gsd: Sequence[float | None] | torch.Tensor | None = None,
        *,
        steps: int = 30,
        scheduler: str = "ddim",
        text_scale: float = 5.0,
        gsd_scale: float = 2.0,
        guidance_schedule: str = "constant",
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Sample images in data space ``[B, C, H, W]``.

        Args:
            captions: One caption per image.
            gsd: GSD per image (m); None / NaN: no resolution condition.
            steps: Sampling steps.
            scheduler: Sampling scheduler name (see ``rsfm.models.layers.diffusion.SCHEDULERS``).
            text_scale: Text guidance scale (1 = no guidance).
            gsd_scale: Resolution guidance scale (1 = no guidance).
            guidance_schedule: Schedule of both scales over the steps (see
                :func:`rsfm.models.layers.diffusion.guidance_factor`); scales go ``1 + (s-1) f``.
            generator: Random generator of the initial noise.
            noise: Initial noise in diffusion space (overrides ``generator``).
            known: Data-space images whose ``known_mask`` pixels are kept (inpainting /
                outpainting; RePaint-style replacement at every step).
            known_mask: ``[B, 1, H, W]`` float, 1 where ``known`` is kept.
            progress: Called with ``(step, steps)`` after each step.
        """
        batch = len(captions)
        gsd = [None] * batch if gsd is None else gsd
        sampler = sampling_scheduler(self.scheduler, scheduler)
        sampler.set_timesteps(steps, device=self.null_resolution.device)
        device = self.null_resolution.device
        if noise is None:
            gen_device = generator.device if generator is not None else device
            noise = torch.randn(
                (batch, *self.diffusion_shape), generator=generator, device=gen_device
            )
        sample = noise.to(device) * sampler.init_noise_sigma
        text_states = self.encode_text(captions)
        null_text = self.encode_text([""])
        resolution = self.resolution_features(gsd)
        clean_known, mask = None, None
        if known is not None:
            if known_mask is None:
                raise ValueError("known images need a known_mask")
            clean_known = self.to_diffusion_space(known.to(device))
            mask = torch.nn.functional.interpolate(
                known_mask.to(device).float(), size=sample.shape[-2:], mode="area"
            )
        for index, timestep in enumerate(sampler.timesteps):
            if clean_known is not None and mask is not None:
                fresh = torch.randn(clean_known.shape, generator=generator, device=noise.device)
                noisy_known = _noised(sampler, clean_known, fresh.to(device), timestep)
                sample = mask * noisy_known + (1 - mask) * sample
            factor = guidance_factor(guidance_schedule, index, len(sampler.timesteps))
            model_input = sampler.scale_model_input(sample, timestep)
            prediction = self.guided_prediction(
                model_input,
                timestep,
                text_states,
                resolution,
                1.0 + (text_scale - 1.0) * factor,
                1.0 + (gsd_scale - 1.0) * factor,
                null_text,
            )
            sample = sampler.step(prediction, timestep, sample, generator=generator).prev_sample
            if progress is not None:
                progress(index + 1, len(sampler.timesteps))
        if clean_known is not None and mask is not None:
            sample = mask * clean_known + (1 - mask) * sample
        return self.to_data_space(sample)

    # ---------------------------------------------------------------------------- weights
    def load_text_weights(self, path: str | Path) -> None:
        """Load an open_clip text tower's weights (e.g. from the project's remote-sensing CLIP).

        Accepts a safetensors or torch file holding a ``TextTransformer`` state dict or a whole
        open_clip ``CLIP`` / ``CustomTextCLIP`` state dict (``text.`` prefix or CLIP's top-level
        text keys); the text projection is ignored. Never unpickles objects.

        Raises:
            ValueError: If tensors of the tower are missing or have other shapes.
        """
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
        wanted = self.text_encoder.state_dict()
        picked = {}
        for key in wanted:
            for candidate in (key, f"text.{key}", f"model.{key}", f"model.text.{key}"):
                if candidate in state:
                    picked[key] = state[candidate]
                    break
        missing = sorted(set(wanted) - set(picked))
        if missing:
            raise ValueError(f"{path}: no text-tower tensor(s) {missing[:5]} ...")
        try:
            self.text_encoder.load_state_dict(picked)
        except RuntimeError as err:
            raise ValueError(f"{path}: text weights do not fit the text tower: {err}") from None

    def export_diffusers(self, directory: str | Path) -> Path:
        """Write ``unet/`` (and ``vae/``, ``scheduler/``) in diffusers' own format.

        ``UNet2DConditionModel.from_pretrained(directory / "unet")`` loads the UNet; feed it
        ``class_labels=model.resolution_features(gsd)`` and ``encoder_hidden_states`` from the
        text tower.
        """
        directory = Path(directory)
        self.unet.save_pretrained(directory / "unet")
        self.scheduler.save_pretrained(directory / "scheduler")
        if self.vae is not None:
            self.vae.save_pretrained(directory / "vae")
        return directory


def _noised(
    sampler: Any, clean: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor
) -> torch.Tensor:
    """``clean`` noised to the level of ``timestep`` in the sampler's parameterisation."""
    noisy = sampler.add_noise(clean, noise, timestep.reshape(1).expand(clean.shape[0]))
    return noisy


# --------------------------------------------------------------------------------- variants
@register_model
def text2earth_tiny(**overrides: Any) -> Text2Earth:
    """Pixel-space 32 px, 4 bands (S2 B02/B03/B04/B08), ~1 M UNet parameters: CPU tests."""
    from rsfm.sensors import get_sensor

    bands = get_sensor("sentinel2_l1c").select(["B02", "B03", "B04", "B08"])
    args: dict[str, Any] = {
        "image_channels": 4,
        "image_size": 32,
        "band_wavelengths": [float(w) for w in bands.wavelengths],
        "pixel_mean": [0.085, 0.09, 0.07, 0.25],
        "pixel_std": [0.03, 0.03, 0.035, 0.08],
        "text": dict(TINY_TEXT),
        "unet": dict(TINY_UNET),
        "resolution_dim": 32,
        "prediction_type": "v_prediction",  # learns the global content at high noise (tested)
    }
    args.update(overrides)
    return Text2Earth(**args)


@register_model
def text2earth_base(**overrides: Any) -> Text2Earth:
    """Latent-space 256 px RGB (SD-style AutoencoderKL, 8x), CLIP-B text tower, ~300 M UNet."""
    args: dict[str, Any] = {
        "image_channels": 3,
        "image_size": 256,
        "latent": True,
        "vae": dict(BASE_VAE),
        "unet": dict(BASE_UNET),
        "text": dict(BASE_TEXT),
        "band_wavelengths": [640.0, 545.0, 470.0],
        "pixel_mean": [0.5, 0.5, 0.5],
        "pixel_std": [0.5, 0.5, 0.5],
        "resolution_dim": 128,
        "prediction_type": "v_prediction",
    }
    args.update(overrides)
    return Text2Earth(**args)
