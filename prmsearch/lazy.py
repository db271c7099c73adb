"""Names a package imports on first use (PEP 562), so importing it costs almost nothing: torch and transformers load
only when a name that needs them is touched. `prmsearch` and `prmsearch.search` use it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose `names` map each public name to the module that defines it;
    a name once loaded is kept in the package's `namespace` (its globals), so the next lookup is an ordinary one."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
