"""The documentation that is generated or quoted stays in step with the code."""

from __future__ import annotations

from pathlib import Path

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
        "p1_energy_import_joules_total", "p1_energy_export_joules_total", "p1_power_import_watts",
        "p1_phase_voltage_volts", "p1_gas_volume_cubic_meters_total", "p1_up",
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
