"""The newcomer path, as a user meets it: the release files, the installed package, the
service files and the container stack.

- ``python -m build`` turns a copy of the tree into an sdist and a wheel built from that
  sdist, so the sdist is proven to hold what a build needs. The wheel is installed into a
  fresh venv (its dependencies from a wheelhouse made by ``pip wheel``, then
  ``--no-index``, so a missing dependency fails), and the installed ``p1-exporter`` answers
  ``--help`` and serves a live demo, which the Dockerfile's health check command accepts.
- The Dockerfile's build stage is replayed on exactly the files it copies, after
  ``.dockerignore``, and must give the same wheel.
- README "With pip", run as written in a git clone, installs and leaves the clone clean.
- The systemd unit keeps its hardening, and ``systemd-analyze`` accepts it when present.
- The environment file and YAML example load with the exporter's own configuration code.
- Every metric, flag and P1_EXPORTER_ variable the README names exists in the code.
- docker-compose.yml wires exporter, Prometheus and Grafana together; promtool checks the
  Prometheus configuration as the container sees it. ``docker compose config`` runs when a
  Compose client is installed.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import fnmatch
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
import yaml

import p1_exporter
from p1_exporter.commands.config import ConfigError, build_parser, env_name, load_config
from tests.helpers.binaries import require_binary
from tests.helpers.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent
VERSION = p1_exporter.__version__
pytestmark = pytest.mark.timeout(300)

_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
)
_RUNTIME_DEPENDENCIES = ("pyserial", "prometheus_client", "fastcrc", "bcrypt", "PyYAML", "h11")


def _clean_env() -> dict[str, str]:
    """The environment for child processes, without anything pointing into this checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output when it fails."""
    result = subprocess.run(
        args,
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(f"p1_exporter-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser(policy=email.policy.compat32).parsestr(raw)


# -- release files ------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """What ``python -m build`` made."""

    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """Build the sdist, then the wheel from the sdist, from a clean copy of the tree."""
    work = tmp_path_factory.mktemp("release")
    tree = work / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_SOURCE)
    out = work / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(tree)], cwd=work)
    sdists = sorted(out.glob("*.tar.gz"))
    wheels = sorted(out.glob("*.whl"))
    assert [p.name for p in sdists] == [f"p1_exporter-{VERSION}.tar.gz"]
    assert [p.name for p in wheels] == [f"p1_exporter-{VERSION}-py3-none-any.whl"]
    return Release(sdists[0], wheels[0])


def test_version_lives_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M)
    assert re.search(r'^version = \{ attr = "p1_exporter.__version__" \}$', pyproject, re.M)
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M), "a literal version in pyproject"


@pytest.mark.slow
def test_wheel_holds_the_package_and_no_tests(release: Release) -> None:
    with zipfile.ZipFile(release.wheel) as archive:
        names = archive.namelist()
    dist_info = f"p1_exporter-{VERSION}.dist-info/"
    assert all(n.startswith(("p1_exporter/", dist_info)) for n in names), names
    modules = (
        "__init__.py",
        "commands/cli.py",
        "commands/serve.py",
        "metrics/catalog.py",
        "sim/__init__.py",
    )
    for module in modules:
        assert f"p1_exporter/{module}" in names
    for static in ("index.html", "live.js", "live.css", "icon.svg"):  # the live page, package data
        assert f"p1_exporter/web/static/{static}" in names
    source_modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "p1_exporter").rglob("*.py")}
    assert source_modules <= set(names), source_modules - set(names)
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    assert not [n for n in names if n.endswith(".pyc")]
    assert f"{dist_info}licenses/LICENSE" in names


@pytest.mark.slow
def test_wheel_metadata_is_complete(release: Release) -> None:
    meta = _wheel_metadata(release.wheel)
    assert meta["Name"] == "p1-exporter"
    assert meta["Version"] == VERSION
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert meta["Summary"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "sh scripts/demo.sh" in meta.get_payload(), "the README is the long description"
    classifiers = meta.get_all("Classifier") or []
    assert "Topic :: System :: Monitoring" in classifiers
    assert "Programming Language :: Python :: 3.10" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    requires = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    for dependency in _RUNTIME_DEPENDENCIES:
        assert any(r.startswith(dependency) for r in requires), dependency
    with zipfile.ZipFile(release.wheel) as archive:
        entry_points = archive.read(f"p1_exporter-{VERSION}.dist-info/entry_points.txt").decode()
    assert "[console_scripts]\np1-exporter = p1_exporter.commands.cli:main" in entry_points


@pytest.mark.slow
def test_sdist_is_the_full_source_release(release: Release) -> None:
    top = f"p1_exporter-{VERSION}/"
    with tarfile.open(release.sdist) as archive:
        names = {m.name.removeprefix(top) for m in archive.getmembers() if m.isfile()}
        fixture = archive.extractfile(top + "tests/fixtures/v5.txt")
        assert fixture is not None
        assert fixture.read() == (ROOT / "tests/fixtures/v5.txt").read_bytes(), "CRLF kept"
        pkg_info = archive.extractfile(top + "PKG-INFO")
        assert pkg_info is not None
        assert f"\nVersion: {VERSION}\n" in pkg_info.read().decode()
    needed = {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "MANIFEST.in",
        "p1_exporter/__init__.py",
        "tests/helpers/binaries.py",
        "tests/test_packaging.py",
        "tests/fixtures/README.md",
        "p1-exporter.rules.yml",
        "p1-exporter.recording.rules.yml",
        "prometheus.yml.example",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/dashboards/p1-home.json",
        "contrib/p1-exporter.service",
        "contrib/99-p1-exporter.rules",
        "docs/metrics.md",
        "Dockerfile",
        "docker-compose.yml",
        "scripts/test.sh",
        "scripts/venv.sh",
        ".ci/run",
    }
    assert needed <= names, sorted(needed - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# -- the installed package ------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its dependencies, installed without an index."""
    work = tmp_path_factory.mktemp("installed")
    wheelhouse = work / "wheelhouse"
    # Fetches (or takes from pip's cache) a wheel of every dependency, next to ours.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--wheel-dir",
            str(wheelhouse),
            str(release.wheel),
        ],
        cwd=work,
    )
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    _run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            f"p1-exporter=={VERSION}",
        ],
        cwd=work,
    )
    return venv


