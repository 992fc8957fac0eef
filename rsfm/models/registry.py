"""Model registry: named factory functions, timm-style.

A model is registered in exactly one place, by decorating its factory::

    @register_model
    def smarties_tiny(**overrides) -> SmartiesMAE: ...

Every registered model class records its constructor arguments in ``self.init_args``
(JSON-serialisable), so :func:`model_config` can write a config that :func:`model_from_config`
turns back into the identical architecture. The arguments are written once, in the signature:
:func:`register_to_config` (diffusers' decorator of that name) wraps ``__init__`` and records
them itself::

    class SmartiesEncoder(nn.Module):
        @register_to_config
        def __init__(self, img_size: int = 224, ranges: Sequence | None = None) -> None:
            super().__init__()
            ...
            self.init_args["ranges"] = resolved_table  # a normalised value, where one is needed

The call's arguments are bound to the signature with the defaults applied, made JSON-ready
(tuples become lists, mappings plain dicts, recursively) and set as ``self.init_args`` *before*
the body runs, so ``__init__`` may read them; the body overwrites the few entries it
normalises (a default None resolved to the concrete table, a module replaced by its name), so
a config rebuilds the same model even when a default changes later. ``ignore=`` leaves
arguments out (weights paths travel with the weights, not the config). A decorated subclass
records its own signature: the outermost decorated ``__init__`` records, the base classes'
decorators then stand aside (a subclass that overrides ``__init__`` without the decorator
keeps its nearest decorated base's record, so it should decorate its own).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from torch import nn

ModelT = TypeVar("ModelT", bound=nn.Module)
InitT = TypeVar("InitT", bound=Callable[..., None])

_MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
# name -> the undecorated factory (its return annotation names the class it builds)
_FACTORY_SOURCES: dict[str, Callable[..., nn.Module]] = {}

# Configs may come from downloaded hub entries: only classes of the model registry are built,
# i.e. classes of an ``rsfm.models`` module whose ``__init__`` records its config.
_MODELS_PACKAGE = "rsfm.models"
_CONFIG_SPEC = "__rsfm_config_spec__"  # set on every __init__ that register_to_config wraps


class ModelConfigError(ValueError):
    """A model config that :func:`model_from_config` refuses to build (the message names the
    class path and why: not a registry class, an unknown name, arguments it does not take)."""


@dataclass(frozen=True)
class _ConfigSpec:
    """What a decorated ``__init__`` accepts: its signature and the names never recorded."""

    signature: inspect.Signature
    ignored: frozenset[str]


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
    _FACTORY_SOURCES[name] = factory
    return build


# Set on an instance while a decorated __init__ records it, so the decorators of base classes
# (called through super().__init__) leave the subclass's record alone.
_RECORDING = "_rsfm_recording_init_args"


def _json_ready(value: Any) -> Any:
    """A copy of ``value`` with tuples and lists as lists and mappings as dicts (recursively).

    Other values (numbers, strings, None, or objects the model replaces itself) pass unchanged.
    """
    if isinstance(value, Mapping):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    return value


@overload
def register_to_config(init: InitT, *, ignore: Iterable[str] = ()) -> InitT: ...


@overload
def register_to_config(
    init: None = None, *, ignore: Iterable[str] = ()
) -> Callable[[InitT], InitT]: ...


def register_to_config(
    init: InitT | None = None, *, ignore: Iterable[str] = ()
) -> InitT | Callable[[InitT], InitT]:
    """Decorate a model's ``__init__`` so it records its arguments in ``self.init_args``.

    Use bare (``@register_to_config``) or with options (``@register_to_config(ignore=...)``).
    Every call binds its arguments to the signature (``inspect.signature(init).bind`` with
    ``apply_defaults``), so defaults are recorded too; ``**kwargs`` entries are recorded under
    their own names. The JSON-ready copy is set before the body runs, so the body may read it
    and overwrite the entries it normalises.

    Args:
        init: The ``__init__`` to wrap (given when used bare).
        ignore: Argument names left out of the record.

    Returns:
        The wrapped ``__init__`` (or, with options only, the decorator).

    Raises:
        TypeError: At decoration, for a ``*args`` parameter (not expressible as a config) or an
            ``ignore`` name the signature does not have; at a call, for arguments that do not
            bind (the message names the class).
    """
    ignored = frozenset(ignore)

    def decorate(init: InitT) -> InitT:
        signature = inspect.signature(init)
        parameters = list(signature.parameters.values())[1:]  # without self
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
            raise TypeError(f"{init.__qualname__}: *args cannot be recorded in a config")
        unknown = ignored - {p.name for p in parameters}
        if unknown:
            raise TypeError(f"{init.__qualname__}: ignore names no arguments {sorted(unknown)}")

        @functools.wraps(init)
        def recording_init(self: nn.Module, *args: Any, **kwargs: Any) -> None:
            if self.__dict__.get(_RECORDING):  # a subclass's decorator is recording
                init(self, *args, **kwargs)
                return
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{type(self).__name__}: {error}") from None
            bound.apply_defaults()
            recorded: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    items = value.items()
                else:
                    items = [(name, value)]
                recorded.update((k, _json_ready(v)) for k, v in items if k not in ignored)
            # object.__setattr__: a plain attribute, valid before nn.Module.__init__ has run
            object.__setattr__(self, "init_args", recorded)
            object.__setattr__(self, _RECORDING, True)
            try:
                init(self, *args, **kwargs)
            finally:
                self.__dict__.pop(_RECORDING, None)

        setattr(recording_init, _CONFIG_SPEC, _ConfigSpec(signature, ignored))
        return recording_init  # type: ignore[return-value]

    return decorate if init is None else decorate(init)


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


@functools.cache
def _family_modules() -> frozenset[str]:
    """Dotted names of every module under ``rsfm.models`` (subpackages included)."""
    package = importlib.import_module(_MODELS_PACKAGE)
    return {
        info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{_MODELS_PACKAGE}.")
    }


def _refuse(class_path: str, why: str) -> ModelConfigError:
    return ModelConfigError(f"refusing to build {class_path!r}: {why}")


def _registry_class(class_path: str) -> type[nn.Module]:
    """The class a config may build: defined in an ``rsfm.models`` module, an ``nn.Module``
    whose ``__init__`` records its config (:func:`register_to_config`), not a Lightning task.

    Nothing outside the model package is imported: the module part must be one of its modules.
    """
    module_name, _, class_name = class_path.rpartition(".")
    not_registry = (
        "not an nn.Module class of the model registry (a class of an rsfm.models module whose "
        "__init__ records its config with @register_to_config: a registered model or one of "
        "its components)"
    )
    if not class_name.isidentifier() or module_name not in _family_modules():
        raise _refuse(class_path, not_registry)
    cls = vars(importlib.import_module(module_name)).get(class_name)
    if not (
        isinstance(cls, type)
        and cls.__module__ == module_name
        and cls.__qualname__ == class_name
        and issubclass(cls, nn.Module)
        and isinstance(getattr(cls.__init__, _CONFIG_SPEC, None), _ConfigSpec)
    ):
        raise _refuse(class_path, not_registry)
    if any(
        base.__module__.split(".")[0] in ("lightning", "pytorch_lightning") for base in cls.__mro__
    ):
        raise _refuse(class_path, "a training task, not a model")
    return cls


def _factory_class(name: str) -> type | None:
    """The class a registered factory's return annotation names (None if it names none)."""
    try:
        built = inspect.get_annotations(_FACTORY_SOURCES[name], eval_str=True).get("return")
    except (KeyError, NameError, TypeError, SyntaxError):
        return None
    return built if isinstance(built, type) else None


