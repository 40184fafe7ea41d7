"""/metrics bytes from per-meter pieces cached on the snapshot, so a scrape only joins bytes.

Why: :class:`~p1_exporter.metrics.collector.P1Collector` rebuilds every sample of every
meter at each scrape, which at hundreds of meters costs hundreds of milliseconds of CPU
per scrape. Here each meter's lines are rendered once per snapshot (snapshots are
immutable and replaced on every publish, so the snapshot's identity is the cache key):
by the first scrape that sees it, or ahead by :meth:`CachedExposition.prepare` when the
publisher calls it. A scrape puts the cached pieces under each family's HELP/TYPE header,
beside the few exporter-wide samples (``P1Collector.exporter_samples``), rendered then.

The output is byte for byte the collector's (a test proves it): the text and
OpenMetrics formats want each family's header once with all meters' samples of that
family together, so pieces are kept per (meter, family) and assembled per family in
catalog order. prometheus_client still writes every byte that needs care: the headers
and each series' ``name{labels} `` come from its encoders (which escape), and values
from its number formatter. A series' prefix is rendered once and reused while the
meter keeps sending it, so a new snapshot costs one formatted number per changed value.

No locks: a scrape reads one snapshot per meter and swaps whole cache entries (two
scrapes at once may render the same snapshot twice; both results are equal). Memory is
one entry per meter, holding its current snapshot's pieces and the series they write.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest as text_encoder
from prometheus_client.openmetrics.exposition import ALLOWUTF8, DOTS, UNDERSCORES, VALUES
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from p1_exporter.logs.limiter import LogLimiter
from p1_exporter.meter.snapshot import Snapshot
from p1_exporter.metrics.catalog import METRICS
from p1_exporter.metrics.collector import (
    CounterSource,
    P1Collector,
    SnapshotSource,
    family_labels,
    health_samples,
    meter_values,
    metric_family,
)

log = logging.getLogger("p1_exporter.exposition")

Encoder = Callable[[CollectorRegistry], bytes]
#: One meter's lines in one format: the families it has (indexes in catalog order, its
#: layout) and, for each, its lines of that family.
Pieces = tuple[tuple[int, ...], tuple[bytes, ...]]
#: A series (metric, label values), and how it was last written: ``name{labels} `` in the
#: text and OpenMetrics formats, its last value and that value formatted.
SeriesKey = tuple[str, tuple[str, ...]]
Series = tuple[str, str, float, str]
_Sample = tuple[str, tuple[str, ...], float]

_NAMES = list(METRICS)
_INDEX = {name: index for index, name in enumerate(_NAMES)}
_EOF = b"# EOF\n"
_PROBE = 0.0  # the value a prefix is rendered with, then cut off
#: prometheus_client's number formatting, as both its encoders use it.
_number: Callable[[float], str] = floatToGoString
_PROBE_TAIL = b" " + _number(_PROBE).encode() + b"\n"


class _Families(Collector):
    """A collector that yields fixed families (to run them through an encoder)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def _encode(families: Iterable[Metric], openmetrics: bool, escaping: str = UNDERSCORES) -> bytes:
    """The encoder's output for ``families``, without OpenMetrics' closing ``# EOF``."""
    if openmetrics:
        body: bytes = openmetrics_encoder(  # type: ignore[no-untyped-call]
            _Families(families), escaping=escaping
        )
        if not body.endswith(_EOF):
            raise ValueError(f"OpenMetrics exposition without # EOF: {body[-80:]!r}")
        return body[: -len(_EOF)]
    return text_encoder(_Families(families), escaping=escaping)


def _headers(openmetrics: bool) -> list[bytes]:
    """Each catalog family's HELP/TYPE lines, as the encoder writes them for no sample."""
    return [_encode([metric_family(METRICS[name])], openmetrics) for name in _NAMES]


_HEADERS = (_headers(False), _headers(True))


def _same_escapings(openmetrics: bool) -> frozenset[str]:
    """The escaping schemes whose output is the default one's for every catalog family.

    Schemes differ only on names that are not classic Prometheus names (or, for ``dots``,
    on underscores), so for the catalog most give the same bytes; Prometheus 3 asks for
    ``allow-utf-8``. Checked here on every family with label values that need escaping,
    rather than assumed: the cache serves only the schemes that pass.
    """
    probe = []
    for name in _NAMES:
        spec = METRICS[name]
        family = metric_family(spec)
        family.add_metric(['a"b\\c\nd.e-\u00e9'] * len(family_labels(spec)), 1.5)
        probe.append(family)
    default = _encode(probe, openmetrics)
    return frozenset(
        scheme
        for scheme in (UNDERSCORES, ALLOWUTF8, VALUES, DOTS)
        if _encode(probe, openmetrics, scheme) == default
    )