@pytest.mark.slow
def test_installed_command_answers_help(installed: Path, tmp_path: Path) -> None:
    exe = str(installed / "bin/p1-exporter")
    help_text = _run([exe, "--help"], cwd=tmp_path).stdout
    for flag in ("--device", "--demo", "--web.listen-address", "--stale-after"):
        assert flag in help_text
    assert _run([exe, "--version"], cwd=tmp_path).stdout.strip() == f"p1-exporter {VERSION}"
    where = _run(
        [str(installed / "bin/python"), "-c", "import p1_exporter; print(p1_exporter.__file__)"],
        cwd=tmp_path,
    ).stdout
    assert Path(where.strip()).is_relative_to(installed), "imported from the checkout"


def _readme_shell_block(heading: str) -> list[str]:
    """The lines of the first ```sh block under a README heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(f"\n{heading}\n") :]
    block = section[section.index("```sh\n") + 6 :]
    return [line for line in block[: block.index("```")].splitlines() if line.strip()]


def test_documented_pip_install_leaves_the_clone_clean(tmp_path: Path) -> None:
    """README "With pip", run in a git clone: it installs, and adds no file to the clone.

    (``sudo pip install .`` left root-owned build/ and *.egg-info behind, after which
    ``sh scripts/demo.sh`` failed for the user.)
    """
    if shutil.which("git") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("git is not installed; CI must install it")
        pytest.skip("git is not installed")
    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=_NOT_SOURCE)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    _run([*git, "init", "-q"], cwd=clone)
    _run([*git, "add", "-A"], cwd=clone)
    _run([*git, "commit", "-q", "-m", "clone"], cwd=clone)
    status = [*git, "status", "--porcelain", "--ignored", "--untracked-files=all"]
    assert _run(status, cwd=clone).stdout == ""

    prefix, archive = tmp_path / "opt-p1-exporter", tmp_path / "p1-exporter.tar.gz"
    lines = _readme_shell_block("### With pip")
    assert any("pip install" in line for line in lines), lines
    for line in lines:
        if "bin/p1-exporter" in line:
            continue  # starts the exporter on a serial port; --version below instead
        assert line.startswith(("sudo ", "git ", "rm ")), line
        command = (
            line.removeprefix("sudo ")
            .replace("/opt/p1-exporter", str(prefix))
            .replace("/tmp/p1-exporter.tar.gz", str(archive))
        )
        _run(["sh", "-c", command], cwd=clone, timeout=300)

    assert _run(status, cwd=clone).stdout == "", "the install left files in the clone"
    assert not archive.exists()
    version = _run([str(prefix / "bin/p1-exporter"), "--version"], cwd=tmp_path).stdout
    assert version.strip() == f"p1-exporter {VERSION}"


def _raspberry_pi_wheel_table() -> dict[str, dict[str, str]]:
    """README "Raspberry Pi": {dependency: {machine: what pip installs there}}."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Raspberry Pi\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ")
    ]
    [header] = [row for row in rows if row[0] == "dependency"]
    machines = [re.search(r"\((\w+)\)", cell)[1] for cell in header[1:]]  # type: ignore[index]
    table: dict[str, dict[str, str]] = {}
    for row in rows[rows.index(header) + 1 :]:
        for name in row[0].split(", "):
            table[name] = dict(zip(machines, row[1:], strict=True))
    return table


