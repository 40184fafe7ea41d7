"""``sim://`` option ranges, through the real exporter process.

Before, ``sim://?interval=1e-300`` or ``?speed=1e300`` started and then produced telegrams
as fast as the CPU allowed (~70 % of a core) for as long as the exporter ran. Every numeric
option now has a range, and a ``sim://`` meter sends at most 100 telegrams a real second:
anything else stops the exporter at start with exit 2 and one line naming the option.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.exporter import ExporterProcess, http_get, run_exporter
from tests.helpers.metrics import series, value
from tests.helpers.wait import wait_for


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sim://?interval=1e-300", "interval must be between 0.001 and 3600, not 1e-300"),
        ("sim://?speed=1e300", "speed must be between 0.001 and 86400, not 1e+300"),
        (
            "sim://?interval=0.005",
            "interval/speed = 0.005 s between telegrams is too fast: at "
            "least 0.01 s (at most 100 telegrams a second)",
        ),
        ("sim://?interval=1&speed=1000", "interval/speed = 0.001 s between telegrams"),
        ("sim://?start=1e300", "start must be between 2000-01-01T00:00Z and 2099-12-31T00:00Z"),
        ("sim://?pause_seconds=inf", "pause_seconds must be between 0 and 3600, not inf"),
        ("sim://?force_import_watts=1e9", "force_import_watts must be between 0 and 99999"),
        ("sim://?seed=-1", "seed must be between 0 and 9223372036854775807, not -1"),
    ],
)
def test_out_of_range_sim_options_stop_the_exporter_at_start(url: str, reason: str) -> None:
    result = run_exporter("--device", url, "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"p1-exporter: invalid configuration: --device {url!r}: {reason}"
    ), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # one line: the reason


def test_a_config_file_meter_is_checked_the_same_way(tmp_path: Path) -> None:
    config = tmp_path / "p1.yml"
    config.write_text("meters:\n  - name: home\n    device: sim://?speed=1e300\n")
    result = run_exporter("--config", str(config), "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "p1-exporter: invalid configuration: meters[0].device "
        "'sim://?speed=1e300': speed must be between 0.001 and 86400, "
        "not 1e+300\n"
    )


def test_the_fastest_allowed_pace_runs() -> None:
    url = "sim://?seed=3&interval=0.01"  # 100 telegrams a second, the limit
    with ExporterProcess(["--device", url, "--web.listen-address", "127.0.0.1:0"]) as exporter:
        exporter.wait_listening()

        def ok_telegrams() -> float:
            found = series(http_get(exporter.url).body.decode())
            return value(found, "p1_telegrams_total", meter="main", result="ok") or 0.0

        wait_for(lambda: ok_telegrams() >= 20, what="20 telegrams from the simulated meter")
        assert exporter.stop()[0] == 0
