"""The exporter's HTTP routes: /metrics, the live page, /healthz and the JSON API.

Routes read the readers' immutable snapshots (and the live page's histories, which
need no lock either), so no request can block a reader. The transport (event loop, TLS,
auth, gzip, 405) is :mod:`p1_exporter.web.server`; every route, the live page and its
JSON included, goes through the same TLS and basic auth as /metrics.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping

from prometheus_client.exposition import choose_encoder

from p1_exporter.core.render_json import telegram_to_dict
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.collector import CounterSource, SnapshotSource
from p1_exporter.metrics.exposition import CachedExposition
from p1_exporter.web.live import STATIC_FILES, live_document, static_file
from p1_exporter.web.live_history import MeterHistory
from p1_exporter.web.messages import Request, Response

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
#: The page and its files are small; "no-cache" makes browsers revalidate after an upgrade.
_NO_CACHE = (("Cache-Control", "no-cache"),)
#: The live page runs only its own script and styles, and nothing from elsewhere: a second
#: line of defence behind escaping every text that comes from a meter.
_PAGE_HEADERS = (
    *_NO_CACHE,
    ("Content-Security-Policy", "default-src 'self'; base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
)
#: Query parameters of /api/v1/live: chart slots the page already has.
_SLOT_PARAMETERS = ("since", "gas_since")


def _json(status: int, value: object) -> Response:
    return Response(status, json.dumps(value, indent=2).encode() + b"\n", _JSON)


def meter_state(snap: Snapshot, now_monotonic: float) -> dict[str, object]:
    """A meter's health in plain data: fresh or not, and why."""
    age = snap.age(now_monotonic)
    if age is None:
        reason = "no validated telegram yet"
    elif age >= snap.stale_after:
        reason = f"no validated telegram for {age:.0f} s (stale after {snap.stale_after:g} s)"
    else:
        reason = "ok"
    return {
        "fresh": snap.fresh(now_monotonic),
        "reason": reason,
        "age_seconds": None if age is None else round(age, 3),
        "source": snap.source,
        "connected": snap.connected,
        "settings": snap.settings,
        "telegrams": dict(snap.telegrams),
        "last_error": snap.last_error,
    }


class ExporterApp:
    """Maps requests to responses for a fixed set of meter readers."""

    def __init__(
        self,
        snapshots: SnapshotSource,
        telemetry_path: str = "/metrics",
        histories: Mapping[str, MeterHistory] | None = None,
        auth_failures: CounterSource | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.telemetry_path = telemetry_path
        #: /metrics from per-meter pieces cached per snapshot (see metrics.exposition).
        self.exposition = CachedExposition(snapshots, auth_failures)
        self.registry = self.exposition.registry
        self.histories: Mapping[str, MeterHistory] = histories or {}
        self.started = time.time()
        # The page's files are read once; the metrics link is relative ("metrics"), so the
        # page also works behind a reverse proxy that serves the exporter under a prefix.
        page = static_file("index.html").decode()
        metrics_link = html.escape(telemetry_path.lstrip("/") or "./", quote=True)
        self._page = page.replace("{{metrics_path}}", metrics_link).encode()
        self._static = {
            path: Response(200, static_file(name), content_type, _NO_CACHE)
            for path, (name, content_type) in STATIC_FILES.items()
        }

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path == self.telemetry_path:
            return self.metrics(request)
        if path in ("/", "/index.html"):
            return Response(200, self._page, _HTML, _PAGE_HEADERS)
        static = self._static.get(path)
        if static is not None:
            return static
        if path == "/api/v1/live":
            return self.live(request)
        if path == "/healthz":
            return self.health()
        prefix = "/api/v1/meters/"
        if path.startswith(prefix) and path.endswith("/telegram"):
            return self.telegram(path[len(prefix) : -len("/telegram")])
        if path == "/api/v1/meters":
            now = time.monotonic()
            return _json(200, {s.name: meter_state(s, now) for s in self.snapshots()})
        return Response(
            404,
            b"404 not found: see / for the pages this exporter serves\n",
            "text/plain; charset=utf-8",
        )

    def metrics(self, request: Request) -> Response:
        """Prometheus text format, or OpenMetrics when the client asks for it."""
        accept = request.headers.get("Accept", "")
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # e.g. "application/openmetrics-text; version=x"
            encoder, content_type = choose_encoder("")  # the text format
        return Response(200, self.exposition.encode(encoder), content_type)

    def health(self) -> Response:
        """200 when every meter is fresh, else 503 with the reason per meter."""
        now = time.monotonic()
        meters = {s.name: meter_state(s, now) for s in self.snapshots()}
        healthy = all(m["fresh"] for m in meters.values())
        status = "ok" if healthy else "stale"
        body = {
            "status": status,
            "meters": {
                name: {"fresh": m["fresh"], "reason": m["reason"]} for name, m in meters.items()
            },
        }
        return _json(200 if healthy else 503, body)

    def telegram(self, name: str) -> Response:
        """The latest validated telegram of a meter, raw and decoded."""
        snap = next((s for s in self.snapshots() if s.name == name), None)
        if snap is None:
            return _json(404, {"error": f"no meter named {name!r}"})
        telegram = snap.telegram
        if telegram is None:
            return _json(404, {"error": f"meter {name!r} has no validated telegram yet"})
        now = time.monotonic()
        return _json(
            200,
            {
                "meter": name,
                "received_at": snap.received_at,
                "age_seconds": snap.age(now),
                "fresh": snap.fresh(now),
                "raw": telegram.raw.decode("latin-1"),
                "decoded": telegram_to_dict(telegram),
            },
        )

    def live(self, request: Request) -> Response:
        """The live page's data; ``?since=N&gas_since=M`` asks only for newer chart points."""
        slots: dict[str, int | None] = {}
        for name in _SLOT_PARAMETERS:
            values = request.query.get(name)
            if not values:
                slots[name] = None
                continue
            text = values[-1]
            if not (text.isascii() and text.isdigit() and len(text) <= 12):
                return _json(400, {"error": f"{name} must be a slot number, not {text[:40]!r}"})
            slots[name] = int(text)
        now = time.monotonic()
        meters = [(snap, meter_state(snap, now)) for snap in self.snapshots()]
        document = live_document(
            meters, self.histories, self.started, slots["since"], slots["gas_since"]
        )
        body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
        return Response(200, body, _JSON, (("Cache-Control", "no-store"),))
