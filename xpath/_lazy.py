"""Packages whose public names load on first use (PEP 562), so that importing them stays cheap.

A package lists ``name → module`` in a dict and sets
``__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)``: nothing is imported until a name is
first read, and a name read once is stored in the package like an ordinary attribute.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package`` that load each name of ``exports`` from its module on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping
        Public name → module relative to ``package`` (``".registry"``), or ``"module:attribute"``
        where the attribute's name differs from the public one.
    """

    def __getattr__(name: str):
        if name in exports:
            module, _, attr = exports[name].partition(":")
            value = getattr(importlib.import_module(module, package), attr or name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