def test_dependency_markers_match_the_raspberry_pi_table() -> None:
    """Each runtime dependency is required on a machine exactly where the README's table
    says pip installs it, so fastcrc is never asked for where PyPI has no wheel of it."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    table = _raspberry_pi_wheel_table()
    assert set(table) == set(_RUNTIME_DEPENDENCIES), table
    assert set(next(iter(table.values()))) == {"aarch64", "armv7l"}
    dependencies = [Requirement(r) for r in requires("p1-exporter") or [] if "extra ==" not in r]
    assert {d.name for d in dependencies} == set(_RUNTIME_DEPENDENCIES)
    for dependency in dependencies:
        for machine, installed in table[dependency.name].items():
            environment = {"platform_machine": machine, "python_version": "3.11"}
            required = dependency.marker is None or dependency.marker.evaluate(environment)
            assert required == (not installed.startswith("not installed")), (
                f"{dependency}: on {machine} the README says {installed!r}"
            )
        if dependency.name == "fastcrc":
            assert dependency.marker is not None
            assert dependency.marker.evaluate({"platform_machine": "x86_64"})
            assert not dependency.marker.evaluate({"platform_machine": "armv6l"})


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), re.sub(r"\s+", " ", args.strip())))
        pending = ""
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each from its FROM to the next."""
    instructions = _dockerfile()
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return [instructions[a:b] for a, b in zip(starts, [*starts[1:], None], strict=True)]


def _healthcheck_command() -> list[str]:
    [args] = [a for k, a in _dockerfile() if k == "HEALTHCHECK"]
    command: list[str] = json.loads(args[args.index("CMD ") + 4 :])
    return command


