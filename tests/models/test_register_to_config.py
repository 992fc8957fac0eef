"""``register_to_config``: model init args are written once (the signature) and recorded."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
import torch
from torch import nn

from rsfm.models import (
    DEFAULT_SPECTRAL_RANGES,
    create_model,
    list_models,
    model_config,
    model_from_config,
)
from rsfm.models.registry import register_to_config

ALL_MODELS = list_models()
TINY_MODELS = set(list_models("*tiny*"))
DEFAULT_RANGES = [[r.name, r.min_nm, r.max_nm] for r in DEFAULT_SPECTRAL_RANGES]

# Recorded before the decorator replaced the hand-written dicts (same values, same key order).
EXPECTED: dict[str, dict[str, Any]] = {
    "smarties_tiny": {
        "img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 4, "mlp_ratio": 4.0,
        "mask_ratio": 0.75, "norm_pix_loss": True, "mixup_ratio": 0.5, "projection_scale": 12.0,
        "ranges": DEFAULT_RANGES,
    },
    "smarties_tiny_seg_upernet": {
        "backbone": "smarties_tiny", "backbone_args": {}, "head": "upernet", "num_outputs": 7,
        "head_args": {"channels": 32, "num_features": 4}, "feature_blocks": [0, 0, 1, 1],
        "pool": "cls", "lora": None,
    },
    "crefdiff_tiny": {
        "in_channels": 3, "ref_channels": 3, "scale": 4, "block_out_channels": [16, 32],
        "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 8,
        "num_query_tokens": 4, "window_size": 8, "halo": 2, "use_local": True,
        "use_global": True, "prediction_type": "sample", "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2", "residual_scale": 2.0,
        "only_cross_attention": True,
    },
    "sqa_tiny": {
        "segmenter_dim": 16, "feature_keys": ["prediction"], "semantic_encoder": "smarties_tiny",
        "semantic_args": {}, "semantic_dim": None, "semantic_pool": "avg", "hidden_dim": 64,
        "dropout": 0.1, "use_semantic": True,
    },
    "colearn_tiny_s1": {
        "modalities": {
            "s1": {"encoder": "smarties_tiny", "pool": "avg", "sensor": "sentinel1_grd"}
        },
        "num_outputs": 7, "split_specific": True, "dropout": 0.0, "one_shared_encoder": False,
    },
    "hyperseg_tiny": {
        "num_outputs": 2, "encoder": "mit_b0", "hyper": True, "mixing_channels": 32,
        "decoder_channels": 64, "spectral_step_nm": 5.0, "shape_channels": True,
    },
}  # fmt: skip


def _build(name: str, **overrides: Any) -> nn.Module:
    """Tiny models for real; bigger ones on the meta device (only the config is needed)."""
    if name in TINY_MODELS:
        return create_model(name, **overrides)
    with torch.device("meta"):
        return create_model(name, **overrides)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_init_args_are_unchanged(name: str) -> None:
    init_args = model_config(create_model(name))["init_args"]
    assert _json(init_args) == EXPECTED[name]
    assert list(init_args) == list(EXPECTED[name])  # signature order, as before


def test_normalised_arguments_are_recorded_as_before() -> None:
    encoder = create_model("smarties_tiny").encoder
    assert _json(model_config(encoder)["init_args"]) == {
        "img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4,
        "mlp_ratio": 4.0, "projection_scale": 12.0, "ranges": DEFAULT_RANGES,
        "drop_path_rate": 0.0,
    }  # fmt: skip
    t2e = create_model("text2earth_tiny", pixel_mean=(1, 2, 3, 4), vae=None)
    assert t2e.init_args["pixel_mean"] == [1.0, 2.0, 3.0, 4.0]
    assert all(isinstance(v, float) for v in t2e.init_args["pixel_mean"])
    assert t2e.init_args["vae"] == {}  # None -> {}
    assert isinstance(t2e.init_args["unet"]["down_block_types"], list)  # tuples -> lists
    clip = create_model("clip_rs_tiny", class_names=("a", "b"), rgb_mean=(0.5, 0.5, 0.5))
    assert "pretrained" not in clip.init_args  # ignored: weights travel with the entry
    assert clip.init_args["class_names"] == ["a", "b"] == clip.class_names
    assert clip.init_args["rgb_mean"] == [0.5, 0.5, 0.5]
    finetune = create_model("smarties_tiny_cls", lora={"rank": 2}, feature_blocks=(1,))
    assert finetune.init_args["feature_blocks"] == [1] and finetune.init_args["lora"] == {"rank": 2}
    assert create_model("smarties_tiny_cls", lora={}).init_args["lora"] is None
    crefdiff = create_model("crefdiff_tiny", ref_channels=None, block_out_channels=(16, 32))
    assert crefdiff.init_args["ref_channels"] == 3
    assert crefdiff.init_args["block_out_channels"] == [16, 32]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_records_exactly_its_signature(name: str) -> None:
    model = _build(name)
    modules = [model] + [m for m in model.modules() if isinstance(vars(m).get("init_args"), dict)]
    for module in modules:
        init = type(module).__init__
        assert hasattr(init, "__wrapped__"), f"{type(module).__name__} hand-writes init_args"
        names = [p for p in inspect.signature(init.__wrapped__).parameters if p != "self"]
        recorded = [n for n in names if n in module.init_args]
        assert list(module.init_args) == recorded  # nothing extra, signature order
        if type(module).__name__ == "RSCLIP":
            assert set(names) - set(recorded) == {"pretrained"}
        else:
            assert recorded == names  # defaults included


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_rebuilds_a_model_with_the_same_config(name: str) -> None:
    model = _build(name)
    config = _json(model_config(model))
    with torch.device("cpu" if name in TINY_MODELS else "meta"):
        rebuilt = model_from_config(config)
    assert _json(model_config(rebuilt)) == config
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == expected


# ---------------------------------------------------------------------- the decorator itself
class _Base(nn.Module):
    @register_to_config(ignore=("weights",))
    def __init__(
        self,
        width: int = 4,
        sizes: tuple[int, ...] = (1, 2),
        nested: dict[str, Any] | None = None,
        weights: str | None = None,
    ) -> None:
        self.seen_before_super = dict(self.init_args)  # readable before nn.Module.__init__
        super().__init__()
        self.layer = nn.Linear(width, width)
        self.seen = self.init_args["sizes"]


class _Child(_Base):
    @register_to_config
    def __init__(self, depth: int = 2, **kwargs: Any) -> None:
        super().__init__(width=8, **kwargs)
        self.depth = depth


def test_decorator_binds_defaults_and_makes_a_json_ready_copy() -> None:
    nested = {"a": (1, (2, 3)), "b": {"c": (4,)}}
    model = _Base(3, nested=nested, weights="w.pt")
    assert model.init_args == {
        "width": 3,
        "sizes": [1, 2],
        "nested": {"a": [1, [2, 3]], "b": {"c": [4]}},
    }
    assert model.seen_before_super == model.init_args and model.seen == [1, 2]
    model.init_args["nested"]["b"]["c"].append(5)
    assert nested == {"a": (1, (2, 3)), "b": {"c": (4,)}}  # the caller's value is not aliased
    assert inspect.signature(_Base).parameters["width"].default == 4  # jsonargparse sees it
    assert dict(model.state_dict()).keys() == {"layer.weight", "layer.bias"}


def test_a_decorated_subclass_records_its_own_signature() -> None:
    child = _Child(depth=3, sizes=(5,))
    assert child.init_args == {"depth": 3, "sizes": [5]}  # **kwargs recorded by name
    assert child.seen == [5]  # the base reads the subclass's record (shared keys)
    rebuilt = _Child(**child.init_args)
    assert rebuilt.init_args == child.init_args and rebuilt.depth == 3
    assert _Base().init_args == {"width": 4, "sizes": [1, 2], "nested": None}


def test_decorator_rejects_what_a_config_cannot_hold() -> None:
    with pytest.raises(TypeError, match=r"\*args"):

        class _Star(nn.Module):
            @register_to_config
            def __init__(self, *layers: int) -> None:
                super().__init__()

    with pytest.raises(TypeError, match="nope"):
        register_to_config(ignore=("nope",))(_Base.__init__.__wrapped__)
    with pytest.raises(TypeError, match="_Base.*unexpected keyword argument 'colour'"):
        _Base(colour=1)
