"""What one simulated household costs: building it, keeping it, and one telegram.

Run: ``.venv/bin/python benchmarks/bench_sim_model.py`` (``--landed PATH`` to print another
tree's figures beside ours, e.g. ``/work/main`` before a change lands).

For each tree, in a child process (so the trees' modules never mix): CPU milliseconds to
build a ``SimulatedMeter`` (late in a month, the dearest moment: the household integrates
the whole month so far and its Belgian month peak), memory per household after five
telegrams (tracemalloc), and CPU microseconds per ``telegram_at`` one second apart. A
thousand ``sim://`` meters in one exporter cost a thousand times the first two.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

_CHILD = r"""
import gc, json, sys, time, tracemalloc
from p1_exporter.sim.meter import SimulatedMeter

dialect, count, telegrams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = 1_735_000_000.0  # 24 December 2024: late in the month
began = time.process_time()
meters = [SimulatedMeter(dialect, seed=seed, start=start) for seed in range(count)]
build_ms = 1000 * (time.process_time() - began) / count
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
kept = [SimulatedMeter(dialect, seed=1000 + seed, start=start) for seed in range(count)]
for meter in kept:
    for second in range(5):
        meter.telegram_at(start + second)
gc.collect()
memory_kb = (tracemalloc.get_traced_memory()[0] - before) / count / 1024
tracemalloc.stop()
meter = meters[0]
began = time.process_time()
for second in range(1, telegrams + 1):
    meter.telegram_at(start + second)
telegram_us = 1e6 * (time.process_time() - began) / telegrams
print(json.dumps({"build_ms": build_ms, "memory_kb": memory_kb, "telegram_us": telegram_us}))
"""


def measure(tree: Path, dialect: str, count: int, telegrams: int) -> dict[str, float]:
    """The figures of the tree at ``tree``, from a child process importing only it."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(tree)!r})\n{_CHILD}",
            dialect,
            str(count),
            str(telegrams),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd="/",
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landed", type=Path, help="another tree to measure beside this one")
    parser.add_argument("--count", type=int, default=20, help="households built per tree")
    parser.add_argument("--telegrams", type=int, default=3000, help="telegrams timed")
    args = parser.parse_args()
    trees = {"this tree": HERE}
    if args.landed is not None:
        if not (args.landed / "p1_exporter").is_dir():
            parser.error(f"no p1_exporter tree at {args.landed}")
        trees[f"landed {args.landed}"] = args.landed
    print(f"{'version':28} {'dialect':8} {'build ms':>9} {'KB/meter':>9} {'us/telegram':>12}")
    for dialect in ("dsmr5", "belgian"):
        for name, tree in trees.items():
            figures = measure(tree, dialect, args.count, args.telegrams)
            print(
                f"{name:28} {dialect:8} {figures['build_ms']:9.1f} "
                f"{figures['memory_kb']:9.0f} {figures['telegram_us']:12.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
