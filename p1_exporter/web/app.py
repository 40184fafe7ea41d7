"""The exporter's HTTP routes: /metrics, the landing page, /healthz and the telegram API.

Routes read the readers' immutable snapshots only, so no request can block a
reader. The transport (event loop, TLS, auth, gzip, 405) is :mod:`p1_exporter.web.server`.
"""

from __future__ import annotations

import html
import json
import time

from prometheus_client.exposition import choose_encoder

from p1_exporter import __version__
from p1_exporter.core.render_json import telegram_to_dict
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.collector import CounterSource, SnapshotSource, make_registry
from p1_exporter.web.messages import Request, Response

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"


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

    def __init__(self, snapshots: SnapshotSource, telemetry_path: str = "/metrics",
                 auth_failures: CounterSource | None = None) -> None:
        self.snapshots = snapshots
        self.telemetry_path = telemetry_path
        self.registry = make_registry(snapshots, auth_failures)

    def __call__(self, request: Request) -> Response:
        path = request.path
        if path == self.telemetry_path:
            return self.metrics(request)
        if path in ("/", "/index.html"):
            return self.landing()
        if path == "/healthz":
            return self.health()
        prefix = "/api/v1/meters/"
        if path.startswith(prefix) and path.endswith("/telegram"):
            return self.telegram(path[len(prefix) : -len("/telegram")])
        if path == "/api/v1/meters":
            now = time.monotonic()
            return _json(200, {s.name: meter_state(s, now) for s in self.snapshots()})
        return Response(404, b"404 not found: see / for the pages this exporter serves\n",
                        "text/plain; charset=utf-8")

    def metrics(self, request: Request) -> Response:
        """Prometheus text format, or OpenMetrics when the client asks for it."""
        accept = request.headers.get("Accept", "")
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # e.g. "application/openmetrics-text; version=x"
            encoder, content_type = choose_encoder("")  # the text format
        return Response(200, encoder(self.registry), content_type)

    def health(self) -> Response:
        """200 when every meter is fresh, else 503 with the reason per meter."""
        now = time.monotonic()
        meters = {s.name: meter_state(s, now) for s in self.snapshots()}
        healthy = all(m["fresh"] for m in meters.values())
        status = "ok" if healthy else "stale"
        body = {"status": status, "meters": {name: {"fresh": m["fresh"], "reason": m["reason"]}
                                             for name, m in meters.items()}}
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
        return _json(200, {
            "meter": name,
            "received_at": snap.received_at,
            "age_seconds": snap.age(now),
            "fresh": snap.fresh(now),
            "raw": telegram.raw.decode("latin-1"),
            "decoded": telegram_to_dict(telegram),
        })

    def landing(self) -> Response:
        """A small HTML page: each meter's state, and links."""
        now = time.monotonic()
        rows = []
        for snap in self.snapshots():
            state = meter_state(snap, now)
            name = html.escape(snap.name)
            age = state["age_seconds"]
            rows.append(
                "<tr>"
                f"<td>{name}</td>"
                f"<td class={'ok' if state['fresh'] else 'bad'}>"
                f"{'fresh' if state['fresh'] else 'STALE'}</td>"
                f"<td>{'-' if age is None else f'{age:.1f} s'}</td>"
                f"<td>{html.escape(snap.source)}</td>"
                f"<td>{html.escape(snap.settings or '')}</td>"
                f"<td>{snap.telegrams.get('ok', 0)} ok, {snap.telegrams.get('crc_error', 0)}"
                f" CRC errors, {snap.telegrams.get('malformed', 0)} malformed</td>"
                f"<td>{html.escape(str(state['reason']))}"
                f"{'; last error: ' + html.escape(snap.last_error) if snap.last_error else ''}"
                "</td>"
                f"<td><a href=\"/api/v1/meters/{name}/telegram\">telegram</a></td>"
                "</tr>"
            )
        path = html.escape(self.telemetry_path)
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>p1-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
.ok{{color:#186a18}}.bad{{color:#b00020;font-weight:bold}}</style></head>
<body><h1>p1-exporter {html.escape(__version__)}</h1>
<p>Prometheus exporter for DSMR / P1 smart meters.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/healthz">Health</a>
&middot; <a href="/api/v1/meters">Meters (JSON)</a></p>
<table><tr><th>meter</th><th>state</th><th>age</th><th>source</th><th>settings</th>
<th>telegrams</th><th>details</th><th></th></tr>
{''.join(rows)}
</table></body></html>
"""
        return Response(200, page.encode(), _HTML)


