"""scripts/venv.sh, the venv logic both quick-start scripts share, run by a real ``sh``.

A newcomer's first ``sh scripts/demo.sh`` on a machine without python3-venv leaves a
half-made ``.venv`` behind (bin/python, no pip); after installing python3-venv the next run
must notice it and make the venv again, instead of failing with "No module named pip".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "venv.sh"
pytestmark = pytest.mark.timeout(180)


def _source(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Source scripts/venv.sh in ``cwd`` as demo.sh and test.sh do."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VENV", "VIRTUAL_ENV")}
    environ.update(env)
    return subprocess.run(
        ["sh", "-c", f'set -eu; . "{SCRIPT}"'],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _has_pip(venv: Path) -> bool:
    result = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "--version"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


def test_both_quick_start_scripts_use_the_shared_venv_logic() -> None:
    for name in ("demo.sh", "test.sh"):
        text = (ROOT / "scripts" / name).read_text()
        assert "\n. scripts/venv.sh\n" in text, name
        assert "-m venv" not in text, f"{name} makes a venv of its own"


def test_a_half_made_venv_is_made_again_and_a_good_one_kept(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    # What `python3 -m venv .venv` leaves on Debian without python3-venv: no pip.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    (venv / "left-over").touch()
    assert (venv / "bin/python").exists() and not _has_pip(venv)

    result = _source(tmp_path, PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr
    remade = [line for line in result.stdout.splitlines() if "half-made" in line]
    assert remade == [".venv is half-made (no working python or pip in it); making it again"]
    assert _has_pip(venv)
    assert not (venv / "left-over").exists()
    assert f"== Python {sys.version.split()[0]} (" in result.stdout

    # A working venv stays as it is, and the run says which Python it uses.
    (venv / "kept").touch()
    again = _source(tmp_path, PYTHON=sys.executable)
    assert again.returncode == 0, again.stderr
    assert "again" not in again.stdout
    assert (venv / "kept").exists()
    assert again.stdout.strip().endswith(" in .venv")

    # A Python upgrade leaves bin/python dangling: made again too (VENV names another dir).
    moved = tmp_path / "other"
    venv.rename(moved)
    (moved / "bin/python").unlink()
    (moved / "bin/python").symlink_to(tmp_path / "no-such-python")
    third = _source(tmp_path, PYTHON=sys.executable, VENV="other")
    assert third.returncode == 0, third.stderr
    assert "other is half-made" in third.stdout
    assert _has_pip(moved)


def test_an_interpreter_that_cannot_make_a_venv_gets_the_apt_hint(tmp_path: Path) -> None:
    result = _source(tmp_path, PYTHON=str(tmp_path / "no-such-python"))
    assert result.returncode == 1
    assert "sudo apt-get install python3-venv" in result.stderr
    assert not (tmp_path / ".venv").exists()
