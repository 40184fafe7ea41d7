"""Render the metrics reference (docs/metrics.md) from the catalog.

``python -m p1_exporter.metrics.reference > docs/metrics.md``; a test keeps the file in step.
"""

from __future__ import annotations

from p1_exporter.metrics.catalog import METRICS


def render() -> str:
    """The whole reference as Markdown."""
    lines = [
        "# Metrics reference",
        "",
        "Generated from `p1_exporter/metrics/catalog.py` and the code table "
        "`p1_exporter/core/obis.py` (the source column) by "
        "`python -m p1_exporter.metrics.reference`; do not edit by hand.",
        "",
        "Every metric except `p1_exporter_build_info` and "
        "`p1_exporter_http_auth_failures_total` carries a `meter` label (the meter's "
        "name, default `main`). Units are base units: joules, watts, volts, amperes, cubic "
        "meters, seconds; reactive energy is in var-seconds (divide by 3600 for varh).",
        "",
        "**Meter values** come only from a fresh, validated telegram: they vanish while the "
        "meter is stale (`p1_up == 0`) and never appear for a value the meter did not send "
        "(an M-Bus channel with a placeholder reading has no gas sample, not a zero).",
        "",
        "| metric | type | labels | source (OBIS) | meaning |",
        "|---|---|---|---|---|",
    ]
    health = [
        "",
        "**Exporter health** metrics are always present; counters start at 0.",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for spec in METRICS.values():
        labels = ", ".join(spec.labels) or "-"
        if spec.health:
            health.append(f"| `{spec.name}` | {spec.type} | {labels} | {spec.help} |")
        else:
            lines.append(
                f"| `{spec.name}` | {spec.type} | {labels} | {spec.source} | {spec.help} |"
            )
    own = [
        "",
        "**The exporter process's own metrics**, as every exporter has them, come from "
        "prometheus_client's collectors and carry no `meter` label: `process_*` (CPU "
        "seconds, resident and virtual memory, open file descriptors, start time) and "
        "`python_*` (`python_info` with the interpreter version, `python_gc_*` garbage "
        "collector counts). `decode --format metrics` leaves them out: they would describe "
        "the decode command, not a meter.",
    ]
    return "\n".join(lines + health + own) + "\n"


if __name__ == "__main__":
    print(render(), end="")
