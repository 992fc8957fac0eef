"""One generic test over every registered model, plus the registry's own behaviour."""

from __future__ import annotations

import json

import pytest
import torch

from rsfm.models import (
    SmartiesMAE,
    create_model,
    is_model,
    list_models,
    model_config,
    model_from_config,
    register_model,
)
from rsfm.sensors import get_sensor

ALL_MODELS = list_models()
TINY_MODELS = list_models("*tiny*")


def _build(name: str) -> torch.nn.Module:
    """Tiny models for real; bigger ones on the meta device (shapes only, no memory)."""
    if name in TINY_MODELS:
        return create_model(name)
    with torch.device("meta"):
        return create_model(name)


def _expected_mae_params(a: dict) -> int:
    """Parameter count of a SmartiesMAE from its init args, by formula."""
    num_ranges, pixels = len(a["ranges"]), a["patch_size"] ** 2

    def blocks(dim: int, depth: int) -> int:
        hidden = int(dim * a["mlp_ratio"])
        attention = 4 * dim * dim + 4 * dim  # qkv + proj, with biases
        mlp = 2 * dim * hidden + hidden + dim
        return depth * (attention + mlp + 4 * dim)  # + two LayerNorms

    d, dd = a["embed_dim"], a["decoder_embed_dim"]
    encoder = num_ranges * (pixels * d + d) + d + blocks(d, a["depth"]) + 2 * d
    decoder = d * dd + dd + dd + blocks(dd, a["decoder_depth"]) + 2 * dd
    heads = num_ranges * (dd * pixels + pixels)
    return encoder + decoder + heads


def test_registry_lists_the_smarties_variants() -> None:
    for name in ("smarties_tiny", "smarties_small", "smarties_base", "smarties_large"):
        assert name in ALL_MODELS and is_model(name)
    assert list_models("smarties_b*") == ["smarties_base"]
    assert TINY_MODELS, "every family needs a tiny variant for CPU tests"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_builds_with_the_expected_parameter_count(name: str) -> None:
    model = _build(name)
    assert model.model_name == name
    count = sum(p.numel() for p in model.parameters())
    if isinstance(model, SmartiesMAE):
        assert count == _expected_mae_params(model.init_args)
    assert count > 0


def test_vit_sizes_match_their_names() -> None:
    with torch.device("meta"):
        base, large = create_model("smarties_base"), create_model("smarties_large")
    encoder_params = [sum(p.numel() for p in m.encoder.blocks.parameters()) for m in (base, large)]
    # ViT-B/16 blocks hold ~85.1 M parameters, ViT-L/16 blocks ~302.4 M.
    assert encoder_params[0] == pytest.approx(85.05e6, rel=0.01)
    assert encoder_params[1] == pytest.approx(302.3e6, rel=0.01)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_round_trips_into_an_identical_model(name: str) -> None:
    model = _build(name)
    config = json.loads(json.dumps(model_config(model)))  # must be JSON-serialisable
    assert config["name"] == name
    assert config["class_path"] == f"{type(model).__module__}.{type(model).__qualname__}"
    device = "cpu" if name in TINY_MODELS else "meta"
    with torch.device(device):
        rebuilt = model_from_config(config)
    assert type(rebuilt) is type(model)
    assert rebuilt.init_args == model.init_args
    assert rebuilt.model_name == name
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == expected
    if isinstance(model, SmartiesMAE):  # the encoder alone is rebuildable too (fine-tuning)
        encoder_config = json.loads(json.dumps(model_config(model.encoder)))
        assert encoder_config["name"] is None
        with torch.device(device):
            encoder = model_from_config(encoder_config)
        expected = {k: tuple(v.shape) for k, v in model.encoder.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == expected


def _example_inputs(model: torch.nn.Module) -> dict:
    """The family's own example inputs (``example_inputs()``), else a Sentinel-2 batch."""
    if hasattr(model, "example_inputs"):
        return model.example_inputs(batch_size=2)
    size = model.init_args.get("img_size", 32)
    s2 = get_sensor("sentinel2_l1c")
    return {
        "image": torch.randn(2, len(s2), size, size),
        "wavelengths": torch.from_numpy(s2.wavelengths),
    }


def _float_outputs(output: object) -> list[torch.Tensor]:
    """Every floating-point tensor in a model output (tensor, tuple, dict or dataclass)."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        return [t for v in output.values() for t in _float_outputs(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _float_outputs(v)]
    if hasattr(output, "__dict__"):
        return [t for v in vars(output).values() for t in _float_outputs(v)]
    return []


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_models_train_one_step_with_finite_loss(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    is_mae = isinstance(model, SmartiesMAE)
    custom = hasattr(model, "example_inputs")
    inputs = _example_inputs(model)

    def loss_of(network: torch.nn.Module) -> torch.Tensor:
        torch.manual_seed(1)  # families that sample noise or masks inside forward
        if is_mae:
            return network(**inputs, generator=torch.Generator().manual_seed(3))["loss"]
        outputs = _float_outputs(network(**inputs))
        return sum(o.pow(2).mean() for o in outputs)  # any scalar of the outputs

    loss = loss_of(model)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in trainable if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if not custom:  # encoders and heads: every trainable parameter takes part
        assert len(grads) == len(trainable)
    # The rebuilt twin with the same weights gives the same loss.
    twin = model_from_config(model_config(model))
    twin.load_state_dict(model.state_dict())
    model.eval()
    twin.eval()
    assert torch.equal(loss_of(twin), loss_of(model))


def test_overrides_are_recorded_in_the_config() -> None:
    model = create_model("smarties_tiny", mask_ratio=0.5, depth=1)
    config = model_config(model)
    assert config["init_args"]["mask_ratio"] == 0.5
    assert config["init_args"]["depth"] == 1
    assert len(model.encoder.blocks) == 1
    with pytest.raises(TypeError, match="no_such_argument"):
        create_model("smarties_tiny", no_such_argument=1)


def test_unknown_model_name_lists_close_matches() -> None:
    with pytest.raises(KeyError, match="smarties_tiny") as info:
        create_model("smarties_tinny")
    assert "did you mean" in str(info.value)


def test_a_name_can_be_registered_only_once() -> None:
    def smarties_tiny() -> SmartiesMAE:  # same name as the registered variant
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="already registered"):
        register_model(smarties_tiny)


def test_model_from_config_only_builds_rsfm_classes() -> None:
    with pytest.raises(ValueError, match="refusing"):
        model_from_config({"class_path": "os.system", "init_args": {}})
    with pytest.raises(ValueError, match="not an nn.Module"):
        model_from_config({"class_path": "rsfm.models.layers.spectral.patchify", "init_args": {}})
