"""The prometheus_client collector: builds every metric at scrape time from snapshots.

Meter values come only from a fresh snapshot; exporter-health metrics are
always present, counters from 0. The collector reads immutable snapshots, so a
scrape never waits for a reader and never sees a half-updated state.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from p1_exporter import __version__
from p1_exporter.core.telegram import Telegram
from p1_exporter.logs.limiter import LogLimiter
from p1_exporter.meter.snapshot import RESULTS, Snapshot
from p1_exporter.metrics.catalog import METRICS, MetricSpec
from p1_exporter.metrics.samples import telegram_samples

SnapshotSource = Callable[[], Sequence[Snapshot]]
CounterSource = Callable[[], Mapping[str, float]]
AUTH_FAILURE_REASONS = ("missing", "invalid", "busy")
log = logging.getLogger("p1_exporter.collector")


def family_labels(spec: MetricSpec) -> list[str]:
    """A family's label names: ``meter`` first, except on the exporter-wide families."""
    return ["meter", *spec.labels] if spec.per_meter else list(spec.labels)


def metric_family(spec: MetricSpec) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty prometheus_client family for a catalog entry."""
    labels = family_labels(spec)
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


def meter_values(
    meter: str, telegram: Telegram, limiter: LogLimiter
) -> list[tuple[str, tuple[str, ...], float]]:
    """One meter's value samples (metric, label values, value), or none if any cannot be
    exported.

    A telegram the parser accepted but whose values cannot be written (a value too
    large for a float, say) must cost that meter its values for this scrape, not
    fail the whole /metrics for every meter.
    """
    try:
        return [
            (s.metric, (meter, *(v for _, v in s.labels)), float(s.value))
            for s in telegram_samples(telegram)
        ]
    except Exception as exc:  # any failure here stays with this meter
        limiter.log(
            f"values:{meter}", logging.ERROR, f"meter {meter}: values left out of /metrics: {exc!r}"
        )
        return []


def health_samples(snap: Snapshot, fresh: bool) -> list[tuple[str, tuple[str, ...], float]]:
    """One meter's exporter-health samples (metric, label values, value), always present."""
    meter = snap.name
    samples: list[tuple[str, tuple[str, ...], float]] = [
        ("p1_up", (meter,), 1.0 if fresh else 0.0),
        ("p1_last_telegram_timestamp_seconds", (meter,), snap.received_at or 0.0),
        ("p1_stale_after_seconds", (meter,), snap.stale_after),
    ]
    # Every meter counts RESULTS from 0; encrypted and HAN meters add their own outcomes.
    results = (*RESULTS, *(r for r in snap.telegrams if r not in RESULTS))
    samples += [
        ("p1_telegrams_total", (meter, result), float(snap.telegrams.get(result, 0)))
        for result in results
    ]
    samples += [
        ("p1_source_connects_total", (meter,), float(snap.connects)),
        ("p1_source_errors_total", (meter,), float(snap.source_errors)),
        ("p1_source_connected", (meter,), 1.0 if snap.connected else 0.0),
        ("p1_bytes_read_total", (meter,), float(snap.bytes_read)),
        ("p1_garbage_bytes_total", (meter,), float(snap.garbage_bytes)),
        ("p1_unknown_obis_lines_total", (meter,), float(snap.unknown_lines)),
        ("p1_malformed_lines_total", (meter,), float(snap.malformed_lines)),
        ("p1_glitches_total", (meter,), float(snap.glitches)),
    ]
    return samples


class P1Collector(Collector):
    """Collects all meters' metrics from ``snapshots()`` at each scrape."""

    def __init__(
        self, snapshots: SnapshotSource, auth_failures: CounterSource | None = None
    ) -> None:
        self.snapshots = snapshots
        self.auth_failures = auth_failures
        self._limiter = LogLimiter(log)

    def _meter_values(
        self, meter: str, telegram: Telegram
    ) -> list[tuple[str, tuple[str, ...], float]]:
        return meter_values(meter, telegram, self._limiter)

    def exporter_samples(self) -> list[tuple[str, tuple[str, ...], float]]:
        """The exporter-wide samples (no meter label), read at each scrape."""
        samples: list[tuple[str, tuple[str, ...], float]] = [
            ("p1_exporter_build_info", (__version__, platform.python_version()), 1.0)
        ]
        if self.auth_failures is not None:
            failures = self.auth_failures()
            samples += [
                ("p1_exporter_http_auth_failures_total", (reason,), float(failures.get(reason, 0)))
                for reason in AUTH_FAILURE_REASONS
            ]
        return samples

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

        def add(name: str, labels: Sequence[str], value: float) -> None:
            family = families.get(name)
            if family is None:
                family = families[name] = metric_family(METRICS[name])
            family.add_metric(list(labels), value)

        for name, labels, value in self.exporter_samples():
            add(name, labels, value)
        for snap in self.snapshots():
            meter = snap.name
            fresh = snap.fresh(now)
            for name, labels, value in health_samples(snap, fresh):
                add(name, labels, value)
            if fresh and snap.telegram is not None:
                for name, labels, value in self._meter_values(meter, snap.telegram):
                    add(name, labels, value)
        # Families in catalog order, so the exposition is stable for diffs and tests.
        return [families[name] for name in METRICS if name in families]


#: Name prefixes of the self-metrics every exporter has (prometheus_client's process,
#: platform and garbage-collector collectors); they describe the exporter process.
SELF_METRIC_PREFIXES = ("process_", "python_")


def make_registry(
    snapshots: SnapshotSource,
    auth_failures: CounterSource | None = None,
    *,
    self_metrics: bool = True,
) -> CollectorRegistry:
    """A registry of our own (not the global one): the P1 collector and, with
    ``self_metrics``, the exporter process's own ``process_*`` and ``python_*`` metrics.

    ``auth_failures`` (reason -> count) comes from the HTTP server; without it (decode,
    backfill) that family is left out.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(P1Collector(snapshots, auth_failures))
    if self_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def iter_metric_names(registry: CollectorRegistry) -> Iterator[str]:
    """Names of the families a registry yields now (for tests and docs)."""
    for metric in registry.collect():
        yield metric.name


def telegram_exposition(telegram: Telegram, meter: str = "main") -> str:
    """The text /metrics would serve for one fresh telegram (``decode --format metrics``).

    Without the self-metrics: they would describe the ``decode`` process, not a meter.
    """
    from prometheus_client.exposition import generate_latest

    snap = Snapshot(
        meter,
        "decode",
        stale_after=float("inf"),
        telegram=telegram,
        received_at=telegram.meter_time or 0.0,
        received_monotonic=time.monotonic(),
    )
    return generate_latest(make_registry(lambda: [snap], self_metrics=False)).decode()
