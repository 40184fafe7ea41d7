"""What an HTTP request and response look like to the routes, and small sans-I/O helpers.

:class:`Request` and :class:`Response` are the application interface
(``Handler = Request -> Response``); the transport in :mod:`p1_exporter.web.server` builds
the one and writes the other. The helpers here parse request targets and
``Accept-Encoding`` and check response headers; none of them does I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "GZIP_MIN_BYTES",
    "Handler",
    "Headers",
    "Request",
    "Response",
    "accepts_gzip",
    "split_target",
    "valid_header",
]

GZIP_MIN_BYTES = 1024
"""Bodies larger than this are gzip-compressed for clients that accept it."""

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Headers(Mapping[str, str]):
    """Read-only request headers with case-insensitive lookup; repeats are comma-joined."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        merged: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in merged:
                first, joined = merged[key]
                merged[key] = (first, f"{joined}, {value}")
            else:
                merged[key] = (name, value)
        self._items = merged

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items.values())!r})"


@dataclass(frozen=True)
class Request:
    """A parsed GET or HEAD request as the application handler sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    """What the application handler returns; Content-Length and encoding are added later."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Does an Accept-Encoding header allow gzip (explicitly or via ``*``) with q > 0?"""
    if not accept_encoding:
        return False
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = q
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def split_target(target: str) -> tuple[str, dict[str, list[str]]] | None:
    """Request target -> (percent-decoded path, query); None if it is not a path or URL."""
    try:
        if target.lower().startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(target)
            raw_path, query = parts.path or "/", parts.query
        elif target.startswith("/"):
            raw_path, _, query = target.partition("?")
            query = query.partition("#")[0]
        else:
            return None
        path = urllib.parse.unquote(raw_path, errors="replace")
        return path, urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=1000)
    except ValueError:  # a bad URL, or more than max_num_fields query parameters
        return None


def valid_header(name: str, value: str) -> bool:
    """A token name and a one-line value that HTTP/1.1 can carry (Latin-1)."""
    if not _TOKEN_RE.fullmatch(name) or "\r" in value or "\n" in value or "\0" in value:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
