"""Moved to :mod:`tests.helpers.tls`; kept for modules not yet switched over."""

from tests.helpers.tls import CLIENT_SAN, OTHER_CLIENT_SAN, PKI, make_leaf, make_pki

__all__ = ["CLIENT_SAN", "OTHER_CLIENT_SAN", "PKI", "make_leaf", "make_pki"]
