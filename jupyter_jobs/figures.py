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
    imported it) or a style sent: the inline backend now, then the style. Otherwise the cell
    may import matplotlib itself: the backend is named in the environment, and matplotlib_inline
    sets itself up on the shell when pyplot loads it, as in a kernel.
    """
    if importlib.util.find_spec("matplotlib_inline") is None:
        return  # this interpreter cannot show figures: plain matplotlib, as in a script
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    if "matplotlib" not in sys.modules and style is None:
        return
    shell.enable_matplotlib("inline")
    refused = restore(style or {"rc": {}})  # none sent: the kernel's figures have the defaults
    if refused:
        print(f"jupyter_jobs: this matplotlib refused the kernel's {refused}", file=sys.stderr)


def style() -> dict[str, Any] | None:
    """The look of this process's figures: the rcParams that differ from matplotlib's defaults
    (`rc`), the default colormap when it is not matplotlib's (`colormaps`), and the inline
    backend's settings (`inline`, when it is set up); None when matplotlib is not imported."""
    if "matplotlib" not in sys.modules:
        return None
    import matplotlib

    defaults = matplotlib.rcParamsDefault
    rc = {
        key: value
        for key, value in matplotlib.rcParams.items()
        if _is_style(key) and (key not in defaults or defaults[key] != value)
    }
    found: dict[str, Any] = {"rc": rc}
    if isinstance(rc.get("image.cmap"), str):
        # a colormap a library registered (seaborn's "rocket"): the other side may not have it
        found["colormaps"] = {rc["image.cmap"]: matplotlib.colormaps[rc["image.cmap"]]}
    inline = _inline_backend()
    if inline is not None:
        found["inline"] = {name: getattr(inline, name) for name in _INLINE_SETTINGS}
    return found


def restore(found: dict[str, Any] | None) -> list[str]:
    """Give figures the look `style()` read elsewhere; returns the rcParams this matplotlib
    does not accept (another version), which are left as they are.

    Imports matplotlib only when there is a look to set: a cell that set a style with
    matplotlib the kernel had not imported still styles the kernel's next figure.
    """
    if not found:
        return []
    if "matplotlib" not in sys.modules and not found.get("rc") and "inline" not in found:
        return []
    import matplotlib

    for name, colormap in (found.get("colormaps") or {}).items():
        if name not in matplotlib.colormaps:
            matplotlib.colormaps.register(colormap, name=name)
    wanted = {k: v for k, v in matplotlib.rcParamsDefault.items() if _is_style(k)}
    wanted.update(found.get("rc") or {})
    refused = []
    for key, value in wanted.items():
        if not _is_style(key):
            continue
        try:
            if key not in matplotlib.rcParams or matplotlib.rcParams[key] != value:
                matplotlib.rcParams[key] = value
        except (KeyError, ValueError):
            refused.append(key)
    inline = _inline_backend()
    if inline is not None:
        for name, value in (found.get("inline") or {}).items():
            if name in _INLINE_SETTINGS and getattr(inline, name) != value:
                setattr(inline, name, value)  # its observers update the shell's formatters
    return refused


def _is_style(key: str) -> bool:
    return key not in _NOT_STYLE and not key.startswith(_NOT_STYLE_PREFIXES)


def _inline_backend() -> Any:
    """The inline backend's configuration, if this process set the backend up (never made
    here: a kernel that never used the inline backend has none to match)."""
    module = sys.modules.get("matplotlib_inline.config")
    if module is None or not module.InlineBackend.initialized():
        return None
    return module.InlineBackend.instance()
