"""The shared YAML reader of --config and --web.config.file: what it refuses, and why.

Every refusal is a one-line :class:`YamlFileError` that says where; the files are real
files (and real devices such as /dev/urandom), read through the same function the
exporter uses.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from p1_exporter.yamlfile import MAX_BYTES, MAX_DEPTH, MAX_NODES, YamlFileError, load_yaml
from tests.helpers.attacks import ALIAS_BOMB


def write(tmp_path: Path, text: str | bytes, name: str = "c.yml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def refusal(path: str, *, strings: bool = False) -> str:
    with pytest.raises(YamlFileError) as caught:
        load_yaml(path, strings=strings)
    message = str(caught.value)
    assert "\n" not in message, message
    assert len(message) < 300, message
    return message


def test_plain_file_loads_with_types(tmp_path: Path) -> None:
    text = "meters:\n  - name: a\n    stale_after: 5\n    x: 1.5\n    t: true\n    p: 2024.pem\n"
    assert load_yaml(write(tmp_path, text)) == {
        "meters": [{"name": "a", "stale_after": 5, "x": 1.5, "t": True, "p": "2024.pem"}]
    }


def test_strings_mode_keeps_numbers_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, "users:\n  1234: x\n  b: 2024-01-01\n  c: ~\n  d: false\n")
    assert load_yaml(path, strings=True) == {
        "users": {"1234": "x", "b": "2024-01-01", "c": None, "d": False}
    }


def test_utf8_bom_and_empty_file(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path, "\ufeffa: 1\n")) == {"a": 1}
    assert load_yaml(write(tmp_path, "")) is None


def test_alias_bomb_is_refused_at_the_first_anchor(tmp_path: Path) -> None:
    path = write(tmp_path, ALIAS_BOMB)
    assert os.path.getsize(path) < 500
    message = refusal(path)
    assert message.startswith("anchor 'a' at line 3, column ")
    assert "anchors and aliases are not allowed" in message


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("a: &x 1\nb: 2\n", "anchor 'x' at line 1"),
        ("a: [1]\nb: *x\n", "alias 'x' at line 2"),  # refused before it is resolved
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "anchor 'b' at line 1"),
    ],
    ids=["anchor", "alias", "merge-via-alias"],
)
def test_any_anchor_or_alias_is_refused(tmp_path: Path, text: str, start: str) -> None:
    assert refusal(write(tmp_path, text)).startswith(start)


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("meters: []\nmeters: [x]\n", "duplicate key 'meters' at line 2, column 1"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "duplicate key 'b' at line 4, column 3"),
        ("- {x: 1, x: 1}\n", "duplicate key 'x' at line 1, column 10"),
    ],
)
def test_duplicate_keys_are_refused(tmp_path: Path, text: str, culprit: str) -> None:
    assert refusal(write(tmp_path, text)) == culprit
    assert refusal(write(tmp_path, text), strings=True) == culprit


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "], ids=["flow-list", "flow-map", "block"])
def test_nesting_is_capped(tmp_path: Path, opener: str) -> None:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    if opener == "- ":
        deep = "".join("  " * i + "-\n" for i in range(100)) + "  " * 100 + "x\n"
    else:
        deep = opener * 10_000 + "1" + closer * 10_000 + "\n"
    assert refusal(write(tmp_path, deep)).startswith(f"nested deeper than {MAX_DEPTH} levels")
    ok = opener * MAX_DEPTH + "1" + closer * MAX_DEPTH + "\n" if opener != "- " else "- x\n"
    assert load_yaml(write(tmp_path, ok)) is not None


def test_number_of_values_is_capped(tmp_path: Path) -> None:
    many = "[" + "x," * (MAX_NODES + 10) + "]\n"
    assert len(many) < MAX_BYTES
    assert refusal(write(tmp_path, many)).startswith(f"more than {MAX_NODES} values")
    assert len(load_yaml(write(tmp_path, "[" + "x," * (MAX_NODES - 10) + "]\n"))) == MAX_NODES - 10


def test_size_is_capped(tmp_path: Path) -> None:
    path = write(tmp_path, "# padding\n" * (MAX_BYTES // 10 + 1))
    assert refusal(path) == f"larger than {MAX_BYTES >> 10} KiB; is this the right file?"
    fits = "# padding\n" * ((MAX_BYTES - 20) // 10) + "a: 1\n"
    assert load_yaml(write(tmp_path, fits)) == {"a": 1}


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"a: 1\n\x00\x01\x02", 5),
        (b"a: \xff\xfe\n", 3),
        (b"\x89PNG\r\n\x1a\n", 0),
        ("a: caf\u00e9\n".encode("latin-1"), 6),
    ],
    ids=["nul", "invalid-utf8", "png", "latin-1"],
)
def test_binary_is_refused_by_offset(tmp_path: Path, data: bytes, offset: int) -> None:
    assert refusal(write(tmp_path, data)) == (
        f"not a text file (binary data at byte {offset}); expected UTF-8 YAML"
    )


def test_random_device_is_read_bounded() -> None:
    assert refusal("/dev/urandom").startswith("not a text file (binary data at byte ")
    assert refusal("/dev/zero").startswith("not a text file (binary data at byte 0)")


def test_endless_text_stream_is_read_bounded(tmp_path: Path) -> None:
    """A FIFO that never ends (`--config <(yes)`): read stops after MAX_BYTES + 1 bytes."""
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)
    stop = threading.Event()
    written = 0

    def writer() -> None:
        nonlocal written
        try:
            with open(fifo, "wb") as out:
                while not stop.is_set() and written < 64 * MAX_BYTES:
                    out.write(b"# comment\n" * 1000)
                    written += 10_000
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert refusal(str(fifo)).startswith("larger than")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert written < 4 * MAX_BYTES  # the reader closed the pipe; nothing more was consumed


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("a: [1, 2\n", "not valid YAML at line 2, column 1: while parsing a flow sequence"),
        ("a: 1\n b: 2\n", "not valid YAML at line 2, column 3: mapping values"),
        ("a: \x07\n", "not valid YAML: unacceptable character #x0007"),
        ("a: " + "9" * 5000 + "\n", "not valid YAML: Exceeds the limit"),
        ("a: !!python/object:os.system x\n", "not valid YAML at line 1, column 4"),
        ("? [1, 2]\n: x\n", "not valid YAML at line 1, column 3: while constructing a mapping"),
    ],
    ids=["unclosed", "indent", "control-char", "huge-int", "python-tag", "unhashable-key"],
)
def test_syntax_errors_are_one_line_with_position(tmp_path: Path, text: str, start: str) -> None:
    assert refusal(write(tmp_path, text)).startswith(start)


def test_unreadable_paths_raise_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_yaml(str(tmp_path / "missing.yml"))
    with pytest.raises(IsADirectoryError):
        load_yaml(str(tmp_path))
