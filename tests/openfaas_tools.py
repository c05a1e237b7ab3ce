"""The real OpenFaaS tools, where the environment provides them (never built by the project).

faas-cli and of-watchdog cannot be installed here (the Go module proxy answers 403 for every
``github.com/openfaas/*`` module). Tests that need them take ``FAAS_CLI`` (a faas-cli binary)
and ``WATCHDOG_IMAGE`` (an image holding ``/fwatchdog``) from the environment and skip, saying
so, where those are not given.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

UNAVAILABLE = "the Go module proxy refuses github.com/openfaas/* here"


def faas_cli() -> Path:
    """The faas-cli of ``FAAS_CLI``, or a skip naming why there is none."""
    given = os.environ.get("FAAS_CLI")
    if not given:
        pytest.skip(f"faas-cli not given (set FAAS_CLI to a faas-cli binary; {UNAVAILABLE})")
    path = Path(given)
    if not os.access(path, os.X_OK):
        pytest.fail(f"FAAS_CLI={given} is not an executable file")
    return path


def watchdog_image() -> str:
    """The of-watchdog image of ``WATCHDOG_IMAGE``, or a skip naming why there is none."""
    given = os.environ.get("WATCHDOG_IMAGE")
    if not given:
        pytest.skip(f"no of-watchdog image (set WATCHDOG_IMAGE; {UNAVAILABLE})")
    return given
