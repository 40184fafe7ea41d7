"""The live page at / in a real browser: Debian's chromium driven by Selenium.

One exporter process (basic auth on, as ``--web.config.file`` sets it) reads four meters:
``home`` (simulated DSMR 5), ``shop`` (simulated Belgian meter), ``attic``, a replay of
one telegram whose header and text message carry markup and which goes stale after 2 s,
and ``shed``, a network meter on a port where nothing listens (never a telegram).
The browser sends the credentials as a header (DevTools ``Network.setExtraHTTPHeaders``).

The screenshots (desktop, phone, dark mode) come from a second exporter, run in this
process, whose meters have 6 h of history fed in before it starts; they are written to a
temporary directory, or to docs/img/ when ``P1_UPDATE_SCREENSHOTS=1`` (the README shows
those).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from p1_exporter import parse
from p1_exporter.meter.reader import MeterConfig, MeterReader
from p1_exporter.meter.sources.sim import SimSource
from p1_exporter.sim.meter import SimulatedMeter
from p1_exporter.web.app import ExporterApp
from p1_exporter.web.live_history import MeterHistory
from p1_exporter.web.server import ExporterHTTPServer
from tests.helpers.binaries import require_binary
from tests.helpers.exporter import ROOT, ExporterProcess, http_get
from tests.helpers.fixtures import FIXTURES
from tests.helpers.metrics import series, value
from tests.helpers.net import free_port
from tests.helpers.telegrams import replace_line
from tests.helpers.wait import wait_for

if os.environ.get("CI", "").lower() != "true":
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

#: A browser and exporter processes: every test here takes seconds.
pytestmark = pytest.mark.slow

USER, PASSWORD = "homeowner", "correct horse battery"
MARKUP_HEADER = "/XSS5\\<i id=bold>bold"  # no "/": that would start a telegram
MARKUP_MESSAGE = "<img src=x id=injected onerror=window.__xss=1>"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
SCREENSHOTS = ROOT / "docs" / "img"


def auth_header() -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def markup_telegram() -> bytes:
    """The v5 fixture with markup in its header and text message (and a correct CRC)."""
    telegram = (FIXTURES / "v5.txt").read_bytes()
    telegram = replace_line(telegram, b"/ISk5\\2MT382-1000", MARKUP_HEADER.encode())
    return replace_line(
        telegram,
        b"0-0:96.13.0()",
        b"0-0:96.13.0(" + MARKUP_MESSAGE.encode().hex().upper().encode() + b")",
    )


def start_browser(user_data: Path) -> webdriver.Chrome:
    chromium = require_binary("chromium", "chromium")
    driver_path = require_binary("chromedriver", "chromium-driver")
    options = Options()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data}")
    options.add_argument("--window-size=1280,1400")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    directory = tmp_path_factory.mktemp("live")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = directory / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    replay = directory / "attic.txt"
    replay.write_bytes(markup_telegram())
    config = directory / "config.yml"
    config.write_text(
        "meters:\n"
        "  - {name: home, device: 'sim://?dialect=dsmr5&seed=11&interval=1'}\n"
        "  - {name: shop, device: 'sim://?dialect=belgian&seed=12&interval=1'}\n"
        f"  - {{name: attic, device: 'file:{replay}', stale_after: 2}}\n"
        f"  - {{name: shed, device: 'socket://127.0.0.1:{free_port()}'}}\n"
    )
    args = [
        "--config",
        str(config),
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.config.file",
        str(web_config),
    ]
    with ExporterProcess(args) as process:
        process.wait_listening()
        yield process
        assert process.stop()[0] == 0


@pytest.fixture(scope="module")
def browser(exporter: ExporterProcess) -> Iterator[webdriver.Chrome]:
    user_data = Path(tempfile.mkdtemp(prefix="p1-chromium-"))
    try:
        driver = start_browser(user_data)
        try:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": auth_header()})
            driver.get(exporter.url + "/")
            wait_until(driver, lambda: len(cards(driver)) == 4, "four meter cards")
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(user_data, ignore_errors=True)


def wait_until(driver: webdriver.Chrome, condition: Any, what: str, timeout: float = 15) -> None:
    # The page redraws parts of a card on each poll (phase rows, chart contents), so an
    # element found a moment ago may be gone: that is "not yet", not a failure.
    wait_for(lambda: bool(condition()), timeout, what, retry_on=(StaleElementReferenceException,))


def cards(driver: webdriver.Chrome) -> dict[str, Any]:
    found = driver.find_elements(By.CSS_SELECTOR, "section.card")
    return {str(c.get_attribute("data-meter")): c for c in found}


def card(driver: webdriver.Chrome, name: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'section.card[data-meter="{name}"]')


def shown_watts(text: str) -> float:
    """The watts a power figure on the page says: "1234 W" or "12.3 kW"."""
    match = re.fullmatch(r"(-?[\d.]+) (k?)W", text)
    assert match, text
    return float(match[1]) * (1000 if match[2] else 1)


def scrape(exporter: ExporterProcess) -> dict[str, Any]:
    reply = http_get(exporter.url, "/metrics", headers=auth_header())
    assert reply.status == 200
    return series(reply.body.decode())


# -- the page and its JSON are behind the same auth as /metrics --------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/index.html",
        "/api/v1/live",
        "/static/live.js",
        "/static/live.css",
        "/static/icon.svg",
        "/metrics",
    ],
)
def test_basic_auth_guards_the_page_like_metrics(exporter: ExporterProcess, path: str) -> None:
    refused = http_get(exporter.url, path)
    assert refused.status == 401
    assert b"p1_" not in refused.body and b"<svg" not in refused.body
    assert http_get(exporter.url, path, headers=auth_header()).status == 200


def test_page_size_and_no_outside_fetches(exporter: ExporterProcess) -> None:
    total = 0
    for path in ("/", "/static/live.js", "/static/live.css", "/static/icon.svg"):
        body = http_get(exporter.url, path, headers=auth_header()).body
        total += len(body)
        text = body.decode()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "@font-face" not in text and "innerHTML" not in text
    assert total < 100_000, total


# -- in the browser ----------------------------------------------------------------------------


def test_power_on_page_equals_metrics(browser: webdriver.Chrome, exporter: ExporterProcess) -> None:
    """The figure shown is /metrics' value for the same telegram (same meter clock)."""
    matched = 0
    deadline = time.monotonic() + 20
    while matched < 3 and time.monotonic() < deadline:
        found = scrape(exporter)
        clock = value(found, "p1_meter_clock_timestamp_seconds", meter="home")
        home = card(browser, "home")
        shown_clock = home.get_attribute("data-meter-time")
        if clock is None or not shown_clock or float(shown_clock) != clock:
            time.sleep(0.2)  # the page polls every 2 s; wait for it to show this telegram
            continue
        imported = home.find_element(By.CSS_SELECTOR, '[data-field="import"]').text
        exported = home.find_element(By.CSS_SELECTOR, '[data-field="export"]').text
        if home.get_attribute("data-meter-time") != shown_clock:
            continue  # the page moved on while we read it
        assert shown_watts(imported) == value(found, "p1_power_import_watts", meter="home")
        assert shown_watts(exported) == value(found, "p1_power_export_watts", meter="home")
        matched += 1
        time.sleep(1.1)
    assert matched == 3, "the page never showed the telegram /metrics had"