_SAME_ESCAPINGS = (_same_escapings(False), _same_escapings(True))


def _prefixes(metric: str, labels: tuple[str, ...]) -> tuple[str, str]:
    """``name{labels} `` of one series in the text and OpenMetrics formats, as the encoders
    write it (escaping included): the series is encoded with a probe value, which is cut off."""
    index = _INDEX[metric]
    out = []
    for openmetrics in (False, True):
        family = metric_family(METRICS[metric])
        family.add_metric(list(labels), _PROBE)
        body = _encode([family], openmetrics)
        header = _HEADERS[openmetrics][index]
        if (
            not body.startswith(header)
            or not body.endswith(_PROBE_TAIL)
            or body.count(b"\n", len(header)) != 1
        ):
            raise ValueError(f"unexpected exposition for {metric}: {body!r}")
        out.append(body[len(header) : -len(_PROBE_TAIL) + 1].decode())
    text, om = out
    return text, (text if om == text else om)  # one object when the formats agree


def _pieces(
    samples: Sequence[_Sample], known: dict[SeriesKey, Series], used: dict[SeriesKey, Series]
) -> tuple[Pieces, Pieces]:
    """One meter's samples as pieces per family in catalog order, per format (the same
    pieces when the formats write every series alike, as they do for these families).

    ``known`` are the meter's series rendered before (a series whose value is unchanged
    keeps its formatted number); the series of these samples land in ``used``.
    """
    rows: dict[int, list[Series]] = {}
    same = True
    for metric, labels, value in samples:
        key = (metric, labels)
        series = used.get(key) or known.get(key)
        if series is None:
            series = (*_prefixes(metric, labels), value, _number(value))
        elif series[2] != value or not value:  # (0.0 too: -0.0 equals it, but reads -0.0)
            series = (series[0], series[1], value, _number(value))
        used[key] = series
        same = same and series[0] is series[1]
        rows.setdefault(_INDEX[metric], []).append(series)
    layout = tuple(sorted(rows))
    text = layout, tuple("".join([f"{s[0]}{s[3]}\n" for s in rows[i]]).encode() for i in layout)
    if same:
        return text, text
    om = layout, tuple("".join([f"{s[1]}{s[3]}\n" for s in rows[i]]).encode() for i in layout)
    return text, om


class _Entry:
    """One meter's cached pieces for one snapshot; fresh and stale rendered on demand."""

    __slots__ = ("fresh", "series", "snapshot", "stale")

    def __init__(self, snapshot: Snapshot, series: dict[SeriesKey, Series]) -> None:
        self.snapshot = snapshot
        self.series = series
        self.fresh: tuple[Pieces, Pieces] | None = None
        self.stale: tuple[Pieces, Pieces] | None = None

    def pieces(self, fresh: bool, openmetrics: bool, limiter: LogLimiter) -> Pieces:
        cached = self.fresh if fresh else self.stale
        if cached is None:
            snap = self.snapshot
            samples = health_samples(snap, fresh)
            if fresh and snap.telegram is not None:
                samples += meter_values(snap.name, snap.telegram, limiter)
            used: dict[SeriesKey, Series] = {}
            cached = _pieces(samples, self.series, used)
            # Only the series of the latest fresh render (and the health ones): bounded per
            # meter, and a meter that comes back from stale keeps its value series' prefixes.
            self.series = used if fresh else {**self.series, **used}
            if fresh:
                self.fresh = cached
            else:
                self.stale = cached
        return cached[openmetrics]


