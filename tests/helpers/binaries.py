"""Locate external binaries (prometheus, promtool, chromium) for tests.

A missing binary skips the test on a developer laptop, but fails it under CI
(``CI=true``), where .ci/run is responsible for installing it.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str, package: str = "prometheus") -> str:
    """Return the path of ``name``, or skip (locally) / fail (CI) when absent;
    ``package`` is the Debian package that installs it."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)
