"""What cadence costs over hand-written code: per step, per run and per parallel branch.

    .venv/bin/python benchmarks/overhead.py [--backend asyncio|trio] [--quick]

Method. Everything runs inside one event loop (one `anyio.run`). A case is a batch of `n` calls
timed with `time.perf_counter_ns`, `n` calibrated so one batch takes about `--batch-ms`. The
cases of a group are measured round by round, in a rotating order (baseline and cadence
interleaved, so drift hits both alike), `--rounds` times each. The tables show the best
(minimum) round, the figure least disturbed by the machine, and the median for spread; the
overheads, ratios and target checks use the best. The garbage collector is off during a batch
(as in `timeit`) unless `--gc` is given. Every beat is trivial (`ctx.x += 1`), so the figures are
the framework's own cost. Thread-hop figures (scenario 5, plain `def` beats) depend on OS
scheduling and vary far more than the rest; they are there for reference. A full run takes about
15 s per backend, `--quick` about 2 s. The script only prints; it checks nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

import cadence
from cadence import Cadence, CadenceHooks, Context, beat

# ---------------------------------------------------------------------------- contexts and beats


@dataclass
class Ctx(Context):
    x: int = 0


@dataclass
class Fan(Context):
    """Five scalar fields for the fan-out: beats w0..w4 write f0..f4, beats r5..r9 write nothing."""

    f0: int = 0
    f1: int = 0
    f2: int = 0
    f3: int = 0
    f4: int = 0


@dataclass
class FanBig(Fan):
    """The fan-out's five scalars plus two large fields that no beat touches."""

    items: list[int] = field(default_factory=lambda: list(range(100_000)))
    table: dict[str, int] = field(default_factory=lambda: {f"k{i}": i for i in range(1_000)})


async def step(ctx: Ctx) -> None:
    ctx.x += 1


@beat(blocking=False)
def loop_step(ctx: Ctx) -> None:
    ctx.x += 1


def thread_step(ctx: Ctx) -> None:
    ctx.x += 1


async def w0(ctx: Fan) -> None:
    ctx.f0 += 1


async def w1(ctx: Fan) -> None:
    ctx.f1 += 1


async def w2(ctx: Fan) -> None:
    ctx.f2 += 1


async def w3(ctx: Fan) -> None:
    ctx.f3 += 1


async def w4(ctx: Fan) -> None:
    ctx.f4 += 1


async def r5(ctx: Fan) -> None:
    pass


async def r6(ctx: Fan) -> None:
    pass


async def r7(ctx: Fan) -> None:
    pass


async def r8(ctx: Fan) -> None:
    pass


async def r9(ctx: Fan) -> None:
    pass


FAN_BEATS = (w0, w1, w2, w3, w4, r5, r6, r7, r8, r9)

# ---------------------------------------------------------------------------- hand-written code


async def hand_then(ctx: Ctx) -> None:
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)
    await step(ctx)


async def hand_def(ctx: Ctx) -> None:
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)
    loop_step(ctx)


async def hand_thread(ctx: Ctx) -> None:
    run_sync = anyio.to_thread.run_sync
    for _ in range(10):
        await run_sync(thread_step, ctx)


async def hand_gather(ctx: Fan) -> None:
    await asyncio.gather(*[b(ctx) for b in FAN_BEATS])


async def hand_task_group(ctx: Fan) -> None:
    async with anyio.create_task_group() as group:
        for b in FAN_BEATS:
            group.start_soon(b, ctx)


_TEMPLATE = Ctx()


async def hand_copy_then_beat() -> None:
    await step(copy.deepcopy(_TEMPLATE))


# ---------------------------------------------------------------------------- cadences


class NoopHooks(CadenceHooks[Ctx]):
    """A hooks subclass that overrides nothing: every method is the inherited no-op."""


def noop_reporter(beat_name: str, elapsed: float, context: Ctx) -> None:
    pass


def then_cadence(fn: Callable[[Ctx], Any], steps: int = 10) -> Cadence[Ctx]:
    c = Cadence("bench", Ctx())
    for i in range(steps):
        c = c.then(f"s{i}", fn)
    return c


