"""The fidelity suite runs alone with `pytest tests/fidelity` or `pytest -m fidelity`."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fidelity: runs the fidelity notebooks plainly and as %%job --wait (minutes)"
    )