@pytest.fixture
def demo(installed: Path, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The installed exporter serving its simulated meter on a free local port."""
    port = _free_port()
    process = subprocess.Popen(
        [str(installed / "bin/p1-exporter"), "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.mark.slow
def test_installed_demo_serves_metrics(
    installed: Path, tmp_path: Path, demo: tuple[int, subprocess.Popen[str]]
) -> None:
    port, process = demo

    def up() -> str:
        assert process.poll() is None, "the exporter exited"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
        return text if re.search(r'^p1_up\{meter="main"\} 1\.0$', text, re.M) else ""

    text = wait_for(up, 20, 'p1_up{meter="main"} 1', interval=0.25, retry_on=(OSError,))
    assert re.search(r'^p1_power_import_watts\{meter="main"\} [0-9.e+]+$', text, re.M)
    assert 'p1_exporter_build_info{python_version="' in text and f'version="{VERSION}"' in text
    # The live page's files come from the installed package data.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/live.js", timeout=5) as r:
        assert r.status == 200 and b"api/v1/live" in r.read()

    # The image's health check, pointed at this port, accepts the running exporter.
    command = _healthcheck_command()
    assert command[0] == "python" and "127.0.0.1:9357/metrics" in command[-1]
    command = [
        str(installed / "bin/python"),
        *[part.replace("127.0.0.1:9357", f"127.0.0.1:{port}") for part in command[1:]],
    ]
    _run(command, cwd=tmp_path, timeout=10)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "received SIGTERM, shutting down" in stderr and "msg=stopped" in stderr


# -- Dockerfile -----------------------------------------------------------------------------


def _dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, POSIX) out of the build context."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerfile_is_slim_multistage_and_non_root() -> None:
    instructions = _dockerfile()
    stages = [a for k, a in instructions if k == "FROM"]
    assert len(stages) == 2
    assert all(re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim( AS \w+)?", s) for s in stages)
    [python_version] = [a for k, a in instructions if k == "ARG" and a.startswith("PYTHON_")]
    assert re.fullmatch(r"PYTHON_VERSION=3\.1[0-9]", python_version)
    final = _stages()[-1]
    [user] = [a for k, a in final if k == "USER"]
    assert user.split(":")[0] == "10001"
    assert any(k == "RUN" and "--uid 10001" in a and "--gid dialout" in a for k, a in final)
    assert ("EXPOSE", "9357") in final
    assert ("ENTRYPOINT", '["p1-exporter"]') in final
    assert "/healthz" not in _healthcheck_command()[-1]  # 503 while the meter is silent


@pytest.mark.slow
def test_docker_build_stage_works_from_its_context_alone(release: Release, tmp_path: Path) -> None:
    """Replay the build stage on the files it COPYs, as .dockerignore lets them through."""
    context = tmp_path / "context"
    build_stage = _stages()[0]
    copies = [a.split() for k, a in build_stage if k == "COPY"]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if _dockerignore_excludes(relative):
                    continue
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, context / relative)
            assert (context / source).exists(), f"COPY {source}: excluded by .dockerignore"
    assert not list(context.rglob("__pycache__"))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(context),
        ],
        cwd=tmp_path,
    )
    [wheel] = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as ours, zipfile.ZipFile(release.wheel) as theirs:
        assert sorted(ours.namelist()) == sorted(theirs.namelist())
    assert _wheel_metadata(wheel)["Version"] == VERSION


# -- systemd --------------------------------------------------------------------------------

_HARDENING = {
    "DynamicUser": "yes",
    "SupplementaryGroups": "dialout",
    "DevicePolicy": "closed",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "UMask": "0077",
    "Restart": "on-failure",
}


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_is_hardened() -> None:
    service = _unit(ROOT / "contrib/p1-exporter.service")["Service"]
    values: dict[str, list[str]] = {}
    for key, value in service:
        values.setdefault(key, []).append(value)
    for key, expected in _HARDENING.items():
        assert values.get(key) == [expected], f"{key}={values.get(key)} (want {expected!r})"
    # USB adapters, and a Raspberry Pi's GPIO UARTs: ttyAMA0 (PL011), ttyS0 (mini UART).
    assert set(values["DeviceAllow"]) == {
        "char-ttyUSB rw",
        "char-ttyACM rw",
        "char-ttyAMA rw",
        "char-ttyS rw",
    }
    assert values["SystemCallFilter"][0] == "@system-service"
    assert values["EnvironmentFile"] == ["-/etc/default/p1-exporter"]
    assert values["ExecStart"] == ["/opt/p1-exporter/bin/p1-exporter"]
    assert values["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # reloads the web config
    assert values["RestartPreventExitStatus"] == ["2"]  # an invalid setting: exit code 2
    assert "PrivateUsers" not in values, "PrivateUsers= would unmap the dialout group"
    assert "PrivateDevices" not in values, "PrivateDevices= would hide the serial ports"


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart= to exist: point it at an executable that does.
    unit = tmp_path / "p1-exporter.service"
    unit.write_text(
        (ROOT / "contrib/p1-exporter.service")
        .read_text()
        .replace("ExecStart=/opt/p1-exporter/bin/p1-exporter", f"ExecStart={sys.executable}")
    )
    result = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # Exposure 2.0 or less (the file rates 1.6, "OK"); the threshold is in tenths.
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_environment_file_and_yaml_example_load() -> None:
    help_text = build_parser().format_help()
    known = {env_name(flag) for flag in re.findall(r"(?<![\w-])--[a-z][\w.-]*", help_text)}
    active: dict[str, str] = {}
    commented: list[tuple[str, str]] = []
    for line in (ROOT / "contrib/p1-exporter.env").read_text().splitlines():
        match = re.fullmatch(r"(#?)(P1_EXPORTER_\w+)=(.*)", line)
        if match is None:
            continue
        assert match[2] in known, f"{match[2]} is no flag's variable"
        if match[1]:
            commented.append((match[2], match[3]))
        else:
            active[match[2]] = match[3]
    config = load_config([], active)
    assert [m.url for m in config.meters] == [active["P1_EXPORTER_DEVICE"]]
    for name, value in commented:
        if name in ("P1_EXPORTER_CONFIG", "P1_EXPORTER_WEB_CONFIG_FILE"):
            continue  # files that do not exist here
        try:
            load_config([], {**active, name: value})
        except ConfigError as exc:
            pytest.fail(f"#{name}={value}: {exc}")
    config = load_config(["--config", str(ROOT / "contrib/config.yml.example")], {})
    assert [m.name for m in config.meters] == ["house"]
    assert config.web.listen_address == ":9357"


# -- README -------------------------------------------------------------------------------

#: Flags of other programs that the README uses (docker, systemctl, git, pip).
_FOREIGN_FLAGS = {
    "--build",
    "--group-add",
    "--health-cmd",
    "--name",
    "--no-healthcheck",
    "--now",
    "--restart",
    "--rm",
    "--prefix",
    "--no-deps",
    "--only-binary",
    "--platform",
    "--python-version",
    "--implementation",
}


def test_readme_names_only_real_metrics_flags_and_variables() -> None:
    """Every metric, flag and P1_EXPORTER_ variable the README names exists in the code."""
    from p1_exporter.commands.cli import SUBCOMMANDS
    from p1_exporter.metrics.catalog import METRICS

    readme = (ROOT / "README.md").read_text()
    metrics = set(re.findall(r"(?<![\w:.])p1_[a-z0-9_]+", readme)) - {"p1_exporter"}
    assert metrics <= set(METRICS), sorted(metrics - set(METRICS))

    flag = r"(?<![\w-])--[a-z][\w.-]*"
    exporter_flags = set(re.findall(flag, build_parser().format_help()))
    every_flag = set(exporter_flags)
    for module_name, _ in SUBCOMMANDS.values():
        parser = argparse.ArgumentParser()
        importlib.import_module(module_name).add_arguments(parser)
        every_flag |= set(re.findall(flag, parser.format_help()))
    unknown = set(re.findall(flag, readme)) - every_flag - _FOREIGN_FLAGS
    assert not unknown, f"not p1-exporter flags (another program's? see _FOREIGN_FLAGS): {unknown}"

    variables = set(re.findall(r"P1_EXPORTER_\w+", readme))
    known = {env_name(f) for f in exporter_flags}
    from p1_exporter.commands.meter_keys import ENV_AUTH_KEY, ENV_KEY

    known |= {ENV_KEY, ENV_AUTH_KEY}  # keys: variables without a flag (ps shows flags)
    assert variables <= known, sorted(variables - known)


# -- docker-compose.yml ---------------------------------------------------------------------


def test_compose_stack_is_wired_together(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "grafana"}
    exporter = services["exporter"]
    assert exporter["build"] == "."
    assert exporter["command"] == ["--demo"]
    assert any(str(p).endswith(":9357") for p in exporter["ports"])
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")

    mounts: dict[str, dict[str, Path]] = {}
    for name, service in services.items():
        mounts[name] = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                mounts[name][target] = ROOT / source
    assert set(compose.get("volumes", {})) == {"prometheus-data", "grafana-data"}

    # Grafana: the provisioning directories, and the dashboards where the provider looks.
    grafana = mounts["grafana"]
    for kind in ("datasources", "dashboards"):
        assert grafana[f"/etc/grafana/provisioning/{kind}"] == ROOT / "grafana/provisioning" / kind
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/p1.yml").read_text())
    assert grafana[provider["providers"][0]["options"]["path"]] == ROOT / "grafana/dashboards"
    datasource = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"

    # Prometheus: lay the mounted files out as the container sees them; promtool checks them.
    prometheus = mounts["prometheus"]
    etc = tmp_path / "etc-prometheus"
    etc.mkdir()
    for target, source in prometheus.items():
        assert target.startswith("/etc/prometheus/"), target
        shutil.copy(source, etc / target.removeprefix("/etc/prometheus/"))
    config = yaml.safe_load((etc / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (etc / rule_file).exists(), f"rule file {rule_file} is not mounted"
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "p1"]
    assert job["static_configs"][0]["targets"] == ["exporter:9357"]
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "config", str(etc / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2), or a ``docker-compose`` v2 binary; None when neither works."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            version = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=30, check=False
            )
        except OSError:
            continue
        if version.returncode == 0 and re.search(r"v?([2-9]|\d\d+)\.\d+", version.stdout):
            return command
    return None


def test_compose_file_passes_docker_compose_config() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 client (docker compose / docker-compose)")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
