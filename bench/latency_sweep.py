"""``python -m bench.latency_sweep``: publish -> committed latency at several steady rates, with
where the machine's CPU went at each (per event published) and how busy it was: where this
machine's knee is, and what moves it. One worker (``--concurrency`` pool processes), 5 plugins
sandboxed, the publisher in this process on the same cores (as in ``python -m bench``).
"""

from __future__ import annotations

import argparse

from bench import scenarios
from bench.harness import Bench, add_service_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_sweep", description=__doc__)
    parser.add_argument("--rates", default="400,1000,1500,2000", help="events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--plugins", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=2)
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    bench = Bench(args.postgres, args.redis, concurrency=args.concurrency)
    print("| rate (events/s) | p50 / p95 / p99 (ms) | machine busy | CPU per event (us) |")
    print("|---|---|---|---|")
    try:
        for rate in (float(r) for r in args.rates.split(",")):
            r = scenarios.latency(bench, rate, args.seconds, args.plugins, 1, "prefork")
            cpu = ", ".join(
                f"{k.removeprefix('cpu_us_')} {v:,.0f}" for k, v in r.items() if k.startswith("cpu_us_")
            )
            print(
                f"| {r['rate_per_s']:,.0f} | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f}"
                f" | {r['machine_busy']:.0%} | {cpu} |",
                flush=True,
            )
    finally:
        bench.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
