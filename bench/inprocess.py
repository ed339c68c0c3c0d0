"""``python -m bench.inprocess``: the host's event processor driven in this process, without a
broker or Celery, batch by batch: per batch size, the wall time of a batch, and the CPU per event
of the host (this process) and of the plugins' sandboxes (its child processes). The figure to
look at when changing the hot path between the pool process and its sandboxes; ``--profile``
prints where the host's CPU went (cProfile on CPU time).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

from bench import scenarios
from bench.harness import Bench, add_service_arguments, cpu_seconds, descendants
from services_ai_plugins.pipeline.processor import Incoming


def children_cpu() -> float:
    """CPU seconds of this process's descendants so far (the sandboxes)."""
    return sum(cpu_seconds(pid) for pid in descendants(os.getpid()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--sizes", default="1,5,20,50", help="batch sizes, comma-separated")
    parser.add_argument("--batches", type=int, default=200, help="batches per size")
    parser.add_argument("--plugins", type=int, default=5)
    parser.add_argument("--isolation", choices=["process", "inline"], default="process")
    parser.add_argument("--profile", action="store_true")
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    bench = Bench(args.postgres, args.redis)
    bench.isolation = args.isolation
    host = bench.reset()
    scenarios.install_plugins(bench, host, args.plugins)
    processor = host.processor
    made = 0

    def batch(n: int) -> list[Incoming]:
        nonlocal made
        out = [Incoming({**scenarios._lead(made + k), "event_id": f"in-{made + k}"}) for k in range(n)]
        made += n
        return out

    try:
        for _ in range(20):  # sandboxes started, caches warm
            processor.process(batch(10))
        print(f"{args.plugins} plugins, {args.isolation}; per batch size:")
        for n in [int(s) for s in args.sizes.split(",")]:
            batches = [batch(n) for _ in range(args.batches)]
            profile = cProfile.Profile(time.process_time) if args.profile else None
            wall, cpu, kids = time.perf_counter(), time.process_time(), children_cpu()
            if profile:
                profile.enable()
            for b in batches:
                processor.process(b)
            if profile:
                profile.disable()
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            kids = children_cpu() - kids
            events = args.batches * n
            print(
                f"  {n:>4} events: {wall / args.batches * 1000:6.2f} ms a batch;"
                f" CPU per event: host {cpu / events * 1e6:5.0f} us,"
                f" sandboxes {kids / events * 1e6:5.0f} us",
                flush=True,
            )
            if profile:
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    finally:
        host.close()
        bench.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