class CachedExposition:
    """The /metrics body for a set of meters, from cached per-meter pieces.

    ``registry`` serves the same families through prometheus_client's own path: it is
    used for encoders this cache does not reproduce (escaping schemes that rewrite
    names, other OpenMetrics versions), so every Accept header still gets a right answer.
    """

    def __init__(
        self,
        snapshots: SnapshotSource,
        auth_failures: CounterSource | None = None,
        *,
        self_metrics: bool = True,
    ) -> None:
        self.snapshots = snapshots
        self.own = CollectorRegistry(auto_describe=False)
        self.registry = CollectorRegistry(auto_describe=False)
        #: Also the source of the exporter-wide samples, rendered at each scrape.
        self.collector = P1Collector(snapshots, auth_failures)
        self.registry.register(self.collector)
        if self_metrics:  # as make_registry: the process's own metrics after the P1 ones
            for registry in (self.own, self.registry):
                ProcessCollector(registry=registry)
                PlatformCollector(registry=registry)
                GCCollector(registry=registry)
        self._entries: dict[str, _Entry] = {}
        self._limiter = LogLimiter(log)
        self._exporter_series: dict[SeriesKey, Series] = {}

    def meters(self, openmetrics: bool) -> bytes:
        """The P1 families (no process metrics, no ``# EOF``), as the collector writes them."""
        now = time.monotonic()
        buckets: list[list[bytes]] = [[] for _ in _NAMES]
        used: dict[SeriesKey, Series] = {}
        layout, blobs = _pieces(self.collector.exporter_samples(), self._exporter_series, used)[
            openmetrics
        ]
        self._exporter_series = used
        runs: list[tuple[tuple[int, ...], list[tuple[bytes, ...]]]] = [(layout, [blobs])]
        entries = self._entries
        count = 0
        for snap in self.snapshots():
            count += 1
            entry = entries.get(snap.name)
            if entry is None or entry.snapshot is not snap:
                entry = entries[snap.name] = _Entry(snap, {} if entry is None else entry.series)
            layout, blobs = entry.pieces(snap.fresh(now), openmetrics, self._limiter)
            if layout == runs[-1][0]:  # meters of one kind in a row: one run
                runs[-1][1].append(blobs)
            else:
                runs.append((layout, [blobs]))
        # Each run's pieces go to their families column by column (in C, not per piece),
        # in meter order within each family.
        for layout, rows in runs:
            for index, column in zip(layout, zip(*rows, strict=True), strict=True):
                buckets[index] += column
        if len(entries) > count:  # meters that went away
            names = {snap.name for snap in self.snapshots()}
            for name in list(entries):  # a copy: another scrape may add entries meanwhile
                if name not in names:
                    entries.pop(name, None)
        headers = _HEADERS[openmetrics]
        out: list[bytes] = []
        for index, bucket in enumerate(buckets):
            if bucket:
                out.append(headers[index])
                out += bucket
        return b"".join(out)

    def prepare(self, snap: Snapshot) -> None:
        """Render a just-published snapshot now (fresh, both formats), so the next scrape
        only joins bytes: for a publisher that would rather pay here than at the scrape."""
        entry = self._entries.get(snap.name)
        if entry is None or entry.snapshot is not snap:
            entry = self._entries[snap.name] = _Entry(snap, {} if entry is None else entry.series)
        entry.pieces(True, False, self._limiter)

    def text(self, escaping: str = UNDERSCORES) -> bytes:
        """The whole exposition in the Prometheus text format (0.0.4)."""
        return self.meters(False) + text_encoder(self.own, escaping=escaping)

    def openmetrics(self, escaping: str = UNDERSCORES) -> bytes:
        """The whole exposition in OpenMetrics 1.0.0, ``# EOF`` included."""
        own: bytes = openmetrics_encoder(  # type: ignore[no-untyped-call]
            self.own, escaping=escaping
        )
        return self.meters(True) + own

    def encode(self, encoder: Encoder) -> bytes:
        """What ``encoder`` (from prometheus_client's ``choose_encoder``) would produce for
        the registry, from the cache when the encoder is one it reproduces."""
        func = encoder.func if isinstance(encoder, functools.partial) else encoder
        args = encoder.args if isinstance(encoder, functools.partial) else ()
        keywords = encoder.keywords if isinstance(encoder, functools.partial) else {}
        escaping = keywords.get("escaping", UNDERSCORES)
        if not args:
            if (
                func is text_encoder
                and set(keywords) <= {"escaping"}
                and escaping in _SAME_ESCAPINGS[False]
            ):
                return self.text(escaping)
            if (
                func is openmetrics_encoder
                and keywords.get("version", "1.0.0") == "1.0.0"
                and set(keywords) <= {"escaping", "version"}
                and escaping in _SAME_ESCAPINGS[True]
            ):
                return self.openmetrics(escaping)
        return encoder(self.registry)
