"""Load only the parts of kubernetes_asyncio this layer uses.

The access layer needs four things of the library: ``Configuration``, ``ApiClient``, its REST
client and ``ApiException``, plus the kubeconfig loaders. The package's ``__init__`` files
import every generated API and model class besides (about 850 modules, a second of CPU), which
is most of a CLI command's start (`make bench-cli`). ``defer()`` registers those packages
without running their ``__init__``: submodules import as usual, and the first use of any other
name (``client.V1Pod``, ``kubernetes_asyncio.watch``) runs the real ``__init__`` then, so code
that wants the whole library still gets it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

# Names the access layer reads from ``kubernetes_asyncio.client``, and the module defining each.
_LEAN_NAMES = {
    "ApiClient": "api_client",
    "Configuration": "configuration",
    "ApiException": "exceptions",
    "ApiValueError": "exceptions",
}
DEFERRED = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs the first time a name only it defines is read."""

    _init_spec: Any = None

    def __getattr__(self, name: str) -> Any:
        spec = self.__dict__.get("_init_spec")
        if spec is None or name.startswith("__"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        qualified = f"{self.__name__}.{name}"
        if importlib.util.find_spec(qualified) is not None:
            return importlib.import_module(qualified)
        if self.__name__ == "kubernetes_asyncio.client" and name in _LEAN_NAMES:
            value = getattr(
                importlib.import_module(f"{qualified[: -len(name)]}{_LEAN_NAMES[name]}"), name
            )
            setattr(self, name, value)
            return value
        del self.__dict__["_init_spec"]
        spec.loader.exec_module(self)
        return getattr(self, name)


def defer(name: str) -> None:
    """Register the package ``name`` with its ``__init__`` deferred (nothing if imported)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = _DeferredPackage(name)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = name
    module._init_spec = spec
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)


def defer_all() -> None:
    for name in DEFERRED:
        defer(name)
