"""Model registry: named factory functions, timm-style.

A model is registered in exactly one place, by decorating its factory::

    @register_model
    def smarties_tiny(**overrides) -> SmartiesMAE: ...

Every registered model class stores its constructor arguments in ``self.init_args``
(JSON-serialisable), so :func:`model_config` can write a config that :func:`model_from_config`
turns back into the identical architecture.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

ModelT = TypeVar("ModelT", bound=nn.Module)

_MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {}

# Configs may come from downloaded hub entries: only classes of this package are instantiated.
_ALLOWED_CLASS_PREFIX = "rsfm."


def register_model(factory: Callable[..., ModelT]) -> Callable[..., ModelT]:
    """Register a model factory under its function name.

    The wrapped factory tags the model it builds with ``model_name``.

    Raises:
        ValueError: If a model of that name is already registered.
    """
    name = factory.__name__
    if name in _MODEL_FACTORIES:
        raise ValueError(f"model {name!r} is already registered")

    @functools.wraps(factory)
    def build(**overrides: Any) -> ModelT:
        model = factory(**overrides)
        model.model_name = name
        return model

    _MODEL_FACTORIES[name] = build
    return build


def import_families() -> None:
    """Import every module of ``rsfm.models`` once, so all families are registered.

    Families that pull heavy libraries (diffusers, open_clip) are imported only when a lookup
    needs them, keeping ``import rsfm.models`` cheap.
    """
    package = importlib.import_module("rsfm.models")
    for info in pkgutil.iter_modules(package.__path__, prefix="rsfm.models."):
        importlib.import_module(info.name)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models (every family) matching a shell-style pattern."""
    import_families()
    return sorted(n for n in _MODEL_FACTORIES if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    """Whether a model of that name is registered (in any family)."""
    if name not in _MODEL_FACTORIES:
        import_families()
    return name in _MODEL_FACTORIES


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: Registered model name, e.g. ``smarties_base``.
        **overrides: Constructor arguments replacing the variant's defaults.

    Raises:
        KeyError: If the name is unknown (the message lists close matches).
    """
    if name not in _MODEL_FACTORIES:
        import_families()
    try:
        factory = _MODEL_FACTORIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODEL_FACTORIES), n=5, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} Registered models: {list_models()}") from None
    return factory(**overrides)


def model_config(model: nn.Module) -> dict[str, Any]:
    """Describe a model so that :func:`model_from_config` rebuilds the same architecture.

    Returns:
        ``{"name": registered name or None, "class_path": "module.Class", "init_args": {...}}``.

    Raises:
        TypeError: If the model does not record its ``init_args``.
    """
    init_args = getattr(model, "init_args", None)
    if not isinstance(init_args, dict):
        raise TypeError(
            f"{type(model).__name__} does not record its constructor arguments in `init_args`"
        )
    cls = type(model)
    return {
        "name": getattr(model, "model_name", None),
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": dict(init_args),
    }


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from :func:`model_config` output (weights are not loaded).

    Raises:
        ValueError: If ``class_path`` is outside the ``rsfm`` package or not an ``nn.Module``.
    """
    class_path = config["class_path"]
    if not class_path.startswith(_ALLOWED_CLASS_PREFIX):
        raise ValueError(
            f"refusing to build {class_path!r}: only classes under {_ALLOWED_CLASS_PREFIX!r} "
            "can be built from a config"
        )
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{class_path!r} is not an nn.Module class")
    model = cls(**config.get("init_args", {}))
    if config.get("name"):
        model.model_name = config["name"]
    return model
