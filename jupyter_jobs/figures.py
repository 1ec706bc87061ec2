"""Matplotlib in a cell job: figures show as they do in the kernel, and look the same.

In a notebook, ipykernel's shell uses matplotlib's inline backend (matplotlib_inline): the
figures a cell leaves open are displayed as PNG when it ends (`flush_figures`, a post_execute
hook), `plt.show()` and `display(fig)` display them, and `%matplotlib inline` is a no-op that
works. The worker's shell does the same (`InlineShell`, `prepare`), and the kernel's style travels
with the cell both ways (`style`, `restore`), so that a job's figure looks as the kernel's would:
the rcParams the notebook changed (`plt.style.use`, `sns.set_theme()`, `plt.rcParams[...]`) and
the inline backend's own settings (`%config InlineBackend.figure_format`, ...).

Nothing here imports matplotlib unless it is already imported or the other side sent a style:
checking costs nothing to a cell that never plots.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from IPython.core.error import UsageError

#: The backend a notebook kernel gives matplotlib (ipykernel sets it as MPLBACKEND too).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: `%matplotlib X` choices that need no screen nor a live kernel: allowed in a job.
_SCREENLESS = {"inline", "agg", "svg", "pdf", "ps"}
#: rcParams that are no part of a figure's look: never sent, never set.
_NOT_STYLE = ("backend", "backend_fallback", "interactive", "toolbar", "savefig.directory")
_NOT_STYLE_PREFIXES = ("webagg.", "tk.")
#: The inline backend's settings that change how a figure is shown.
_INLINE_SETTINGS = ("figure_formats", "print_figure_kwargs", "close_figures")


class InlineShell:
    """What ipykernel's shell adds for matplotlib, for a shell without a GUI event loop.

    Mixed into the worker's shell (before InteractiveShell): `%matplotlib inline` and
    `shell.enable_matplotlib("inline")` work (IPython asks `enable_gui`, which only kernels and
    terminals implement), `%matplotlib` alone means inline as in a notebook, and a GUI backend
    is refused by name before matplotlib switches to it.
    """

    def enable_matplotlib(self, gui: str | None = None) -> tuple[str | None, str]:
        gui = "inline" if gui in (None, "auto") else gui
        if gui not in _SCREENLESS:
            raise UsageError(
                f"`%matplotlib {gui}` needs a screen or a live kernel, and a job has neither: "
                "its figures show as images at the end of the cell (`%matplotlib inline`)"
            )
        return super().enable_matplotlib(gui)  # type: ignore[misc]

    def enable_gui(self, gui: str | None = None) -> None:
        """Inline (or no GUI) needs no event loop; anything else was refused above."""
        if gui not in (None, "inline"):
            raise UsageError(f"a job has no GUI event loop for {gui!r}")


def prepare(shell: Any, style: dict[str, Any] | None) -> None:
    """Before a cell runs: figures as in a notebook, in the kernel's style (`style()`'s dict).

    matplotlib already imported (the cell's `plt` came with it, or an earlier function job
    imported it) or rcParams sent: the inline backend now, then the style (the defaults when
    none came: the kernel has not imported matplotlib). Otherwise the cell may import
    matplotlib itself: the backend is named in the environment, and matplotlib_inline sets
    itself up on the shell when pyplot loads it, as in a kernel.
    """
    if importlib.util.find_spec("matplotlib_inline") is None:
        return  # this interpreter cannot show figures: plain matplotlib, as in a script
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    style = dict(style or {})
    if "matplotlib" in sys.modules or "rc" in style:
        shell.enable_matplotlib("inline")
        style.setdefault("rc", {})
    refused = restore(style)
    if refused:
        print(f"jupyter_jobs: this matplotlib refused the kernel's {refused}", file=sys.stderr)


def style() -> dict[str, Any] | None:
    """The look of this process's figures, or None when nothing is known of it.

    `rc`: the rcParams that differ from matplotlib's defaults, and `colormaps`: the default
    colormap when it is not matplotlib's (only once matplotlib is imported); `inline`: the
    inline backend's settings (`%config InlineBackend...`), from the backend or, before its
    first figure, from the shell's configuration, which is where `%config` leaves them.
    """
    found: dict[str, Any] = {}
    if "matplotlib" in sys.modules:
        import matplotlib

        defaults = matplotlib.rcParamsDefault
        rc = {
            key: value
            for key, value in matplotlib.rcParams.items()
            if _is_style(key) and (key not in defaults or defaults[key] != value)
        }
        found["rc"] = rc
        if isinstance(rc.get("image.cmap"), str):
            # a colormap a library registered (seaborn's "rocket"): the other side may lack it
            found["colormaps"] = {rc["image.cmap"]: matplotlib.colormaps[rc["image.cmap"]]}
    inline = _inline_settings()
    if inline:
        found["inline"] = inline
    return found or None


def restore(found: dict[str, Any] | None) -> list[str]:
    """Give figures the look `style()` read elsewhere; returns the rcParams this matplotlib
    does not accept (another version), which are left as they are.

    Imports matplotlib only for rcParams other than the defaults: a cell that set a style
    with matplotlib the kernel had not imported still styles the kernel's next figure.
    """
    found = found or {}
    refused = []
    rc = found.get("rc")
    if rc is not None and ("matplotlib" in sys.modules or rc):
        refused = _restore_rc(rc, found.get("colormaps") or {})
    _restore_inline(found.get("inline") or {})
    return refused


def _restore_rc(rc: dict[str, Any], colormaps: dict[str, Any]) -> list[str]:
    import matplotlib

    for name, colormap in colormaps.items():
        if name not in matplotlib.colormaps:
            matplotlib.colormaps.register(colormap, name=name)
    wanted = {k: v for k, v in matplotlib.rcParamsDefault.items() if _is_style(k)}
    wanted.update(rc)
    refused = []
    for key, value in wanted.items():
        if not _is_style(key):
            continue
        try:
            if key not in matplotlib.rcParams or matplotlib.rcParams[key] != value:
                matplotlib.rcParams[key] = value
        except (KeyError, ValueError):
            refused.append(key)
    return refused


def _restore_inline(settings: dict[str, Any]) -> None:
    settings = {k: v for k, v in settings.items() if k in _INLINE_SETTINGS}
    if not settings:
        return
    backend = _inline_backend() or _set_up_inline()
    if backend is not None:
        for name, value in settings.items():
            if getattr(backend, name) != value:
                setattr(backend, name, value)  # its observers update the shell's formatters
        return
    shell = _shell()
    if shell is not None:  # the backend reads them when the first figure makes it
        shell.config.InlineBackend.update(settings)


def _set_up_inline() -> Any:
    """A kernel whose figures were all drawn by jobs sets its inline backend up now, as its
    first figure would have: a figure that comes back as a cell's value shows as an image."""
    shell = _shell()
    if shell is None or "matplotlib" not in sys.modules:
        return None
    import matplotlib

    if matplotlib.rcParams._get("backend") not in (INLINE_BACKEND, "inline"):
        return None  # the kernel chose another backend: not ours to change
    importlib.import_module("matplotlib_inline.backend_inline")  # it sets itself up on import
    return _inline_backend()


def _inline_settings() -> dict[str, Any]:
    backend = _inline_backend()
    if backend is not None:
        return {name: getattr(backend, name) for name in _INLINE_SETTINGS}
    shell = _shell()
    section = shell.config.get("InlineBackend") if shell is not None else None
    if not section:
        return {}
    settings = {name: section[name] for name in _INLINE_SETTINGS if name in section}
    if section.get("figure_format"):  # the older, singular setting
        settings["figure_formats"] = {section["figure_format"]}
    return settings


def _is_style(key: str) -> bool:
    return key not in _NOT_STYLE and not key.startswith(_NOT_STYLE_PREFIXES)


def _shell() -> Any:
    from IPython.core.getipython import get_ipython

    return get_ipython()


def _inline_backend() -> Any:
    """The inline backend's configuration once this process set the backend up (never made
    here: importing it imports matplotlib, and setting it up is the first figure's job)."""
    module = sys.modules.get("matplotlib_inline.config")
    if module is None or not module.InlineBackend.initialized():
        return None
    return module.InlineBackend.instance()
