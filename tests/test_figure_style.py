"""figures.py: the matplotlib style read in one process and set in another (the kernel and the
worker), each in a fresh interpreter, so that this process's rcParams stay as they are. The
worker's figures themselves are tested in test_runner.py, a notebook's in
integration/test_figures.py."""

from __future__ import annotations

import base64
import textwrap

import dill
from test_rng import run_python


def test_a_process_without_matplotlib_has_no_style_and_imports_nothing():
    script = textwrap.dedent(
        """
        import sys
        from jupyter_jobs import figures
        print(figures.style(), figures.restore({"rc": {}}), "matplotlib" in sys.modules)
        """
    )
    assert run_python(script) == "None [] False\n"


def test_a_style_set_elsewhere_gives_the_same_rcparams_and_names_what_is_refused():
    sender = textwrap.dedent(
        """
        import base64, dill, seaborn
        from jupyter_jobs import figures
        seaborn.set_theme(style="darkgrid")
        seaborn.set_palette("muted")
        print(base64.b64encode(dill.dumps(figures.style())).decode())
        """
    )
    sent = dill.loads(base64.b64decode(run_python(sender)))
    assert sent["rc"]["axes.facecolor"] == "#EAEAF2" and "rocket" in sent["colormaps"]
    receiver = textwrap.dedent(
        """
        import sys, dill
        import matplotlib.pyplot as plt
        from jupyter_jobs import figures
        sent = dill.loads(sys.stdin.buffer.read())
        refused = figures.restore({**sent, "rc": {**sent["rc"], "no.such.key": 1}})
        plt.imshow([[0, 1]])  # seaborn's default colormap, which this process never imported
        print(figures.style()["rc"] == sent["rc"], refused)
        """
    )
    assert run_python(receiver, stdin=dill.dumps(sent)) == "True ['no.such.key']\n"


def test_inline_settings_sent_before_the_first_figure_reach_the_inline_backend():
    script = textwrap.dedent(
        """
        import os, sys
        from IPython.core.interactiveshell import InteractiveShell
        from jupyter_jobs import figures
        shell = InteractiveShell.instance()
        figures.restore({"inline": {"figure_formats": {"svg"}}})
        print("matplotlib" in sys.modules, figures.style())
        os.environ["MPLBACKEND"] = figures.INLINE_BACKEND
        import matplotlib.pyplot as plt
        plt.figure()  # the backend sets itself up on the shell, from its configuration
        print(sorted(figures.style()["inline"]["figure_formats"]))
        """
    )
    assert run_python(script).splitlines() == [
        "False {'inline': {'figure_formats': {'svg'}}}",
        "['svg']",
    ]
