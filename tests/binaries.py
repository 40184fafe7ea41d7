"""Moved to :mod:`tests.helpers.binaries`; kept for modules not yet switched over."""

from tests.helpers.binaries import require_binary

__all__ = ["require_binary"]
