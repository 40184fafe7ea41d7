"""Line-level decoding: malformed, unknown and unusual lines, DSMR 2.2 gas, the line memo."""

from __future__ import annotations

import pytest

from p1_exporter import (
    LineIssue,
    MBusDevice,
    MonthPeak,
    ObisLine,
    ParseError,
    PowerFailure,
    Register,
    Telegram,
    TelegramStream,
    decode_frame,
    parse,
)
from p1_exporter.core.parser import MEMO_SIZE, LineMemo
from tests.helpers.fixtures import FIXTURE_NAMES, load
from tests.helpers.streams import V5, memo_bytes, realistic_stream
from tests.helpers.telegrams import seal
from tests.helpers.times import summer, winter

GOOD_BEFORE = "1-0:1.8.1(000001.500*kWh)"
GOOD_AFTER = "1-0:32.7.0(230.1*V)"
V5_LINES = V5.decode("latin-1").split("\r\n")
#: The codes realistic_stream changes every telegram (or often).
MOVING = (
    "0-0:1.0.0(",
    "1-0:1.8.1(",
    "1-0:1.7.0(",
    *(f"1-0:{p}.7.0(" for p in ("32", "52", "72", "31", "51", "71", "21", "41", "61")),
)


def build(*lines: str, header: str = "TST5\\2LINES") -> bytes:
    """A telegram of ``lines`` with a correct CRC."""
    body = f"/{header}\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!"
    return seal(body.encode("latin-1"))


def decode(*lines: str) -> Telegram:
    return parse(build(*lines))


def check_neighbours_parsed(telegram: Telegram) -> None:
    assert telegram.registers["1-0:1.8.1"] == Register(5_400_000.0, "J", "000001.500*kWh")
    assert telegram.registers["1-0:32.7.0"] == Register(230.1, "V", "230.1*V")


# --- malformed lines ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1-0:1.8.1(000001.000*kWh", "no value in parentheses"),
        ("1-0:2.8.1", "no value in parentheses"),
        ("1-0:2.8.1000001.000*kWh)", "no value in parentheses"),
        ("1-0:2.8.1(00x1.000*kWh)", "not a number"),
        ("1-0:2.8.1(1.2.3*kWh)", "not a number"),
        ("1-0:2.8.1()", "not a number"),
        ("1-0:2.8.1(5*)", "not a number"),
        ("1-0:2.8.1(000001.000*kWx)", "unknown unit"),
        ("1-0:2.8.1(000001.000*)", "not a number"),
        ("1-0:2.8.1(1)(2)", "expected one value"),
        ("1-0:2.8.1(" + "9" * 400 + "*kWh)", "out of range"),
        ("1-0:2.8.1(-" + "9" * 400 + ".5*kWh)", "out of range"),
        ("1-0:2.8.1(" + "1" * 5000 + ")", "out of range"),
        ("hello(1)", "not an OBIS code"),
        ("1-0:1.8(1)", "not an OBIS code"),
        ("0-0:1.0.0(172501000000W)", "not a valid meter time"),
        ("0-0:1.0.0(\u00b270102192002W)", "not a valid meter time"),
        ("0-0:96.14.0(two)", "not a number"),
        ("0-1:24.1.0(gas)", "invalid literal"),
        ("0-1:24.4.0()", "invalid literal"),
        ("0-0:96.1.1(a)(b)", "expected one value"),
        (
            "1-0:99.97.0(2)(0-0:96.7.19)(190326095015W)(0000002014*s)",
            "announces 2 events but holds 1",
        ),
        ("1-0:99.97.0(1)(0-0:96.7.19)(190326095015W)(0000002014)", "duration without seconds"),
        ("1-0:99.97.0(x)(0-0:96.7.19)", "invalid literal"),
        ("1-0:1.6.0(02.589*kW)", "expected a time and a value"),
        ("1-0:1.6.0(200509134558S)(02.589*kX)", "unknown unit"),
        (
            "0-0:98.1.0(2)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)",
            "announces 2 months but holds 1",
        ),
        ("0-1:24.3.0(090212160000)(00)(60)(1)(m3)", "expected 6 values"),
        ("0-1:24.2.1(170102161005W)(00000.107*m4)", "unknown unit"),
    ],
)
def test_malformed_line_is_reported_and_the_rest_parses(line: str, reason: str) -> None:
    telegram = decode(GOOD_BEFORE, line, GOOD_AFTER)
    assert len(telegram.malformed) == 1
    issue = telegram.malformed[0]
    assert issue.line == line
    assert reason in issue.reason
    check_neighbours_parsed(telegram)
    assert telegram.unknown == ()
    assert "1-0:2.8.1" not in telegram.registers