def test_chart_has_points_and_page_updates_without_reload(browser: webdriver.Chrome) -> None:
    browser.execute_script("window.__notReloaded = true;")
    home = card(browser, "home")
    chart = home.find_element(By.CSS_SELECTOR, ".power-chart svg")
    wait_until(browser, lambda: int(chart.get_attribute("data-points") or 0) >= 1, "chart points")
    assert chart.find_elements(By.CSS_SELECTOR, "path.imp, path.exp")
    polls = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0)
    before = home.get_attribute("data-meter-time")  # read after `polls`: never newer
    wait_until(
        browser,
        lambda: card(browser, "home").get_attribute("data-meter-time") != before,
        "a newer telegram on the page",
        timeout=6,
    )
    assert int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0) > polls
    assert browser.execute_script("return window.__notReloaded === true;")
    # A 10 s slot later the chart has another point.
    points = int(chart.get_attribute("data-points"))
    wait_until(
        browser,
        lambda: (
            int(
                card(browser, "home")
                .find_element(By.CSS_SELECTOR, ".power-chart svg")
                .get_attribute("data-points")
            )
            > points
        ),
        "a new chart point",
        timeout=14,
    )


def test_page_shows_what_the_meter_sends(browser: webdriver.Chrome) -> None:
    home = card(browser, "home")
    phases = home.find_elements(By.CSS_SELECTOR, ".phases tbody tr")
    assert [p.get_attribute("data-phase") for p in phases] == ["L1", "L2", "L3"]
    assert len(home.find_elements(By.CSS_SELECTOR, ".phases tr.closest")) == 1
    assert re.fullmatch(r"tariff [12]", home.find_element(By.CSS_SELECTOR, ".tariff").text)
    readings = home.find_element(By.CSS_SELECTOR, ".registers").text
    assert re.search(r"import tariff 1\s+[\d.]+ kWh", readings)
    assert re.search(r"gas \(channel 1\)\s+[\d.]+ m³ at \d\d:\d\d", readings)
    today = home.find_element(By.CSS_SELECTOR, '[data-period="today"]').text
    # Started just now, so "today" honestly starts at the exporter's first telegram.
    assert re.match(r"Today, since \d\d:\d\d", today), today
    assert "net" in today and "gas" in today
    shop = card(browser, "shop")
    demand = shop.find_element(By.CSS_SELECTOR, ".demand")
    assert demand.is_displayed()
    assert re.search(r"peak this month\s+[\d.]+ kW", demand.text)
    assert home.find_elements(By.CSS_SELECTOR, ".demand")[0].is_displayed() is False


