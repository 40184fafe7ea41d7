"""Read a small YAML settings file (``--config``, ``--web.config.file``) with hard limits.

Both files are written by people and read once at start, so anything a person would not
write is refused with a one-line reason instead of being processed:

* more than :data:`MAX_BYTES` (256 KiB) - at most that many bytes are ever read, so
  ``/dev/urandom``, a FIFO or a multi-gigabyte file costs nothing (PyYAML scans about
  1.6 MB/s on a server core, so the cap also keeps parsing well under a second);
* more than :data:`MAX_NODES` values (a flow list of 1 MiB holds 500,000 of them and
  would take 11 s and 360 MB to build);
* bytes that are not UTF-8 text (NUL bytes, invalid UTF-8, control characters);
* anchors and aliases (``&x`` / ``*x``): a few hundred bytes of nested aliases expand
  to billions of values ("billion laughs");
* nesting deeper than :data:`MAX_DEPTH` levels (deep nesting exhausts the recursion);
* the same key twice in one mapping (YAML would silently keep the last one).

``strings=True`` keeps unquoted numbers and dates as text, for formats decoded into Go
strings (exporter-toolkit's web config); only null, booleans and merge keys resolve.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlFileError", "load_yaml", "read_text"]

#: Largest file accepted. A real configuration is a few kilobytes.
MAX_BYTES = 256 << 10
#: Most values (scalars, lists, mappings) accepted; 1,000 meters with a name and a
#: device each take 5,001.
MAX_NODES = 10_000
#: Deepest nesting accepted; the formats read here need four levels.
MAX_DEPTH = 32


class YamlFileError(ValueError):
    """The file cannot be used; ``str()`` is one line that says why and where."""


def _where(mark: Any) -> str:
    """`` at line L, column C`` for a yaml Mark (pure-Python or libyaml), or ""."""
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, deep nesting, too many values and
    duplicate keys while it builds the node tree, i.e. before anything is expanded."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent) or (
            isinstance(event, NodeEvent) and event.anchor is not None
        ):
            kind = "alias" if isinstance(event, AliasEvent) else "anchor"
            raise YamlFileError(
                f"{kind} '{event.anchor}'{_where(event.start_mark)}: anchors and aliases "
                "are not allowed (write the value out)"
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise YamlFileError(f"more than {MAX_NODES} values{_where(event.start_mark)}")
        nested = isinstance(event, CollectionStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise YamlFileError(
                    f"nested deeper than {MAX_DEPTH} levels{_where(event.start_mark)}"
                )
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key; SafeConstructor reports it
                continue
            if duplicate:
                raise YamlFileError(f"duplicate key {_short(key)}{_where(key_node.start_mark)}")
        return super().construct_mapping(node, deep=deep)


class _StringLoader(_StrictLoader):
    """:class:`_StrictLoader` that leaves numbers, dates and the like as strings."""


_StringLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:merge")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode(data: bytes) -> str:
    offset = data.find(b"\0")
    if offset < 0:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            offset = exc.start
    raise YamlFileError(f"not a text file (binary data at byte {offset}); expected UTF-8 YAML")


def read_text(path: str) -> str:
    """The file's text (reads at most :data:`MAX_BYTES` + 1 bytes); OSError, YamlFileError."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        _decode(data[:4096].rstrip(bytes(range(0x80, 0x100))))  # binary? say so first
        raise YamlFileError(f"larger than {MAX_BYTES >> 10} KiB; is this the right file?")
    return _decode(data)


def load_yaml(path: str, *, strings: bool = False) -> Any:
    """Parse ``path`` within the limits above; raises OSError or YamlFileError (one line)."""
    text = read_text(path)
    loader: _StrictLoader | None = None
    try:
        loader = (_StringLoader if strings else _StrictLoader)(text)  # checks characters
        return loader.get_single_data()
    except YamlFileError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(f"{exc.context or ''} {exc.problem or ''}".split()) or "invalid YAML"
        raise YamlFileError(f"not valid YAML{_where(mark)}: {what}") from None
    except yaml.YAMLError as exc:  # ReaderError: a control character in the text
        raise YamlFileError("not valid YAML: " + " ".join(str(exc).split())) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise YamlFileError("not valid YAML: " + " ".join(str(exc).split())[:200]) from None
    finally:
        if loader is not None:
            loader.dispose()