def test_several_malformed_lines_keep_their_order() -> None:
    telegram = decode("1-0:1.7.0(x*kW)", GOOD_BEFORE, "garbage", GOOD_AFTER, "1-0:2.7.0(1*kQ)")
    assert [issue.line for issue in telegram.malformed] == [
        "1-0:1.7.0(x*kW)",
        "garbage",
        "1-0:2.7.0(1*kQ)",
    ]
    check_neighbours_parsed(telegram)


def test_empty_header_is_a_parse_error() -> None:
    for header in ("", "   "):
        with pytest.raises(ParseError) as caught:
            parse(build(GOOD_BEFORE, header=header))
        assert caught.value.result == "malformed"


# --- unknown codes -----------------------------------------------------------


def test_unknown_obis_codes_are_kept_with_their_raw_value() -> None:
    telegram = decode(
        GOOD_BEFORE,
        "1-0:99.99.9(12345*kWh)",
        "0-0:96.50.68(ON)",
        "1-0:0.9.1(123456)(789)",
        "1-0:2.8.1*255(000001.000*kWh)",
        GOOD_AFTER,
    )
    assert telegram.unknown == (
        ObisLine("1-0:99.99.9", "(12345*kWh)"),
        ObisLine("0-0:96.50.68", "(ON)"),
        ObisLine("1-0:0.9.1", "(123456)(789)"),
    )
    assert "1-0:99.99.9" not in telegram.registers
    assert telegram.registers["1-0:2.8.1"].value == 3_600_000  # *255 suffix stripped
    assert telegram.malformed == ()
    check_neighbours_parsed(telegram)


# --- number and unit forms ---------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "expected"),
    [
        # Exactness on both the fast and the general path (lower-case unit).
        ("1-0:1.8.1(000687.138*kWh)", "1-0:1.8.1", Register(2473696800.0, "J", "000687.138*kWh")),
        ("1-0:1.8.1(000687.138*kwh)", "1-0:1.8.1", Register(2473696800.0, "J", "000687.138*kwh")),
        (
            "1-0:1.8.1*255(000687.138*kWh)",
            "1-0:1.8.1",
            Register(2473696800.0, "J", "000687.138*kWh"),
        ),
        ("1.8.1(000687.138*kWh)", "1-0:1.8.1", Register(2473696800.0, "J", "000687.138*kWh")),
        ("1-0:1.7.0(-00.100*kW)", "1-0:1.7.0", Register(-100.0, "W", "-00.100*kW")),
        ("1-0:1.8.1(006545766*Wh)", "1-0:1.8.1", Register(23_564_757_600.0, "J", "006545766*Wh")),
        ("1-0:1.8.1(0.001*MWh)", "1-0:1.8.1", Register(3_600_000.0, "J", "0.001*MWh")),
        ("1-0:31.7.0(999*A)", "1-0:31.7.0", Register(999.0, "A", "999*A")),
        ("1-0:14.7.0(49.98*Hz)", "1-0:14.7.0", Register(49.98, "Hz", "49.98*Hz")),
        ("1-0:3.7.0(01.250*kvar)", "1-0:3.7.0", Register(1250.0, "var", "01.250*kvar")),
        ("1-0:3.8.0(000001.250*kvarh)", "1-0:3.8.0", Register(1250.0, "varh", "000001.250*kvarh")),
        ("1-0:13.7.0(0.987)", "1-0:13.7.0", Register(0.987, "", "0.987")),
        ("0-0:96.7.21(00013)", "0-0:96.7.21", Register(13.0, "", "00013")),
        (
            "1-0:1.8.1(" + "0" * 30 + "1.5*kWh)",
            "1-0:1.8.1",
            Register(5_400_000.0, "J", "0" * 30 + "1.5*kWh"),
        ),
        (
            "1-0:1.8.1(1." + "0" * 25 + "*kWh)",
            "1-0:1.8.1",
            Register(3_600_000.0, "J", "1." + "0" * 25 + "*kWh"),
        ),
        ("1-0:1.8.1(000001.500*kWh)   ", "1-0:1.8.1", Register(5_400_000.0, "J", "000001.500*kWh")),
    ],
)
def test_number_forms(line: str, code: str, expected: Register) -> None:
    telegram = decode(line)
    assert telegram.malformed == ()
    assert telegram.registers[code] == expected
    assert type(telegram.registers[code].value) is float