def _check_name(name: Any, cls: type, class_path: str) -> None:
    """A config's ``name`` is None or a registered model whose factory builds ``cls``."""
    if name is None:
        return
    if not isinstance(name, str) or not is_model(name):
        close = difflib.get_close_matches(str(name), list(_MODEL_FACTORIES), n=3, cutoff=0.6)
        hint = f" (did you mean {close}?)" if close else ""
        raise _refuse(class_path, f"name {name!r} is not a registered model{hint}")
    built = _factory_class(name)
    if built is not None and not issubclass(cls, built):
        raise _refuse(
            class_path,
            f"the registered model {name!r} builds {built.__module__}.{built.__qualname__}",
        )


def _check_init_args(init_args: Any, cls: type, class_path: str) -> dict[str, Any]:
    """``init_args`` as a dict whose keys the class's recorded signature takes."""
    if not isinstance(init_args, Mapping) or not all(isinstance(k, str) for k in init_args):
        raise _refuse(class_path, "init_args must be a JSON object with string keys")
    spec: _ConfigSpec = getattr(cls.__init__, _CONFIG_SPEC)
    parameters = list(spec.signature.parameters.values())[1:]  # without self
    named = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    # Ignored arguments (weights paths) are never recorded, so a config never holds them.
    unknown = sorted(
        k for k in init_args if k in spec.ignored or (k not in named and not takes_kwargs)
    )
    if unknown:
        raise _refuse(
            class_path,
            f"init_args {unknown} are not recorded arguments of {cls.__qualname__} "
            f"(it records {sorted(named - spec.ignored)})",
        )
    return dict(init_args)


def model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from :func:`model_config` output (weights are not loaded).

    Configs may come from downloaded hub entries, so only the model registry is built: the
    ``class_path`` must be a class of an ``rsfm.models`` module whose ``__init__`` records its
    config (:func:`register_to_config`) -- a registered model or one of its components, never
    a task, a helper or a third-party class re-exported by a family module; ``name`` must be
    None or a registered model whose factory builds that class; ``init_args`` may only hold
    arguments the class records. Nothing is imported outside ``rsfm.models``.

    Raises:
        ModelConfigError: (a ``ValueError``) naming the class path, for any refusal above.
    """
    if not isinstance(config, Mapping):
        raise ModelConfigError(f"a model config must be a JSON object, got {type(config).__name__}")
    class_path = config.get("class_path")
    if not isinstance(class_path, str) or not class_path:
        raise ModelConfigError(f"a model config needs a class_path string, got {class_path!r}")
    cls = _registry_class(class_path)
    _check_name(config.get("name"), cls, class_path)
    init_args = _check_init_args(config.get("init_args", {}), cls, class_path)
    model = cls(**init_args)
    if config.get("name"):
        model.model_name = config["name"]
    return model
