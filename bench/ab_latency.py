"""``python -m bench.ab_latency``: publish -> committed latency with and without a plugin that
overruns its time limit on every call, alternated in ``--rounds`` back-to-back pairs at one rate.

The full run (``python -m bench``) measures both once, at half the maximum rate, where this
2-core machine is close to its knee and one-second bursts of the machine's own noise move the
p99 several-fold between identical runs. Alternating pairs at a rate below the knee separates
the plugin's cost from that noise. Each line: the run's percentiles and, per second of publish
time, the median/worst latency in ms (the first seconds of a run with the overrunning plugin
are the one-time stall while the breakers open; the 10 s warm-up keeps them out of the
percentiles).
"""

from __future__ import annotations

import argparse
import json

from sqlalchemy import create_engine, text

from bench import scenarios
from bench.harness import Bench, add_service_arguments, normalise_url


def timeline(database_url: str) -> str:
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT floor(extract(epoch FROM occurred_at - (SELECT min(occurred_at) FROM events))),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - occurred_at)),"
                " max(extract(epoch FROM completed_at - occurred_at)) FROM events GROUP BY 1 ORDER BY 1"
            )
        ).all()
    engine.dispose()
    return " ".join(f"{int(s)}:{p50 * 1000:.0f}/{worst * 1000:.0f}" for s, p50, worst in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab_latency", description=__doc__)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    bench = Bench(args.postgres, args.redis, concurrency=args.concurrency)
    try:
        for _ in range(args.rounds):
            for sleeper in (False, True):
                result = scenarios.latency(
                    bench, args.rate, args.seconds, 5, 1, "prefork", sleeper=sleeper, warmup=10.0
                )
                label = "5 plugins + 1 overrunning" if sleeper else "5 plugins"
                figures = {k: round(v, 1) for k, v in result.items()}
                print(f"{label}: {json.dumps(figures)}")
                print(f"  per second: {timeline(bench.database_url)}", flush=True)
    finally:
        bench.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