def test_easymeter_suffix_on_text_codes() -> None:
    telegram = decode("0-0:96.1.255*255(1ESY1336001560)", "1-0:96.5.5*255(80)")
    assert telegram.equipment_id == "1ESY1336001560"
    assert dict(telegram.texts) == {"0-0:96.1.255": "1ESY1336001560", "1-0:96.5.5": "80"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("48656C6C6F", "Hello"),
        ("48656c6c6f", "Hello"),
        ("", ""),
        ("0A0B", "0A0B"),  # control characters: kept as sent
        ("C3A9", "C3A9"),  # not ASCII: kept as sent
        ("486", "486"),  # odd length
        ("Hello", "Hello"),  # not hex at all
    ],
)
def test_hex_text_messages(value: str, expected: str) -> None:
    telegram = decode(f"0-0:96.13.0({value})")
    assert telegram.texts["0-0:96.13.0"] == expected


def test_blank_lines_are_ignored() -> None:
    telegram = decode("", GOOD_BEFORE, "", "", GOOD_AFTER, "")
    assert telegram.malformed == ()
    check_neighbours_parsed(telegram)


# --- power-failure log -------------------------------------------------------


@pytest.mark.parametrize("value", ["()", "(0)()", "(0)(0-0:96.7.19)", "(00)(0-0:96.7.19)"])
def test_empty_power_failure_log_forms(value: str) -> None:
    telegram = decode(GOOD_BEFORE, "1-0:99.97.0" + value, GOOD_AFTER)
    assert telegram.power_failure_log == ()
    assert telegram.malformed == ()
    check_neighbours_parsed(telegram)


def test_power_failure_log_with_events() -> None:
    telegram = decode(
        "1-0:99.97.0(2)(0-0:96.7.19)(190326095015W)(0000002014*s)(200601120000S)(0000000060*s)"
    )
    assert telegram.power_failure_log == (
        PowerFailure(winter(2019, 3, 26, 9, 50, 15), 2014),
        PowerFailure(summer(2020, 6, 1, 12, 0, 0), 60),
    )


def test_kaifa_placeholder_entry_is_kept_without_a_time() -> None:
    telegram = decode(
        GOOD_BEFORE, "1-0:99.97.0(1)(0-0:96.7.19)(000101000001W)(2147483647*s)", GOOD_AFTER
    )
    assert telegram.power_failure_log == (PowerFailure(None, 2147483647),)  # as stated
    assert telegram.malformed == ()
    check_neighbours_parsed(telegram)


@pytest.mark.parametrize("value", ["000101010000W", "000101000000S", "700101000000W"])
def test_a_clock_never_set_is_no_time_and_not_malformed(value: str) -> None:
    telegram = decode(GOOD_BEFORE, f"0-0:1.0.0({value})", GOOD_AFTER)
    assert telegram.meter_time is None
    assert telegram.malformed == ()
    check_neighbours_parsed(telegram)


def test_an_unset_clock_does_not_keep_an_earlier_time() -> None:
    telegram = decode("0-0:1.0.0(170102192002W)", GOOD_BEFORE, "0-0:1.0.0(000101010000W)")
    assert telegram.meter_time is None  # the last clock line is the meter's statement


# --- Belgian peaks -----------------------------------------------------------


