"""The documentation that is generated or quoted stays in step with the code."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from p1_exporter.commands.cli import SUBCOMMANDS
from p1_exporter.commands.config import build_parser
from p1_exporter.metrics import reference as metrics_doc
from p1_exporter.metrics.catalog import METRICS

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_reference_is_current() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    assert text == metrics_doc.render(), (
        "docs/metrics.md is out of date: python -m p1_exporter.metrics.reference > docs/metrics.md"
    )


def test_readme_mentions_every_contract_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    contract = [
        "p1_energy_import_joules_total",
        "p1_energy_export_joules_total",
        "p1_power_import_watts",
        "p1_phase_voltage_volts",
        "p1_gas_volume_cubic_meters_total",
        "p1_up",
        "p1_telegrams_total",
    ]
    for name in contract:
        assert name in METRICS
        assert name in readme, f"README does not mention {name}"
    assert "docs/metrics.md" in readme


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme[:2500]
    assert "sh scripts/demo.sh" in head
    assert "sh scripts/test.sh" in head
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sh scripts/test.sh" in ci, ".ci/run must run the README's test command"


# -- the README's shell commands work as written after the quick start ---------------------

#: Programs the README's shell blocks may call by name: the system's own, or ones the README
#: asks the reader to install (docker). p1-exporter is on PATH only after the activate line.
_SYSTEM_COMMANDS = {
    "sh",
    "sudo",
    "ls",
    "curl",
    "grep",
    "head",
    "git",
    "rm",
    "cp",
    "cd",
    "apt-get",
    "docker",
    "journalctl",
    "systemctl",
    "python3",
    ".",
}
_ACTIVATE = ". .venv/bin/activate"


def _shell_lines() -> list[tuple[int, str]]:
    """Every command line of the README's ```sh blocks, in order, continuation lines joined."""
    lines: list[tuple[int, str]] = []
    in_block = False
    pending = ""
    for number, raw in enumerate((ROOT / "README.md").read_text().splitlines(), 1):
        if raw.startswith("```"):
            in_block = raw == "```sh"
            continue
        if not in_block:
            continue
        pending += raw
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        if pending.strip():
            lines.append((number, pending.strip()))
        pending = ""
    return lines


def _commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line: split at |, &&, ; and comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("|", "&&", "||", ";"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _after_sudo(words: list[str]) -> list[str]:
    return words[1:] if words[0] == "sudo" else words


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The real parser for a p1-exporter command line: the exporter's or a subcommand's."""
    if argv and argv[0] in SUBCOMMANDS:
        parser = argparse.ArgumentParser(prog=f"p1-exporter {argv[0]}")
        importlib.import_module(SUBCOMMANDS[argv[0]][0]).add_arguments(parser)
        return parser
    return build_parser()


def _runs_by_itself(argv: list[str]) -> bool:
    """Whether a p1-exporter command ends on its own and touches nothing outside the clone."""
    if argv in (["--help"], ["--version"]) or argv[:1] == ["decode"]:
        return True
    return argv[:1] == ["simulate"] and "--count" in argv and not {"--pty", "--tcp"} & set(argv)


def test_readme_commands_use_only_what_is_on_path() -> None:
    """After the quick start, each command in a shell block is on PATH, or a path that exists."""
    lines = _shell_lines()
    assert lines[0][1].startswith("sh scripts/demo.sh"), "the quick start comes first"
    activated = False
    venv_made = False
    for number, line in lines:
        if line.startswith(_ACTIVATE):
            activated = True
        if "python3 -m venv /opt/p1-exporter" in line:
            venv_made = True
        for words in _commands(line):
            program = _after_sudo(words)[0]
            where = f"README.md line {number}: {line}"
            if program == "p1-exporter":
                assert activated, f"{where}: p1-exporter is not on PATH before {_ACTIVATE!r}"
                argv = _after_sudo(words)[1:]
                if not _runs_by_itself(argv) and "--help" not in argv:
                    _parser_for(argv).parse_args(argv[1:] if argv[0] in SUBCOMMANDS else argv)
            elif program.startswith(".venv/bin/"):
                name = program.removeprefix(".venv/bin/")
                assert (Path(sys.prefix) / "bin" / name).exists(), f"{where}: no {program}"
                scripts = [w for w in words[1:] if w.endswith(".py")]
                assert all((ROOT / s).is_file() for s in scripts), f"{where}: {scripts}"
            elif program.startswith("/opt/p1-exporter/"):
                assert venv_made, f"{where}: /opt/p1-exporter is made further down"
            else:
                assert program in _SYSTEM_COMMANDS, (
                    f"{where}: {program!r} is not a system command (add it to "
                    "_SYSTEM_COMMANDS if the README tells the reader to install it)"
                )


def test_readme_p1_exporter_commands_run_as_written() -> None:
    """The README's p1-exporter commands that end on their own run, after the activate line."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("the tests do not run in a virtual environment (run sh scripts/test.sh)")
    ran = []
    for number, line in _shell_lines():
        runnable = [
            _after_sudo(w)[1:] for w in _commands(line) if _after_sudo(w)[0] == "p1-exporter"
        ]
        if not runnable or not all(_runs_by_itself(argv) for argv in runnable):
            continue
        # The README's own activate line, of the venv these tests run in (.venv or another).
        script = f". '{venv}/bin/activate' && {line}"
        result = subprocess.run(
            ["sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        where = f"README.md line {number}: {line}"
        assert result.returncode == 0, f"{where}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), f"{where}: no output"
        assert "Traceback" not in result.stderr and "not found" not in result.stderr, where
        ran.append(line)
    assert any(" decode " in line for line in ran), ran
    assert any(line.startswith("p1-exporter --version") for line in ran), ran


def test_readme_development_section_lists_every_benchmark_and_marker() -> None:
    """Each script in benchmarks/ has its command, and each pytest marker its line."""
    readme = (ROOT / "README.md").read_text()
    development = readme[readme.index("\n## Development\n") :]
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        assert f"benchmarks/{script.name}" in development, f"README lacks {script.name}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = pyproject[pyproject.index("\nmarkers = [") :]
    names = re.findall(r'^    "([a-z_]+):', block[: block.index("\n]")], re.MULTILINE)
    assert names
    for name in names:
        assert f"- `{name}`:" in development, f"README lacks the marker {name}"
