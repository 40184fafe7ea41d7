"""Building ``sim://`` households off the event loop: in threads for a few, in worker
processes when a crowd starts at once.

A household integrates its month so far when it is built: tens of ms of CPU. A few are
built in threads, so the loop keeps serving. Under the GIL those threads share one core,
so a thousand meters starting together (a load test) would queue for most of a minute
while the other cores idle. Past :data:`THREAD_BUILDS` waiting builds, the rest go to
worker processes (:mod:`p1_exporter.meter.sim_worker`), one per core, each fed by a thread
of its own that waits on its pipe without the GIL. The workers run at a lower priority, so
the meters already up and the scrapes keep theirs, and end as soon as no build is
waiting: a running exporter keeps no extra process. They are started with ``subprocess``
rather than :mod:`multiprocessing`, which would re-import the program's main module in
each worker and keep a resource-tracker process for the exporter's lifetime. Anything that
goes wrong with the workers falls back to threads, with one log line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from p1_exporter.meter.sim_worker import read_frame, write_frame
from p1_exporter.meter.sources.sim import SimSource
from p1_exporter.sim.meter import SimOptions, SimulatedMeter

log = logging.getLogger(__name__)

#: Builds waiting at once up to which threads do the work (a demo, a test, a few meters).
THREAD_BUILDS = 16
#: Threads for those: under the GIL they share one core with the loop, so a few give the
#: builds most of the time without starving the meters already up.
THREADS = 4
#: Seconds a worker gets to end after its input closes, before it is killed.
WORKER_EXIT_TIMEOUT = 5.0
#: The directory holding this package, so a worker imports the same code as the exporter.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


class WorkerError(Exception):
    """A worker process could not be started or answered wrongly."""


class _Workers:
    """One worker process per thread of a small pool; each thread feeds its own worker."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=count, thread_name_prefix="sim-worker"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._closed = False

    def build(self, options: SimOptions) -> tuple[SimulatedMeter, float]:
        """In a pool thread: the household built by this thread's worker, and its build time."""
        proc = self._worker()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            write_frame(proc.stdin, pickle.dumps(options))
            answer = read_frame(proc.stdout)
        except (OSError, ValueError) as exc:
            raise WorkerError(f"worker {proc.pid}: {exc}") from exc
        if answer is None:
            raise WorkerError(f"worker {proc.pid} ended (exit code {proc.poll()})")
        try:
            reply = pickle.loads(answer)
        except Exception as exc:  # a worker of another version of the package, say
            raise WorkerError(f"worker {proc.pid} answered what cannot be read: {exc}") from exc
        if not (isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "ok"):
            detail = reply[1:] if isinstance(reply, tuple) else reply
            raise WorkerError(f"worker {proc.pid}: {detail}")
        _, meter, took = reply
        if not isinstance(meter, SimulatedMeter):
            raise WorkerError(f"worker {proc.pid} answered with a {type(meter).__name__}")
        return meter, float(took)

    def _worker(self) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] | None = getattr(self._local, "proc", None)
        if proc is not None and proc.poll() is None:
            return proc
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            path for path in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if path
        )
        with self._lock:
            if self._closed:
                raise WorkerError("the workers are closing")
            proc = subprocess.Popen(
                [sys.executable, "-m", "p1_exporter.meter.sim_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
            self._procs.append(proc)
        self._local.proc = proc
        return proc

    @property
    def running(self) -> int:
        with self._lock:
            return sum(proc.poll() is None for proc in self._procs)

    def close(self) -> None:
        """Close every worker's input (each ends after the build in hand) and reap them in
        a daemon thread, so neither the caller's loop nor the process's exit waits (a worker
        whose parent is gone reads the end of its input and ends too)."""
        with self._lock:
            self._closed = True
            procs, self._procs = self._procs, []
        self.threads.shutdown(wait=False, cancel_futures=True)
        if procs:
            threading.Thread(
                target=_reap, args=(procs,), name="sim-worker-reap", daemon=True
            ).start()


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        _close_quietly(proc.stdin)
    deadline = time.monotonic() + WORKER_EXIT_TIMEOUT
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _close_quietly(proc.stdout)


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):  # a worker that died leaves a broken pipe behind
            stream.close()


class SimBuilder:
    """Builds the households of one exporter's ``sim://`` meters (see the module text)."""

    def __init__(self, *, processes: bool = True, thread_builds: int = THREAD_BUILDS) -> None:
        #: Whether a crowd may be built in worker processes (tests turn it off).
        self.processes = processes
        self.thread_builds = thread_builds
        #: Households built in worker processes so far (the rest were built in threads).
        self.built_in_processes = 0
        self._waiting = 0
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers: _Workers | None = None
        self._failed = False

    @property
    def workers(self) -> int:
        """Worker processes running now (0 when no crowd is being built)."""
        return 0 if self._workers is None else self._workers.running

    async def build(self, source: SimSource) -> None:
        """Build ``source``'s household unless it has one; the caller's loop keeps running."""
        if source.meter is not None:
            return
        loop = asyncio.get_running_loop()
        self._waiting += 1
        try:
            if self.processes and self._waiting > self.thread_builds and not self._failed:
                workers = self._start_workers()
                try:
                    meter, took = await loop.run_in_executor(
                        workers.threads, workers.build, source.options
                    )
                except (WorkerError, OSError, RuntimeError) as exc:
                    self._give_up_workers(exc)
                else:
                    source.adopt(meter, time.monotonic() - took)
                    self.built_in_processes += 1
                    return
            await loop.run_in_executor(self._thread_pool(), source.build)
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                self.close()

    def close(self) -> None:
        """End the worker processes (each finishes the build in hand); threads stay."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.close()

    def _thread_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=THREADS, thread_name_prefix="sim-build"
            )
        return self._threads

    def _start_workers(self) -> _Workers:
        if self._workers is None:
            self._workers = _Workers(os.cpu_count() or 1)
            log.info(
                "more than %d simulated households to build: %d worker processes help",
                self.thread_builds,
                self._workers.count,
            )
        return self._workers

    def _give_up_workers(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            log.warning(
                "building simulated households in worker processes failed (%s); "
                "building them in threads instead",
                exc,
            )
        self.close()


#: The builder the event-loop driver uses for every ``sim://`` meter of the process.
SIM_BUILDER = SimBuilder()
