"""Spectrum-aware patch embedding, SMARTIES encoder and masked autoencoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rsfm.models import (
    DEFAULT_SPECTRAL_RANGES,
    SmartiesEncoder,
    SpectralPatchEmbed,
    UnknownWavelengthError,
    create_model,
    patchify,
    range_index,
    sincos_pos_embed_2d,
    unpatchify,
)
from rsfm.models.layers.spectral import as_spectral_ranges
from rsfm.sensors import get_sensor, radar_wavelength_nm

S2 = get_sensor("sentinel2_l1c")
S1 = get_sensor("sentinel1_grd")
OLI = get_sensor("landsat8_oli_tirs")
NAMES = [r.name for r in DEFAULT_SPECTRAL_RANGES]


def wavelengths_of(sensor_name: str) -> torch.Tensor:
    return torch.from_numpy(get_sensor(sensor_name).wavelengths)


def routed(sensor_name: str) -> dict[str, str]:
    """Band name -> range name for a registered sensor."""
    sensor = get_sensor(sensor_name)
    index = range_index(wavelengths_of(sensor_name)).tolist()
    return {band: NAMES[i] for band, i in zip(sensor.band_names, index, strict=True)}


def tiny_encoder(seed: int = 0) -> SmartiesEncoder:
    torch.manual_seed(seed)
    return SmartiesEncoder(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4)


def tiny_mae(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("smarties_tiny", **overrides)


def smooth_image(batch: int, bands: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images of low-frequency patterns (learnable by a small MAE, unlike white noise)."""
    gen = torch.Generator().manual_seed(seed)
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    freq = torch.rand(batch, bands, 2, generator=gen) * 4 + 1
    phase = torch.rand(batch, bands, 1, 1, generator=gen) * 6.28
    return torch.sin(freq[..., 0, None, None] * 3 * xx + phase) * torch.cos(
        freq[..., 1, None, None] * 3 * yy
    )


# ---------------------------------------------------------------------------- routing
def test_every_sentinel2_band_has_its_own_range() -> None:
    table = routed("sentinel2_l1c")
    assert len(set(table.values())) == 13, table
    assert table["B08"] == "nir_broad" and table["B8A"] == "nir_narrow"
    assert table["B10"] == "cirrus" and table["B12"] == "swir_2"


def test_landsat_and_sentinel2_share_ranges_only_where_physically_alike() -> None:
    oli, s2 = routed("landsat8_oli_tirs"), routed("sentinel2_l1c")
    assert len(set(oli.values())) == 11, oli  # every OLI/TIRS band routes, all distinct
    assert oli["B5"] == s2["B8A"] == "nir_narrow"  # both the narrow NIR band
    assert oli["B8"] == "yellow"  # panchromatic 590 nm
    assert (oli["B10"], oli["B11"]) == ("tir_1", "tir_2")


def test_sar_polarisations_and_frequencies_route_apart() -> None:
    assert routed("sentinel1_grd") == {"VV": "sar_c_co", "VH": "sar_c_cross"}
    cases = {(1.257, "HH"): "sar_l_co", (1.257, "HV"): "sar_l_cross", (9.65, "VV"): "sar_x_co"}
    for (ghz, pol), expected in cases.items():
        index = range_index(torch.tensor([radar_wavelength_nm(ghz, pol)]))
        assert NAMES[int(index)] == expected


@pytest.mark.parametrize("sensor", ["enmap", "emit", "neon_aop", "naip", "rgb"])
def test_spectrometers_and_cameras_route_completely(sensor: str) -> None:
    index = range_index(wavelengths_of(sensor))
    assert (index >= 0).all() and index.shape == (len(get_sensor(sensor)),)


@pytest.mark.parametrize("wavelength", [300.0, 5000.0])
def test_uncovered_wavelengths_raise_with_the_value(wavelength: float) -> None:
    with pytest.raises(UnknownWavelengthError, match=f"{wavelength}") as info:
        range_index(torch.tensor([560.0, wavelength]))
    assert "swir_2 [2050, 2600) nm" in str(info.value)  # lists the covered ranges
    assert isinstance(info.value, ValueError)


def test_intervals_are_half_open_and_nan_marks_padding() -> None:
    index = range_index(torch.tensor([460.0, 459.999, float("nan")]))
    assert [NAMES[i] for i in index[:2].tolist()] == ["blue", "aerosol"]
    assert index[2] == -1 and index.dtype == torch.long


def test_range_tables_are_validated() -> None:
    assert as_spectral_ranges(None) == DEFAULT_SPECTRAL_RANGES
    with pytest.raises(ValueError, match="overlap"):
        as_spectral_ranges([("a", 400, 500), ("b", 450, 600)])
    with pytest.raises(ValueError, match="duplicate"):
        as_spectral_ranges([("a", 400, 500), ("a", 500, 600)])
    with pytest.raises(ValueError, match="min_nm >= max_nm"):
        as_spectral_ranges([("a", 500, 400)])