def test_stale_meter_shows_as_stale(browser: webdriver.Chrome) -> None:
    wait_until(
        browser,
        lambda: card(browser, "attic").get_attribute("data-fresh") == "false",
        "attic stale",
    )
    attic = card(browser, "attic")
    assert attic.find_element(By.CSS_SELECTOR, ".badge").text == "stale"
    assert re.search(
        r"stale: no validated telegram for \d+ s \(stale after 2 s\)",
        attic.find_element(By.CSS_SELECTOR, ".state").text,
    )
    assert card(browser, "home").get_attribute("data-fresh") == "true"
    # It had a telegram, so its raw telegram is linked.
    link = attic.find_element(By.CSS_SELECTOR, "a.raw")
    assert link.get_attribute("href").endswith("/api/v1/meters/attic/telegram")


def test_a_meter_that_never_sent_a_telegram(browser: webdriver.Chrome) -> None:
    shed = card(browser, "shed")
    assert shed.get_attribute("data-fresh") == "false"
    assert shed.find_element(By.CSS_SELECTOR, ".age").text == "no telegram yet"
    state = shed.find_element(By.CSS_SELECTOR, ".state").text
    assert "stale: no validated telegram yet" in state and "not connected" in state
    assert "last error:" in state  # the refused connection, in the meter's own words
    assert shed.find_elements(By.CSS_SELECTOR, "a.raw") == []  # no telegram, no link
    watts = shed.find_element(By.CSS_SELECTOR, '[data-field="import"]').text
    assert watts == "\u2013"  # an en dash: no value


def test_meter_text_is_shown_as_text_not_markup(browser: webdriver.Chrome) -> None:
    attic = card(browser, "attic")
    wait_until(
        browser,
        lambda: MARKUP_MESSAGE in attic.find_element(By.CSS_SELECTOR, ".message").text,
        "the meter's message",
    )
    assert MARKUP_HEADER[1:] in attic.find_element(By.CSS_SELECTOR, ".state").text
    assert browser.find_elements(By.ID, "bold") == []
    assert browser.find_elements(By.ID, "injected") == []
    assert browser.execute_script("return window.__xss === undefined;")


def page_width(driver: webdriver.Chrome) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the page: equal when nothing scrolls sideways."""
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"
    )
    return int(widths[0]), int(widths[1])


@contextlib.contextmanager
def phone(driver: webdriver.Chrome) -> Iterator[None]:
    """A 360 px wide phone screen (device pixel ratio 2)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": 780, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        driver.refresh()
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_no_horizontal_scroll_on_a_phone(browser: webdriver.Chrome) -> None:
    """Long meter texts (the attic's message, source paths) wrap on a 360 px phone."""
    with phone(browser):
        wait_until(browser, lambda: len(cards(browser)) == 4, "cards on the phone")
        wait_until(browser, lambda: MARKUP_MESSAGE in card(browser, "attic").text, "texts")
        scroll, client = page_width(browser)
        assert client == 360 and scroll <= client, f"sideways scroll: {scroll} > {client}"


def test_no_script_errors_or_refused_content(browser: webdriver.Chrome) -> None:
    """The console has no errors: no exception, and nothing the page's CSP refused."""
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    severe = [entry["message"] for entry in entries if entry["level"] == "SEVERE"]
    assert severe == []


@pytest.fixture(scope="module")
def filled() -> Iterator[str]:
    """An exporter in this process whose two meters have 6 h of history already.

    Each simulated household is run through the last 6 h first, its telegrams fed to the
    history through the same method the reader's listener calls; then its reader starts
    and carries on from the present, so the registers continue where the history ends.
    """
    hours = 6 * 3600
    now = time.time()
    meters = {
        "home": "sim://?dialect=dsmr5&seed=11&interval=1",
        "shop": "sim://?dialect=belgian&seed=12&interval=1",
    }
    histories = {name: MeterHistory() for name in meters}
    readers = []
    for name, url in meters.items():
        source = SimSource(url)
        options = dataclasses.replace(source.options, start=now - hours)
        source.meter = SimulatedMeter.from_options(options)
        t = now - hours
        while t < now - 5:
            histories[name].add(parse(source.meter.telegram_at(t)), t)
            t += 10
        source._real0 = time.monotonic() - hours  # its simulated clock is the wall clock
        readers.append(
            MeterReader(
                MeterConfig(url=url, name=name), source=source, on_telegram=histories[name].observe
            )
        )
    app = ExporterApp(lambda: [r.snapshot for r in readers], histories=histories)
    server = ExporterHTTPServer("127.0.0.1:0", app)
    for reader in readers:
        reader.start()
    server.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        for reader in readers:
            reader.stop()


