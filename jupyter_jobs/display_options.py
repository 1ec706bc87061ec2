"""How the notebook shows values: NumPy's print options and pandas' options, sent with a cell.

After `np.set_printoptions(precision=3, suppress=True)` or `pd.set_option("display.max_rows",
10)` in the kernel, a job cell prints arrays and frames as the inline cell would. These settings
are global state, not variables, so the kernel reads them and the worker sets them before the
cell runs. They go one way: a cell that changes them changes the worker's, as a cell's
`%config` would change only its own process.

As with `rng`, only modules already imported are read (reading must not import pandas), and
only settings that differ from the defaults travel: a value that cannot be pickled or set is
skipped, and the cell then prints with the default, which is what it would show in a fresh
kernel.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def _numpy_read(np: Any) -> dict[str, Any]:
    options = dict(np.get_printoptions())
    defaults = {
        "edgeitems": 3,
        "threshold": 1000,
        "floatmode": "maxprec",
        "precision": 8,
        "suppress": False,
        "linewidth": 75,
        "nanstr": "nan",
        "infstr": "inf",
        "sign": "-",
        "formatter": None,
        "legacy": False,
    }
    return {k: v for k, v in options.items() if k in defaults and defaults[k] != v}


def _numpy_set(np: Any, options: dict[str, Any]) -> None:
    np.set_printoptions(**options)


def _pandas_read(pd: Any) -> dict[str, Any]:
    # pandas lists its options (and their defaults) only in its config module's registry
    from pandas._config import config

    deprecated = getattr(config, "_deprecated_options", {})  # reading one warns (pandas 3)
    changed = {}
    for key, option in config._registered_options.items():
        if key in deprecated:
            continue
        try:
            value = pd.get_option(key)
        except Exception:  # deprecated or removed options raise on read
            continue
        if value != option.defval:
            changed[key] = value
    return changed


def _pandas_set(pd: Any, options: dict[str, Any]) -> None:
    for key, value in options.items():
        try:
            pd.set_option(key, value)
        except Exception:
            continue  # an option this pandas lacks: the worker's default stands


#: Module name -> (read the changed settings, set them); the module is the first argument.
_SETTINGS: dict[str, tuple[Callable[[Any], dict[str, Any]], Callable[[Any, Any], None]]] = {
    "numpy": (_numpy_read, _numpy_set),
    "pandas": (_pandas_read, _pandas_set),
}


def capture() -> dict[str, dict[str, Any]]:
    """The settings that differ from the defaults, of the modules this process has imported."""
    found = {}
    for name, (read, _) in _SETTINGS.items():
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            changed = read(module)
        except Exception:
            continue  # a version whose settings read differently: its defaults stand
        if changed:
            found[name] = changed
    return found


def restore(settings: dict[str, dict[str, Any]] | None) -> list[str]:
    """Set `capture()`'s settings, importing their modules (the cell may print a frame without
    importing pandas itself); returns the module names set."""
    done = []
    for name, changed in (settings or {}).items():
        if name not in _SETTINGS:
            continue
        try:
            module = importlib.import_module(name)
            _SETTINGS[name][1](module, changed)
        except Exception:
            continue  # the cell cannot use it either, or prints with the defaults
        done.append(name)
    return done