def test_month_peak_both_layouts_and_bad_time() -> None:
    first = decode("1-0:1.6.0(200509134558S)(02.589*kW)")
    second = decode("1-0:1.6.0(02.589*kW)(200509134558S)")
    for telegram in (first, second):
        assert telegram.month_peak == Register(2589.0, "W", "02.589*kW")
        assert telegram.month_peak_time == summer(2020, 5, 9, 13, 45, 58)
    undated = decode("1-0:1.6.0(632525252525W)(00.000*kW)")
    assert undated.month_peak == Register(0.0, "W", "00.000*kW")
    assert undated.month_peak_time is None


def test_empty_peak_history() -> None:
    telegram = decode("0-0:98.1.0(0)(1-0:1.6.0)(1-0:1.6.0)")
    assert telegram.peak_history == ()
    assert telegram.malformed == () and telegram.extra == ()


def test_peak_history_one_month() -> None:
    telegram = decode(
        "0-0:98.1.0(1)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)"
    )
    assert telegram.peak_history == (
        MonthPeak(summer(2020, 5, 1, 0, 0, 0), summer(2020, 4, 23, 19, 25, 38), 3695.0),
    )


# --- M-Bus -------------------------------------------------------------------


def test_mbus_channels_and_placeholders() -> None:
    telegram = decode(
        "0-1:24.1.0(003)",
        "0-1:96.1.0(3232323241424344313233343536373839)",
        "0-1:24.2.1(170102161005W)(00000.107*m3)",
        "0-1:24.4.0(1)",
        "0-2:24.1.0(007)",
        "0-2:24.2.1(700101010000W)(00000000)",  # 1970 placeholder
        "0-3:24.1.0(004)",
        "0-3:24.2.1(170102161005W)(00000.107)",  # no unit: not a reading
        "0-4:24.1.0(003)",
        "0-4:24.2.3(000101000000W)(00012.000*m3)",  # year-2000 placeholder
    )
    assert dict(telegram.mbus) == {
        1: MBusDevice(
            1,
            3,
            "2222ABCD123456789",
            Register(0.107, "m3", "00000.107*m3"),
            winter(2017, 1, 2, 16, 10, 5),
            1,
        ),
        2: MBusDevice(2, 7, None, None, None, None),
        3: MBusDevice(3, 4, None, None, None, None),
        4: MBusDevice(4, 3, None, None, None, None),
    }
    assert telegram.malformed == ()


# --- DSMR 2.2 / 3 gas on the next line ---------------------------------------

LEGACY = "0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)"


def test_legacy_gas_value_on_the_next_line() -> None:
    telegram = decode("0-1:24.1.0(3)", LEGACY, "(00001.001)", "0-1:24.4.0(1)", GOOD_AFTER)
    assert telegram.mbus[1] == MBusDevice(
        1, 3, None, Register(1.001, "m3", "00001.001*m3"), winter(2016, 11, 7, 19, 0, 0), 1
    )
    assert telegram.malformed == ()
    assert telegram.registers["1-0:32.7.0"].value == 230.1


def test_legacy_gas_value_line_missing() -> None:
    telegram = decode(LEGACY, GOOD_AFTER)
    assert telegram.malformed == (LineIssue("0-1:24.3.0", "its value line is missing"),)
    assert telegram.mbus[1].reading is None
    assert telegram.registers["1-0:32.7.0"].value == 230.1  # the next line is still read


def test_legacy_gas_value_line_missing_at_the_end() -> None:
    telegram = decode(GOOD_BEFORE, LEGACY)
    assert telegram.malformed == (LineIssue("0-1:24.3.0", "its value line is missing"),)
    assert telegram.mbus[1] == MBusDevice(1, None, None, None, None, None)