THEN10 = then_cadence(step)
THEN10_HOOKS = THEN10.with_hooks(NoopHooks())
THEN10_REPORTER = THEN10.with_reporter(noop_reporter)
THEN10_DEF = then_cadence(loop_step)
THEN10_THREAD = then_cadence(thread_step)
ONE = then_cadence(step, steps=1)
FAN10 = Cadence("fan", Fan()).sync("fan", FAN_BEATS)
FAN10_BIG = Cadence("fan_big", FanBig()).sync("fan", FAN_BEATS)

# ---------------------------------------------------------------------------- measuring


@dataclass
class Case:
    """One timed thing: `fn(make())` (or `fn()` when `make` is None), `units` units per call."""

    key: str
    label: str
    units: int
    fn: Callable[..., Awaitable[object]]
    make: Callable[[], object] | None
    n: int = 1
    samples: list[float] = field(default_factory=list)  # microseconds per unit, one per round

    async def batch(self, n: int) -> int:
        """Run `n` calls and return the elapsed nanoseconds (argument built outside the timer)."""
        fn = self.fn
        if self.make is None:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                await fn()
            return time.perf_counter_ns() - t0
        arg = self.make()
        t0 = time.perf_counter_ns()
        for _ in range(n):
            await fn(arg)
        return time.perf_counter_ns() - t0

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


async def measure(cases: list[Case], rounds: int, batch_ns: int, keep_gc: bool) -> None:
    """Calibrate every case, then time them all `rounds` times, interleaved."""
    for case in cases:  # warm-up and calibration: grow n until a batch is a tenth of the target
        n = 1
        while True:
            elapsed = await case.batch(n)
            if elapsed >= batch_ns // 10 or n >= 1 << 22:
                break
            n *= 2
        case.n = max(1, round(n * batch_ns / max(elapsed, 1)))
    for r in range(rounds):
        shift = r % len(cases)
        for case in cases[shift:] + cases[:shift]:
            gc.collect()
            if not keep_gc:
                gc.disable()
            try:
                elapsed = await case.batch(case.n)
            finally:
                gc.enable()
            case.samples.append(elapsed / case.n / case.units / 1e3)


def build_groups(backend: str) -> list[list[Case]]:
    """The measurement groups; the cases of one group are interleaved with each other."""
    then_group = [
        Case("hand_then", "hand-written: 10 awaits", 10, hand_then, Ctx),
        Case("then", "cadence: 10 x .then", 10, THEN10.run, Ctx),
        Case("then_hooks", "cadence + no-op CadenceHooks subclass", 10, THEN10_HOOKS.run, Ctx),
        Case("then_reporter", "cadence + no-op reporter", 10, THEN10_REPORTER.run, Ctx),
    ]
    run_group = [
        Case("beat", "hand-written: await beat(ctx)", 1, step, Ctx),
        Case("run_ctx", "cadence: await c.run(ctx)", 1, ONE.run, Ctx),
        Case("run_fresh", "cadence: await c.run()  (fresh template copy)", 1, ONE.run, None),
        Case(
            "copy_beat",
            "hand-written: await beat(deepcopy(template))",
            1,
            hand_copy_then_beat,
            None,
        ),
    ]
    sync_group = [
        Case("task_group", "hand-written: anyio task group, shared ctx", 10, hand_task_group, Fan),
        Case("sync", "cadence: .sync of 10 (copy + merge)", 10, FAN10.run, Fan),
        Case("sync_big", "cadence: same + untouched 100k list, 1k dict", 10, FAN10_BIG.run, FanBig),
    ]
    if backend == "asyncio":
        sync_group.insert(0, Case("gather", "hand-written: asyncio.gather", 10, hand_gather, Fan))
    def_group = [
        Case("hand_def", "hand-written: 10 plain calls", 10, hand_def, Ctx),
        Case("then_def", "cadence: 10 x .then, @beat(blocking=False)", 10, THEN10_DEF.run, Ctx),
        Case("hand_thread", "hand-written: 10 x to_thread.run_sync", 10, hand_thread, Ctx),
        Case("then_thread", "cadence: 10 x .then, plain def (thread)", 10, THEN10_THREAD.run, Ctx),
    ]
    return [then_group, run_group, sync_group, def_group]


# ---------------------------------------------------------------------------- reporting