# ---------------------------------------------------------------------------- patch embedding
def test_patch_embedding_matches_a_per_band_reference() -> None:
    torch.manual_seed(0)
    embed = SpectralPatchEmbed(patch_size=4, embed_dim=16, projection_scale=12.0)
    with torch.no_grad():
        embed.bias.normal_()
    # Three bands share the 'red' range, one is green: exercises the per-range pixel sums.
    wavelengths = torch.tensor([650.0, 560.0, 660.0, 680.0])
    image = torch.randn(2, 4, 8, 8)
    tokens = embed(image, wavelengths)
    patches = patchify(image, 4)  # [B, N, C, 16]
    index = range_index(wavelengths)
    per_band = [patches[:, :, c] @ embed.weight[index[c]] + embed.bias[index[c]] for c in range(4)]
    expected = 12.0 * torch.stack(per_band).mean(0)
    assert tokens.shape == (2, 4, 16)
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)


def test_patchify_round_trips_and_checks_sizes() -> None:
    image = torch.randn(2, 3, 16, 24)
    patches = patchify(image, 8)
    assert patches.shape == (2, 6, 3, 64)
    assert torch.equal(patches[0, 1, 2], image[0, 2, 0:8, 8:16].flatten())
    assert torch.equal(unpatchify(patches, 8, (2, 3)), image)
    with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
        patchify(torch.randn(1, 3, 30, 32), 8)


def test_wavelength_shape_and_empty_samples_are_errors() -> None:
    embed = SpectralPatchEmbed(patch_size=8, embed_dim=16)
    with pytest.raises(ValueError, match="do not match"):
        embed(torch.randn(2, 13, 16, 16), wavelengths_of("s1"))
    nan_row = torch.full((2, 2), float("nan"))
    nan_row[0] = wavelengths_of("s1")
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have no valid band"):
        embed(torch.randn(2, 2, 16, 16), nan_row)