def test_legacy_gas_bad_value_and_placeholders() -> None:
    bad_unit = decode("0-2:24.3.0(161107190000)(00)(60)(1)(0-2:24.2.1)(m4)", "(00001.001)")
    assert [issue.reason for issue in bad_unit.malformed] == ["unknown unit 'm4' in '00001.001*m4'"]
    assert bad_unit.mbus[2].reading is None
    no_unit = decode("0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)()", "(00001.001)")
    assert no_unit.mbus[1].reading is None and no_unit.malformed == ()
    no_time = decode("0-1:24.3.0(000000000000)(00)(60)(1)(0-1:24.2.1)(m3)", "(00001.001)")
    assert no_time.mbus[1].reading is None and no_time.malformed == ()
    odd_time = decode("0-1:24.3.0(\u00b261107190000)(00)(60)(1)(0-1:24.2.1)(m3)", "(00001.001)")
    assert odd_time.mbus[1].reading is None
    huge = decode(LEGACY, "(" + "1" * 5000 + ")")
    assert huge.mbus[1].reading is None and len(huge.malformed) == 1


def test_value_line_without_a_24_3_0_line() -> None:
    telegram = decode(GOOD_BEFORE, "(00001.001)", GOOD_AFTER)
    assert telegram.malformed == (
        LineIssue("(00001.001)", "value line without a preceding 24.3.0 line"),
    )
    check_neighbours_parsed(telegram)


def test_legacy_value_line_that_is_not_a_value() -> None:
    telegram = decode(LEGACY, "1-0:1.8.1(000001.500*kWh)", GOOD_AFTER)
    assert telegram.malformed == (LineIssue("0-1:24.3.0", "its value line is missing"),)
    check_neighbours_parsed(telegram)


# --- the line memo -----------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_memo_gives_equal_telegrams(name: str) -> None:
    frame = parse(load(name)).raw
    plain = decode_frame(frame)
    memo = LineMemo()
    first = decode_frame(frame, memo=memo)
    again = decode_frame(frame, memo=memo)  # now from the memo
    assert first == plain
    assert again == plain
    assert memo.effects  # lines were remembered
    assert not any(line.startswith("0-1:24.3.0") for line in memo.effects)


def test_memo_shared_between_fixtures_and_small_limit() -> None:
    frames = [parse(load(name)).raw for name in FIXTURE_NAMES]
    expected = [decode_frame(frame) for frame in frames]
    for limit in (1, 1000, 3000, 20_000, MEMO_SIZE):
        memo = LineMemo(limit=limit)
        for _ in range(3):
            for frame, want in zip(frames, expected, strict=True):
                assert decode_frame(frame, memo=memo) == want
                assert memo.size <= limit // 2
        if limit >= 3000:
            assert memo.effects  # small generations still remember
        # The bound, plus the memo's own fixed part (its empty dicts, under 1 KiB).
        assert memo_bytes(memo) <= limit + memo_bytes(LineMemo(limit))


def test_memo_limit_zero_remembers_nothing() -> None:
    memo = LineMemo(limit=0)
    decode_frame(parse(load("v5.txt")).raw, memo=memo)
    assert memo.effects == {} and memo.older == {} and memo.values is None


def test_stream_memo_stays_bounded() -> None:
    stream = TelegramStream()
    lines_per_telegram = 200
    peak = 0
    for index in range(60):
        lines = [
            f"1-0:1.8.1({index * lines_per_telegram + n:010d}*Wh)"
            for n in range(lines_per_telegram)
        ]
        outcomes = stream.feed(build(*lines))
        assert [outcome.result for outcome in outcomes] == ["ok"]
        telegram = outcomes[0].telegram
        assert telegram is not None
        assert telegram.value("1-0:1.8.1") == 3600.0 * (index * lines_per_telegram + 199)
        peak = max(peak, memo_bytes(stream.memo))
    assert stream.memo.limit == MEMO_SIZE
    assert MEMO_SIZE / 4 < peak <= MEMO_SIZE  # filled, rotated, never past the bound


def test_memo_stays_under_its_bound_on_a_realistic_stream() -> None:
    """20,000 telegrams whose voltages, currents and per-phase powers move every second:
    the memo never holds more than MEMO_SIZE bytes, keeps the lines the meter repeats,
    and every telegram decodes as it would without a memo."""
    stream = TelegramStream(sticky_crc=True)
    peak = 0
    for index, frame in enumerate(realistic_stream(20_000)):
        (outcome,) = stream.feed(frame)
        assert outcome.telegram is not None, outcome.error
        if index % 250 == 0:
            peak = max(peak, memo_bytes(stream.memo))
            assert outcome.telegram == decode_frame(frame)
    assert peak <= MEMO_SIZE
    # The lines that never change are still remembered after 20,000 telegrams.
    repeated = [line for line in V5_LINES if "(" in line and not line.startswith(MOVING)]
    assert len(repeated) > 20
    remembered = stream.memo.effects.keys() | stream.memo.older.keys()
    assert all(line in remembered for line in repeated)


