"""Package faces: a subpackage re-exports its modules' public names, imported only when first asked for.

``shapnas.config``, ``shapnas.data``, ``shapnas.search`` and the other subpackages were single modules in
earlier releases; their faces keep ``from shapnas.config import resolve_config`` and friends working for
notebooks and user code. Inside the package, modules import the concrete module instead
(``from shapnas.config.stage_configs import …``), which keeps the import graph honest and keeps a light
command (``python -m shapnas --help``) from importing PyTorch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Sequence[str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) that finds ``name`` in the ``__all__`` of ``modules``.

    Args:
        package: the subpackage's ``__name__``.
        modules: its module names, searched in order (imported on the first look-up that reaches them).

    Returns:
        The ``__getattr__`` function for the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for module_name in modules:
            module = importlib.import_module(f"{package}.{module_name}")
            if name in getattr(module, "__all__", ()):
                return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r} (looked in {', '.join(modules)})")

    return __getattr__