def test_one_encoder_embeds_many_band_sets() -> None:
    encoder = tiny_encoder()
    enmap = wavelengths_of("enmap")
    assert enmap.shape == (224,) and 418 <= enmap.min() and enmap.max() <= 2446
    band_sets = {
        "s2": wavelengths_of("sentinel2_l1c"),
        "s2_rgbn": torch.from_numpy(S2.select(["B02", "B03", "B04", "B08"]).wavelengths),
        "s1": wavelengths_of("sentinel1_grd"),
        "landsat": wavelengths_of("landsat8_sr"),
        "enmap": enmap,
    }
    pooled = {}
    with torch.no_grad():
        for name, wavelengths in band_sets.items():
            image = torch.randn(2, len(wavelengths), 32, 32)
            tokens = encoder(image, wavelengths)
            assert tokens.shape == (2, 17, 64), name
            assert torch.isfinite(tokens).all(), name
            pooled[name] = tokens[:, 0]
    assert not torch.allclose(pooled["s2"], pooled["s1"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nan_padded_bands_are_ignored(dtype: torch.dtype) -> None:
    encoder = tiny_encoder().to(dtype)
    subset = S2.select(["B02", "B03", "B04", "B08"])
    image = torch.randn(2, 13, 32, 32, dtype=dtype)
    image[1, 4:] = float("nan")  # padded bands may hold anything, NaN included
    wavelengths = torch.from_numpy(S2.wavelengths).repeat(2, 1)
    wavelengths[1, :4] = torch.from_numpy(subset.wavelengths)
    wavelengths[1, 4:] = float("nan")
    alone_image = image[1:, :4]
    alone_wavelengths = torch.from_numpy(subset.wavelengths)
    # float64 shows the maths is exact; float32 differs only by summation-order rounding
    # (13 vs 4 ranges in the projection's reduction), a few ulps of tokens of magnitude ~10.
    tol = 1e-6 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        batched = encoder.patch_embed(image, wavelengths)
        alone = encoder.patch_embed(alone_image, alone_wavelengths)
        torch.testing.assert_close(batched[1:], alone, atol=tol, rtol=tol)
        assert torch.isfinite(batched).all()
        deep = encoder(image, wavelengths)
        torch.testing.assert_close(
            deep[1:], encoder(alone_image, alone_wavelengths), atol=10 * tol, rtol=10 * tol
        )


def test_band_order_does_not_matter() -> None:
    encoder = tiny_encoder()
    image = torch.randn(2, 13, 32, 32)
    wavelengths = wavelengths_of("sentinel2_l1c")
    order = torch.randperm(13, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = encoder.patch_embed(image, wavelengths)
        permuted = encoder.patch_embed(image[:, order], wavelengths[order])
    torch.testing.assert_close(permuted, tokens, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------- encoder
def mae_sincos_reference(dim: int, rows: int, cols: int) -> np.ndarray:
    """MAE's get_2d_sincos_pos_embed, written out independently (first half: column)."""

    def one_axis(positions: np.ndarray, d: int) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
        angles = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    row, col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.concatenate([one_axis(col, dim // 2), one_axis(row, dim // 2)], axis=1)


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_position_embeddings_follow_mae(grid: tuple[int, int]) -> None:
    got = sincos_pos_embed_2d(grid, 32)
    expected = torch.from_numpy(mae_sincos_reference(32, *grid)).float()
    assert got.shape == (grid[0] * grid[1], 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_encoder_accepts_any_multiple_of_the_patch_size() -> None:
    encoder = tiny_encoder().eval()
    wavelengths = wavelengths_of("s2")
    with torch.no_grad():
        for rows, cols in [(32, 32), (48, 24)]:
            image = torch.randn(3, 13, rows, cols)
            tokens = encoder.forward_features(image, wavelengths)
            spatial = encoder.forward_spatial(image, wavelengths)
            grid = (rows // 8, cols // 8)
            assert tokens.shape == (3, 1 + grid[0] * grid[1], 64)
            assert spatial.shape == (3, 64, *grid)
            # Row-major: the feature map at (1, 2) is patch token 1*cols + 2.
            assert torch.equal(spatial[:, :, 1, 2], tokens[:, 1 + grid[1] + 2])
            assert torch.equal(encoder.forward_pooled(image, wavelengths), tokens[:, 0])
            torch.testing.assert_close(
                encoder.forward_pooled(image, wavelengths, pool="avg"), tokens[:, 1:].mean(1)
            )
        # Identical patches everywhere: position embeddings alone make the tokens differ.
        flat = encoder.forward_features(torch.ones(1, 13, 32, 32), wavelengths)[0, 1:]
        assert not torch.allclose(flat[0], flat[1])
        with pytest.raises(ValueError, match="not a multiple"):
            encoder(torch.randn(1, 13, 36, 32), wavelengths)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    encoder = tiny_encoder()
    image, wavelengths = torch.randn(2, 13, 32, 32), wavelengths_of("s2")
    encoder(image, wavelengths).square().mean().backward()
    plain = encoder.blocks[0].attn.qkv.weight.grad.clone()
    encoder.zero_grad()
    encoder.set_grad_checkpointing()
    encoder(image, wavelengths).square().mean().backward()
    torch.testing.assert_close(encoder.blocks[0].attn.qkv.weight.grad, plain)


# ---------------------------------------------------------------------------- MAE
def test_mask_ratio_is_exact_and_masks_differ_per_sample() -> None:
    model = tiny_mae()
    image = torch.randn(4, 13, 64, 64)  # 64 tokens
    for ratio, masked in [(0.75, 48), (0.5, 32), (0.9, 58)]:
        gen = torch.Generator().manual_seed(0)
        out = model(image, wavelengths_of("s2"), mask_ratio=ratio, generator=gen)
        assert out["mask"].shape == (4, 64)
        assert out["mask"].sum(1).tolist() == [masked] * 4
    assert not torch.equal(out["mask"][0], out["mask"][1])
    assert out["pred"].shape == out["target"].shape == (4, 64, 13, 64)
    # Masked positions all start from the same mask token: only position embeddings in the
    # decoder tell them apart.
    masked_preds = out["pred"][0, out["mask"][0].bool()]
    assert not torch.allclose(masked_preds[0], masked_preds[1])


def test_loss_scores_masked_patches_only() -> None:
    model = tiny_mae()
    image, wavelengths = torch.randn(2, 13, 32, 32), wavelengths_of("s2")
    out = model(image, wavelengths, generator=torch.Generator().manual_seed(0))
    pred, mask = out["pred"], out["mask"].bool()
    pred.retain_grad()
    out["loss"].backward()
    per_token_grad = pred.grad.abs().sum(dim=(2, 3))  # [B, N]
    assert (per_token_grad[~mask] == 0).all()  # visible patches never reach the loss
    assert (per_token_grad[mask] > 0).all()
    # Value: normalised-pixel MSE over masked tokens, reproduced by hand.
    patches = patchify(image, 8)
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    target = (patches - mean) / (var + 1e-6).sqrt()
    expected = ((pred - target) ** 2).mean(dim=(2, 3))[mask].mean()
    torch.testing.assert_close(out["loss"], expected)


def test_each_band_is_reconstructed_by_its_range_head() -> None:
    model = tiny_mae()
    red = NAMES.index("red")
    with torch.no_grad():
        model.decoder_pred_weight[red].zero_()
        model.decoder_pred_bias[red].fill_(7.0)
        out = model(torch.randn(2, 13, 32, 32), wavelengths_of("s2"))
    pred = out["pred"]
    b04 = S2.band_names.index("B04")
    assert (pred[:, :, b04] == 7.0).all()
    others = [c for c in range(13) if c != b04]
    assert (pred[:, :, others] != 7.0).all()


def test_nan_padded_batch_scores_only_real_bands() -> None:
    model = tiny_mae()
    image = torch.randn(2, 13, 32, 32)
    image[1, 4:] = float("nan")
    wavelengths = wavelengths_of("s2").repeat(2, 1)
    wavelengths[1, 4:] = float("nan")
    out = model(image, wavelengths, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert out["band_valid"].sum(1).tolist() == [13, 4]
    # Sample 1's token loss averages its 4 real bands only.
    pred, target, mask = out["pred"].detach(), out["target"], out["mask"].bool()
    error = ((pred - target) ** 2).mean(-1)  # [B, N, C]
    token_loss = torch.stack([error[0].mean(-1), error[1, :, :4].mean(-1)])
    torch.testing.assert_close(out["loss"], token_loss[mask].mean())


def test_loss_decreases_on_a_fixed_batch() -> None:
    model = tiny_mae()
    image, wavelengths = smooth_image(2, 13), wavelengths_of("s2")
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(30):
        out = model(image, wavelengths, generator=torch.Generator().manual_seed(0))
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_fixed_seed_is_bit_identical() -> None:
    image, wavelengths = torch.randn(2, 13, 32, 32), wavelengths_of("s2")
    losses = [
        tiny_mae(seed=5)(image, wavelengths, generator=torch.Generator().manual_seed(9))["loss"]
        for _ in range(2)
    ]
    assert torch.equal(losses[0], losses[1])
    other = tiny_mae(seed=5)(image, wavelengths, generator=torch.Generator().manual_seed(10))
    assert not torch.equal(other["loss"], losses[0])


def test_mixup_of_sensors_with_different_band_counts() -> None:
    model = tiny_mae()
    s2_image, s1_image = torch.randn(2, 13, 32, 32), torch.randn(2, 2, 32, 32)
    s2_w, s1_w = wavelengths_of("s2"), wavelengths_of("s1")

    def run(**kwargs):
        return model(
            s2_image, s2_w, s1_image, s1_w, generator=torch.Generator().manual_seed(4), **kwargs
        )

    half = run()
    assert half["pred"].shape == (2, 16, 13, 64) and half["pred_pair"].shape == (2, 16, 2, 64)
    assert half["swap"].sum(1).tolist() == [8, 8]  # exactly mixup_ratio * N positions
    torch.testing.assert_close(half["loss"], 0.5 * (half["loss_view1"] + half["loss_view2"]))
    half["loss"].backward()
    assert model.encoder.patch_embed.weight.grad[NAMES.index("sar_c_cross")].abs().sum() > 0

    with torch.no_grad():
        none = run(mixup_ratio=0.0)
        alone = [
            model(img, w, generator=torch.Generator().manual_seed(4))["loss"]
            for img, w in [(s2_image, s2_w), (s1_image, s1_w)]
        ]
        assert not none["swap"].any()
        torch.testing.assert_close(none["loss_view1"], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(none["loss_view2"], alone[1], atol=1e-5, rtol=1e-5)
        # Swapping every token swaps embeddings, heads and targets together: the same loss.
        full = run(mixup_ratio=1.0)
        assert full["swap"].all()
        torch.testing.assert_close(full["loss"], none["loss"], atol=1e-5, rtol=1e-5)
        # A partial swap mixes both sensors inside each stream: a different loss.
        assert not torch.allclose(run()["loss"], none["loss"], atol=1e-4)
    with pytest.raises(ValueError, match="pair_wavelengths"):
        model(s2_image, s2_w, s1_image)
    with pytest.raises(ValueError, match="share batch size"):
        model(s2_image, s2_w, torch.randn(2, 2, 16, 16), s1_w)


def test_state_dict_round_trip_gives_identical_outputs(tmp_path) -> None:
    model = tiny_mae(seed=1)
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    twin = tiny_mae(seed=2)
    image, wavelengths = torch.randn(2, 13, 32, 32), wavelengths_of("s2")
    before = twin(image, wavelengths, generator=torch.Generator().manual_seed(0))["loss"]
    twin.load_state_dict(load_file(str(path)))
    outputs = [
        m(image, wavelengths, generator=torch.Generator().manual_seed(0)) for m in (model, twin)
    ]
    assert torch.equal(outputs[0]["loss"], outputs[1]["loss"])
    assert torch.equal(outputs[0]["pred"], outputs[1]["pred"])
    assert not torch.equal(before, outputs[1]["loss"])
