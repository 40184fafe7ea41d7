"""The code table (p1_exporter.core.obis) is the one place that knows an OBIS code.

For every row, the parser, the OBIS -> sample map, the catalog (and so docs/metrics.md),
the glitch guard and ``decode``'s descriptions must agree with it; a row added to only
some of them fails here, by name. Each row is checked by behaviour: a one-line telegram
with that code goes through the real parser, sample map and guard.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p1_exporter import parse
from p1_exporter.core import obis
from p1_exporter.core.crc import crc16_arc
from p1_exporter.core.obis import (
    DESCRIPTIONS,
    KINDS,
    ROWS,
    Kind,
    Row,
    check_table,
    lower_bound,
)
from p1_exporter.core.render_text import format_telegram
from p1_exporter.meter.glitch import GlitchGuard, is_cumulative
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.samples import REGISTER_MAP, Sample, telegram_samples

PACKAGE = Path(__file__).resolve().parent.parent / "p1_exporter"
#: An OBIS code as text: A-B:C.D.E, B may be the "n" of a channel pattern.
OBIS_TEXT = re.compile(r"\b\d{1,3}-(?:\d{1,3}|n):\d{1,3}\.\d{1,3}\.\d{1,3}\b")
#: base unit -> a unit a meter sends it in, and the factor between them (tests' own table).
SENT_AS = {
    "J": ("kWh", 3_600_000),
    "W": ("kW", 1000),
    "var": ("kvar", 1000),
    "varh": ("kvarh", 1000),
    "VA": ("kVA", 1000),
    "V": ("V", 1),
    "A": ("A", 1),
    "Hz": ("Hz", 1),
    "": ("", 1),
}


def telegram_with(*lines: str) -> bytes:
    body = ("/TST5\\2TABLE\r\n\r\n" + "".join(f"{line}\r\n" for line in lines) + "!").encode()
    return body + b"%04X\r\n" % crc16_arc(body)


def number_line(code: str, unit: str, text: str = "12.5") -> str:
    sent, _ = SENT_AS[unit]
    return f"{code}({text}*{sent})" if sent else f"{code}({text})"


def disagreements(row: Row) -> list[str]:
    """Where the parser, sample map, catalog, guard or descriptions disagree with ``row``."""
    problems: list[str] = []
    code = row.code
    if KINDS.get(code) is not row.kind:
        problems.append(f"parser reads {code} as {KINDS.get(code)}, table says {row.kind}")
    if DESCRIPTIONS.get(code) != row.description:
        problems.append(f"{code}: decode describes it as {DESCRIPTIONS.get(code)!r}")
    if is_cumulative(code) != row.cumulative:
        problems.append(f"{code}: glitch guard says cumulative={is_cumulative(code)}")
    for metric in (row.metric, *row.feeds) if row.metric else row.feeds:
        spec = METRICS.get(metric)
        if spec is None:
            problems.append(f"{code} feeds {metric}, which the catalog lacks")
            continue
        if row.pattern not in spec.source:
            problems.append(f"{metric}: source {spec.source!r} does not name {row.pattern}")
        if spec.health:
            problems.append(f"{metric}: fed by {code} but listed as a health metric")
    if not row.metric:
        return problems
    spec = METRICS.get(row.metric)
    if spec is not None:
        if (spec.type == "counter") != row.cumulative:
            problems.append(f"{row.metric} is a {spec.type}, {code} cumulative={row.cumulative}")
        names = {name for name, _ in row.labels} | ({"bound"} if row.kind is Kind.BOUNDS else set())
        if set(spec.labels) != names:
            problems.append(f"{row.metric} has labels {spec.labels}, {code} gives {names}")
    # Through the real parser and sample map: one line, one sample.
    expected_value = 12.5 * SENT_AS[row.unit][1] * row.scale
    if row.kind is Kind.BOUNDS:
        line = f"{code}(12.5*{SENT_AS[row.unit][0]})(-12.5*{SENT_AS[row.unit][0]})"
        wanted = [
            Sample(row.metric, (*row.labels, ("bound", "upper")), expected_value),
            Sample(row.metric, (*row.labels, ("bound", "lower")), -expected_value),
        ]
    else:
        line = number_line(code, row.unit)
        wanted = [Sample(row.metric, row.labels, expected_value)]
    telegram = parse(telegram_with(line))
    got = [s for s in telegram_samples(telegram) if s.metric == row.metric]
    if got != wanted:
        problems.append(f"{line} gives {got}, not {wanted}")
    if REGISTER_MAP.get(code, {}).get(row.unit) is None:
        problems.append(f"{code}: no sample map entry for unit {row.unit!r}")
    # The guard withholds a lower value exactly for cumulative rows.
    guard = GlitchGuard()
    guard.filter(telegram)
    lower = parse(telegram_with(number_line(code, row.unit, "2.5")))
    _, glitches, _ = guard.filter(lower)
    if bool(glitches) != row.cumulative:
        problems.append(f"{code}: a lower value gave glitches {glitches}")
    return problems


def test_the_table_is_consistent() -> None:
    assert check_table(ROWS) == []
    assert len({(row.code, row.unit) for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.code}-{row.unit}" for row in ROWS])
def test_every_part_agrees_with_the_row(row: Row) -> None:
    assert disagreements(row) == []


def test_a_half_added_code_fails_loudly() -> None:
    """A row the parser, map, catalog and guard never heard of is reported everywhere."""
    row = Row(
        "1-0:99.7.0",
        Kind.NUMBER,
        "a value nobody added",
        "W",
        "p1_not_in_the_catalog_watts",
        (),
        1.0,
        True,
        (),
        (),
        "1-0:99.7.0",
    )
    problems = disagreements(row)
    assert any("parser reads 1-0:99.7.0 as None" in p for p in problems)
    assert any("catalog lacks" in p for p in problems)
    assert any("glitch guard says cumulative=False" in p for p in problems)
    assert any("no sample map entry" in p for p in problems)
    # And a known code whose row claims another metric is caught too.
    wrong = next(r for r in ROWS if r.code == "1-0:1.7.0")._replace(
        metric="p1_power_export_watts", pattern="1-0:2.7.0"
    )
    assert any("gives []" in p or "gives [Sample" in p for p in disagreements(wrong))


def test_every_catalog_meter_value_is_fed_by_a_row() -> None:
    fed = {m for row in ROWS for m in ((row.metric, *row.feeds) if row.metric else row.feeds)}
    values = {name for name, spec in METRICS.items() if not spec.health}
    assert values - fed == set(), "catalog metrics no row of the code table feeds"
    assert fed - values == set()


def test_the_phase_table_is_written_once() -> None:
    phase_rows = [row for row in ROWS if dict(row.labels).get("phase")]
    for row in phase_rows:
        c = int(row.code.split(":")[1].split(".")[0])
        phase = next(p for p, b in obis.PHASES if b < c <= b + 20)
        assert dict(row.labels)["phase"] == phase, row


def test_a_bounds_line_has_two_registers_and_descriptions() -> None:
    (row,) = [r for r in ROWS if r.kind is Kind.BOUNDS]
    telegram = parse(telegram_with(f"{row.code}(040*A)(-040*A)"))
    assert telegram.value(row.code) == 40.0
    assert telegram.value(lower_bound(row.code)) == -40.0
    text = format_telegram(telegram)
    assert f"{row.code} {row.description}" in text
    assert f"{lower_bound(row.code)} {row.description}, lower" in text


def test_decode_describes_each_code_from_the_table() -> None:
    telegram = parse(telegram_with("1-0:9.7.0(01.500*kVA)", "0-0:96.13.2()"))
    text = format_telegram(telegram)
    assert "1-0:9.7.0 apparent power imported" in text and "1500 VA  (01.500*kVA)" in text
    assert "0-0:96.13.2 text message, line 2" in text
    assert "unknown" not in text


def test_no_obis_code_outside_the_table() -> None:
    """Only the code table spells OBIS codes; the simulator, which plays a meter, aside."""
    table = PACKAGE / "core" / "obis.py"
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == table or "sim" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(PACKAGE)}:{number}: {m}" for m in OBIS_TEXT.findall(line)]
    assert found == []
    assert OBIS_TEXT.search(table.read_text())  # the pattern does find codes


def test_core_imports_only_core() -> None:
    """The table lives in the sans-I/O core: metric names are data there, never imports."""
    imports = re.compile(r"^\s*(?:from|import) (p1_exporter\.\w+)", re.MULTILINE)
    for path in sorted((PACKAGE / "core").glob("*.py")):
        outside = {m for m in imports.findall(path.read_text()) if m != "p1_exporter.core"}
        assert outside == set(), path.name


def test_code_of_names_every_row_by_its_metric_and_labels() -> None:
    """Modules outside the table find a code by the metric it feeds: one answer per row."""
    from p1_exporter.core.obis import ROWS, code_of

    rows = [row for row in ROWS if row.metric]
    for row in rows:
        assert code_of(row.metric, **dict(row.labels)) == row.code
    with pytest.raises(KeyError):
        code_of("p1_power_import_watts", phase="L1")