DENSE = {
    # Records are the densest effects: a power-failure log and a peak history.
    "failures": lambda i: (
        "1-0:99.97.0(40)(0-0:96.7.19)" + "".join(f"(0)({i * 40 + n}*s)" for n in range(40))
    ),
    "history": lambda i: (
        "0-0:98.1.0(30)(1-0:1.6.0)(1-0:1.6.0)"
        + "".join(f"()()({i * 30 + n}*kW)" for n in range(30))
    ),
    "unknown": lambda i: f"1-0:99.99.9({i:0200d})",
    "malformed": lambda i: f"garbage {i:0200d}",
    "text": lambda i: f"0-0:96.13.0({str(i).encode().hex():0>400})",
    "numbers": lambda i: f"1-0:1.8.1({i:018d}*Wh)",
}


@pytest.mark.parametrize("kind", DENSE)
def test_memo_bound_holds_for_the_densest_lines(kind: str) -> None:
    """Distinct lines of every dense kind, 20 per telegram: still at most MEMO_SIZE."""
    stream = TelegramStream()
    peak = 0
    for index in range(150):
        lines = [DENSE[kind](index * 20 + n) for n in range(20)]
        (outcome,) = stream.feed(build(*lines))
        assert outcome.telegram is not None, outcome.error
        peak = max(peak, memo_bytes(stream.memo))
    assert MEMO_SIZE / 4 < peak <= MEMO_SIZE


def test_memo_with_malformed_and_unknown_lines() -> None:
    frame = build(GOOD_BEFORE, "garbage", "1-0:99.99.9(1)", LEGACY, "(00001.001)", GOOD_AFTER)
    plain = parse(frame)
    memo = LineMemo()
    assert decode_frame(plain.raw, memo=memo) == plain
    assert decode_frame(plain.raw, memo=memo) == plain
    assert len(plain.malformed) == 1 and len(plain.unknown) == 1
    assert plain.mbus[1].reading is not None


ONE_OF_EACH = [
    "1-0:32.7.0(0230.2*V)",
    "1-0:1.7.0(1)",
    "1-0:1.8.1(111111111111111111*kWh)",
    "0-0:1.0.0(170102192002W)",
    "0-1:96.1.0(3232323241424344313233343536373839)",
    "0-1:24.2.1(170102161005W)(00000.107*m3)",
    "0-1:24.1.0(003)",
    "0-1:24.4.0(1)",
    "1-0:99.97.0(40)(0-0:96.7.19)" + "()(1*s)" * 40,
    "1-0:99.97.0(40)(0-0:96.7.19)" + "".join(f"(0)({n + 1000}*s)" for n in range(40)),
    "0-0:98.1.0(30)(1-0:1.6.0)(1-0:1.6.0)" + "()()(1*kW)" * 30,
    "0-0:96.13.0(" + "41" * 200 + ")",
    "1-0:99.99.9(" + "x" * 200 + ")",
    "1-0:1.1.1()",
    "garbage" * 30,
    "x",
    "x" * 200 + "(1)",
    "1-0:31.4.0(1)(2)",
]


@pytest.mark.parametrize("line", ONE_OF_EACH, ids=lambda line: line[:24])
def test_an_entry_holds_no_more_than_the_memo_counts(line: str) -> None:
    """The per-entry counts (parser._ENTRY_BYTES and the rest) are upper bounds of what one
    remembered line and its value text really hold, dict slots included."""
    memo = LineMemo(limit=10**9)
    empty = memo_bytes(memo)
    decode_frame(build(line), memo=memo)
    assert line in memo.effects
    assert memo_bytes(memo) - empty <= memo.size