# (title, unit, [(case key, baseline key or None)])
SECTIONS: list[tuple[str, str, list[tuple[str, str | None]]]] = [
    (
        "1. then: 10 sequential async beats, no hooks",
        "per step",
        [("hand_then", None), ("then", "hand_then")],
    ),
    (
        "2. whole run of a one-beat cadence",
        "per run",
        [("beat", None), ("run_ctx", "beat"), ("run_fresh", "beat"), ("copy_beat", "beat")],
    ),
    (
        "3. sync: fan-out of 10 over 5 scalar fields (beats 0-4 write field i, 5-9 write nothing)",
        "per branch",
        [("gather", None), ("task_group", None), ("sync", "task_group"),
         ("sync_big", "sync")],
    ),
    (
        "4. hooks on the 10-step cadence (hook rows vs the cadence without hooks)",
        "per step",
        [("hand_then", None), ("then", "hand_then"), ("then_hooks", "then"),
         ("then_reporter", "then")],
    ),
    (
        "5. non-async beats: 10 sequential def beats",
        "per step",
        [("hand_def", None), ("then_def", "hand_def"), ("hand_thread", None),
         ("then_thread", "hand_thread")],
    ),
]  # fmt: skip


def machine_facts(backend: str) -> str:
    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    impl = platform.python_implementation()
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    return (
        f"python {platform.python_version()} ({impl}) | {platform.platform()} | "
        f"{os.cpu_count()} cpus (load {load}) | backend {backend} | anyio {ver('anyio')} | "
        f"trio {ver('trio')} | cadence {ver('cadence-flow')} from {Path(cadence.__file__).parent}"
    )


def print_tables(cases: dict[str, Case], backend: str) -> None:
    head = f"  {'case':<52}{'best us':>10}{'median us':>11}{'+us vs base':>13}{'ratio':>8}"
    for title, unit, rows in SECTIONS:
        print(f"\n{title}  [{unit}]")
        print(head)
        for key, base_key in rows:
            case = cases.get(key)
            if case is None:
                print(f"  {'(asyncio.gather: asyncio only, skipped on ' + backend + ')':<52}")
                continue
            extra = f"{'-':>13}{'-':>8}"
            if base_key is not None:
                base = cases[base_key]
                extra = f"{case.best - base.best:>+13.3f}{case.best / base.best:>7.2f}x"
            print(f"  {case.label:<52}{case.best:>10.3f}{case.median:>11.3f}{extra}")
        if title.startswith("3.") and "gather" in cases:
            sync, gather = cases["sync"], cases["gather"]
            print(
                f"  cadence .sync vs asyncio.gather: {sync.best - gather.best:+.3f} us per branch "
                f"({sync.best / gather.best:.2f}x)"
            )

    then_over = cases["then"].best - cases["hand_then"].best
    run_over = cases["run_ctx"].best - cases["beat"].best
    branch = cases["sync"].best
    big_ratio = cases["sync_big"].best / branch
    print("\ntargets (from the best rounds):")
    for what, value, limit, unit in [
        ("then: overhead per beat over hand-written", then_over, 0.5, "us"),
        ("run: overhead per c.run(ctx) over await beat(ctx)", run_over, 5.0, "us"),
        ("sync: cost per branch, copy and merge included", branch, 10.0, "us"),
        ("sync with large untouched fields / without", big_ratio, 2.0, "x "),
    ]:
        verdict = "met" if value <= limit else "MISSED"
        print(f"  {what:<52}{value:>8.3f} {unit}  (target <= {limit:g} {unit.strip()})  {verdict}")


# ---------------------------------------------------------------------------- main


async def bench(backend: str, rounds: int, batch_ns: int, keep_gc: bool) -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for group in build_groups(backend):
        await measure(group, rounds, batch_ns, keep_gc)
        cases.update((c.key, c) for c in group)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--quick", action="store_true", help="5 rounds of ~10 ms batches: a smoke test"
    )
    parser.add_argument("--rounds", type=int, help="rounds per case (default 9, quick 5)")
    parser.add_argument("--batch-ms", type=float, help="time per batch (default 100, quick 10)")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 9)
    batch_ms = args.batch_ms or (10.0 if args.quick else 100.0)

    print(machine_facts(args.backend))
    print(
        f"best and median of {rounds} interleaved rounds, batches of ~{batch_ms:g} ms, "
        f"gc {'on' if args.gc else 'off'} while timing; microseconds per unit"
    )
    sys.stdout.flush()
    start = time.perf_counter()
    cases = anyio.run(
        bench, args.backend, rounds, int(batch_ms * 1e6), args.gc, backend=args.backend
    )
    print_tables(cases, args.backend)
    print(f"\n(took {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