def test_full_charts_screenshots_phone_and_dark_mode(filled: str, tmp_path: Path) -> None:
    target = SCREENSHOTS if os.environ.get("P1_UPDATE_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    driver = start_browser(tmp_path / "chromium")
    try:
        driver.get(filled + "/")
        wait_until(
            driver,
            lambda: (
                len(cards(driver)) == 2
                and all(c.get_attribute("data-fresh") == "true" for c in cards(driver).values())
            ),
            "cards",
        )
        home = card(driver, "home")
        # 6 h of 10 s points (one slot fewer than the ring: see Ring.read), and gas per hour.
        wait_until(
            driver,
            lambda: (
                int(
                    home.find_element(By.CSS_SELECTOR, ".power-chart svg").get_attribute(
                        "data-points"
                    )
                    or 0
                )
                >= 2150
            ),
            "a full power chart",
        )
        bars = int(
            home.find_element(By.CSS_SELECTOR, ".gas-chart svg").get_attribute("data-bars") or 0
        )
        assert 4 <= bars <= 24, bars
        today = home.find_element(By.CSS_SELECTOR, '[data-period="today"]').text
        # The history began 6 h ago: "today" starts then (or at midnight, if later).
        match = re.search(r"import\s+(\d+\.\d\d) kWh", today)
        assert match and 0 < float(match[1]) < 100, today
        shots = [target / "live-desktop.png"]
        assert driver.save_screenshot(str(shots[0]))
        with phone(driver):
            wait_until(
                driver,
                lambda: (
                    int(
                        card(driver, "home")
                        .find_element(By.CSS_SELECTOR, ".power-chart svg")
                        .get_attribute("data-points")
                        or 0
                    )
                    > 2000
                ),
                "chart on the phone",
            )
            scroll, client = page_width(driver)
            assert client == 360 and scroll <= client, f"sideways scroll: {scroll} > {client}"
            shots.append(target / "live-phone.png")
            assert driver.save_screenshot(str(shots[-1]))
        polls = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0)
        wait_until(
            driver,
            lambda: (
                int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0)
                > polls
            ),
            "a redraw at desktop width",
        )
        light = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        dark = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert light != dark and brightness(dark) < 80 < 200 < brightness(light), (light, dark)
        shots.append(target / "live-dark.png")
        assert driver.save_screenshot(str(shots[-1]))
    finally:
        driver.quit()
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def brightness(css_color: str) -> float:
    """Mean of the channels of an ``rgb(r, g, b)`` colour."""
    channels = [float(c) for c in re.findall(r"[\d.]+", css_color)[:3]]
    return sum(channels) / 3


def test_page_says_reconnecting_and_recovers(tmp_path: Path) -> None:
    """The exporter goes away: the page says so; it comes back: the page carries on."""
    port = free_port()
    args = [
        "--device",
        "sim://?dialect=dsmr4&seed=3&interval=1",
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    driver = start_browser(tmp_path / "chromium")
    try:
        with ExporterProcess(args) as first:
            first.wait_listening()
            driver.get(first.url + "/")
            wait_until(
                driver, lambda: driver.find_element(By.ID, "conn").text == "live", "page live"
            )
            driver.execute_script("window.__notReloaded = true;")
            assert first.stop()[0] == 0
        wait_until(
            driver,
            lambda: driver.find_element(By.ID, "conn").text.startswith("reconnecting"),
            "reconnecting shown",
        )
        assert "offline" in str(driver.find_element(By.TAG_NAME, "body").get_attribute("class"))
        with ExporterProcess(args) as second:
            second.wait_listening()
            wait_until(
                driver,
                lambda: driver.find_element(By.ID, "conn").text == "live",
                "page live again",
                timeout=20,
            )
            wait_until(
                driver,
                lambda: (
                    cards(driver) and card(driver, "main").get_attribute("data-fresh") == "true"
                ),
                "meter fresh again",
            )
            assert driver.execute_script("return window.__notReloaded === true;")
            assert second.stop()[0] == 0
    finally:
        driver.quit()
