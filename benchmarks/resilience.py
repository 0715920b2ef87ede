"""What the resilience decorators cost on the success path, against the undecorated call.

Run: python benchmarks/resilience.py [--backend asyncio|trio] [--quick]

Each figure is the best of several rounds of many calls, measured in one run, with the bare call
measured in the same rounds; the overhead is decorated minus bare, per call. If tenacity,
stamina, pybreaker or purgatory happen to be installed, they are measured too (none is needed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from cadence import circuit_breaker, fallback, retry, timeout


def bare_sync(x: int) -> int:
    return x


async def bare_async(x: int) -> int:
    return x


def best_sync(fn: Callable[[int], Any], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for i in range(calls):
            fn(i)
        best = min(best, (time.perf_counter_ns() - start) / calls / 1000)
    return best


async def best_async(fn: Callable[[int], Awaitable[Any]], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for i in range(calls):
            await fn(i)
        best = min(best, (time.perf_counter_ns() - start) / calls / 1000)
    return best


def sync_cases() -> dict[str, Callable[[int], Any]]:
    cases: dict[str, Callable[[int], Any]] = {
        "retry": retry(max_attempts=3)(bare_sync),
        "circuit_breaker (closed)": circuit_breaker()(bare_sync),
        "fallback": fallback(0)(bare_sync),
    }
    try:
        import tenacity  # noqa: PLC0415

        cases["tenacity.retry"] = tenacity.retry(stop=tenacity.stop_after_attempt(3))(bare_sync)
    except ImportError:
        pass
    try:
        import stamina  # noqa: PLC0415

        cases["stamina.retry"] = stamina.retry(on=Exception, attempts=3)(bare_sync)
    except ImportError:
        pass
    try:
        import pybreaker  # noqa: PLC0415

        cases["pybreaker (closed)"] = pybreaker.CircuitBreaker()(bare_sync)
    except ImportError:
        pass
    return cases


def async_cases() -> dict[str, Callable[[int], Awaitable[Any]]]:
    return {
        "retry": retry(max_attempts=3)(bare_async),
        "circuit_breaker (closed)": circuit_breaker()(bare_async),
        "fallback": fallback(0)(bare_async),
        "timeout": timeout(5.0)(bare_async),
    }


def report(title: str, bare: float, measured: dict[str, float]) -> None:
    print(f"\n{title}: bare call {bare:.3f} us")
    print(f"  {'decorator':<28}{'per call':>12}{'overhead':>12}{'ratio':>9}")
    for name, cost in measured.items():
        print(f"  {name:<28}{cost:>10.3f}us{cost - bare:>10.3f}us{cost / bare:>8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--quick", action="store_true", help="fewer calls, rougher figures")
    args = parser.parse_args()
    calls, rounds = (20_000, 3) if args.quick else (200_000, 7)
    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cpus, backend {args.backend}; best of {rounds} rounds of {calls} calls"
    )

    sync = sync_cases()
    bare = best_sync(bare_sync, calls, rounds)
    measured = {name: best_sync(fn, calls, rounds) for name, fn in sync.items()}
    report("sync functions", bare, measured)

    async def run_async() -> None:
        cases = async_cases()
        bare = await best_async(bare_async, calls, rounds)
        measured = {name: await best_async(fn, calls, rounds) for name, fn in cases.items()}
        report(f"async functions on {args.backend}", bare, measured)

    anyio.run(run_async, backend=args.backend)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
