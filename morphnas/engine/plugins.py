"""User plugins: modules or ``.py`` files that register kernels, acquisitions, strategies (or anything else
with a registry) when imported, named in a search's config so they survive a restart.

``plugins = ["mypackage.kernels", "./my_kernel.py"]``: a dotted name is imported as a module; a path (it ends
in ``.py`` or contains a path separator) is resolved against the working directory when the search starts
and stored absolute in the run's ``config.json``, so ``resume`` in another shell finds the same file. The
engine imports the plugins before anything is built: at start, on resume, in every worker process, and
before ``report``/``export`` read a run. Importing is idempotent (a plugin already imported in this process
is not run again), so a plugin's ``register_*`` calls run once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType


class PluginError(ValueError):
    """A plugin named in the configuration cannot be found or fails to import."""


def is_path(name: str) -> bool:
    """Whether a plugin is named by a file path rather than a module name."""
    return name.endswith(".py") or os.sep in name or "/" in name


def resolve(names: Iterable[str], base: str | Path | None = None) -> list[str]:
    """Plugin names with every path made absolute (against ``base``, default the working directory)."""
    root = Path(base) if base is not None else Path.cwd()
    out = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise PluginError(f"a plugin must be a module name or a .py path, got {name!r}")
        out.append(str((root / Path(name).expanduser()).resolve()) if is_path(name) else name)
    return out


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"morphnas_plugin_{path.stem}_{digest}"


def load_plugin(name: str) -> ModuleType:
    """Import one plugin (once per process); PluginError names it and says what went wrong."""
    if is_path(name):
        path = Path(name)
        module_name = _module_name(path)
        if not path.is_file():  # checked first, so a run never silently depends on a file that is gone
            raise PluginError(f"plugin file {path} does not exist (named in the search's plugins)")
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"plugin file {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise PluginError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    if name in sys.modules:
        return sys.modules[name]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise PluginError(f"plugin module {name!r} cannot be found ({exc}); install it or name a .py file") from None
    except Exception as exc:
        raise PluginError(f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}") from exc


def load_plugins(names: Iterable[str]) -> list[ModuleType]:
    """Import every plugin in order (see ``load_plugin``)."""
    return [load_plugin(name) for name in names]
