"""Package attributes that import their submodule on first use (PEP 562).

A package that lists ``{public name: submodule}`` gets ``__getattr__`` / ``__dir__`` from
:func:`lazy_exports`, so importing it (e.g. ``rsfm.hub`` for ``rsfm hub --help``) does not import
torch until a name is used.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose names live in the ``exports`` submodules.

    Args:
        package: The package's ``__name__``.
        exports: Public name -> submodule (relative to ``package``) that defines it.
        namespace: The package's ``globals()``; loaded names are cached there.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
