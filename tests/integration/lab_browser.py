"""JupyterLab in Chromium, for the browser tests, the tab benchmark and the README's screenshots.

Debian's Chromium is launched by Playwright (no browser download is possible here) with the flags
a closed network needs, and a server home gets a built labextension linked into its private data
dir, so the page loads that build whether or not the package is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servers import REPO, JupyterHome

#: The extension built in this checkout (`cd labextension && npm run build:prod`, or `pip install`).
LABEXTENSION = REPO / "jupyter_jobs" / "labextension"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: No news feed or update check (no network here), and no toast asking about them.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium through Playwright's sync API; the caller closes it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def lab_home(base: Path, labextension: Path = LABEXTENSION) -> JupyterHome:
    """A private server home whose JupyterLab loads `labextension` and shows no announcements."""
    if not (labextension / "package.json").is_file():
        raise FileNotFoundError(
            f"{labextension} is missing: build the extension first "
            "(cd labextension && npm install && npm run build:prod)"
        )
    home = JupyterHome.create(base)
    target = home.data_dir / "labextensions" / "jupyter-jobs"
    target.parent.mkdir(parents=True)
    target.symlink_to(labextension, target_is_directory=True)
    labconfig = home.config_dir / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    return home
