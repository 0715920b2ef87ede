"""What the cadence_mypy plugin costs mypy: wall and CPU time on a generated application.

    .venv/bin/python benchmarks/mypy_plugin.py [--modules 200] [--reps 5] [--quick]
                                              [--no-parallel] [--profile] [--keep DIR]

Method. The script writes, in a temporary directory, a package `app` of `--modules` modules
that use cadence the way a service does: each holds four dataclass contexts (one an
`ImmutableContext`, one a subclass context), sync and async beats under `@beat` and stacks of
`retry`, `timeout`, `circuit_breaker` and `fallback`, cadences built with `then`, `sync`,
`split` and `child`, `with_field`/`with_fields` calls, a little ordinary code, and imports of
two earlier modules (always the one before, so the import graph is connected) whose beats,
contexts and cadences it uses. Two mypy configurations differ only in `plugins = cadence_mypy`;
both are `strict = True`. mypy runs as a subprocess (`python -m mypy`, so the figures are what a
user waits for, interpreter start included):

- cold: a fresh `--cache-dir` (typeshed, anyio and cadence are checked too);
- warm: a second run on the cache the cold run left, nothing changed.

Repetitions are interleaved (cold and warm of one configuration, then of the other, the order
alternating each round), after one untimed run of each to warm the OS's file cache. The tables
show the best (minimum) and the median of the rounds, in wall time and in CPU time (user and
system time of mypy and its workers). Wall time is what a user waits for; CPU time barely moves
when other processes compete for the machine, so on a busy machine trust its overhead more. The
overhead is plugin over plain. With two or more CPUs the same is measured with mypy's parallel
mode, `-n 2`, unless `--no-parallel`; a warm run slower than half its cold run (mypy re-checked
instead of reading its cache) is listed. `--profile` then times a third configuration, a plugin
with no hooks, which splits the overhead into what mypy pays for having any plugin (hook
look-ups on a Python class) and what cadence's hooks cost, and last runs mypy once more, cold,
in this process under cProfile with the plugin, printing what each of the plugin's functions
cost.

The modules are almost all cadence code, so the overhead is an upper bound for a real
application, whose other code the plugin only glances at. A run with the defaults (200 modules,
5 rounds) takes about 2 minutes on two CPUs, 4 with `--profile`; `--quick` (60 modules, 2
rounds) under a minute. The script only prints; it checks nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType

resource: ModuleType | None
try:
    import resource
except ImportError:  # Windows has no resource module: CPU times read 0
    resource = None

PLAIN = "plain"
PLUGIN = "plugin"
EMPTY = "empty"  # a plugin with no hooks: what having any plugin costs (--profile only)
CONFIGS = {
    PLAIN: "[mypy]\nstrict = True\n",
    PLUGIN: "[mypy]\nstrict = True\nplugins = cadence_mypy\n",
    EMPTY: "[mypy]\nstrict = True\nplugins = empty_plugin.py\n",
}

# ---------------------------------------------------------------------------- the application

MODULE = '''\
"""Generated service module {i}: contexts, beats and the cadences over them."""

from __future__ import annotations

from dataclasses import dataclass, field

from cadence import (
    Cadence,
    Context,
    ImmutableContext,
    beat,
    circuit_breaker,
    fallback,
    last_write_wins,
    retry,
    smart_merge,
    timeout,
)
{imports}

@dataclass
class Order{i}(Context):
    order_id: str = ""
    items: list[str] = field(default_factory=list[str])
    total: float = 0.0
    status: str = "pending"
    attempts: int = 0
    tags: dict[str, str] = field(default_factory=dict[str, str])


@dataclass
class Report{i}(Order{i}):
    lines: list[str] = field(default_factory=list[str])


@dataclass
class Payment{i}(Context):
    amount: float = 0.0
    charged: bool = False
    reference: str = ""


@dataclass(frozen=True)
class Settings{i}(ImmutableContext):
    region: str = "eu"
    limit: float = 100.0
    retries: int = 3


class Store{i}:
    """Ordinary code beside the cadences."""

    def __init__(self) -> None:
        self._prices: dict[str, float] = {{}}
        self._seen: set[str] = set()

    def price(self, item: str) -> float:
        self._seen.add(item)
        return self._prices.get(item, {price})

    def put(self, item: str, price: float) -> None:
        self._prices[item] = max(price, 0.0)

    def report(self) -> list[tuple[str, float]]:
        return sorted(self._prices.items(), key=lambda pair: pair[1])


STORE = Store{i}()


def audit(ctx: Context) -> None:
    """A beat for any context; modules that import this one use it."""
    del ctx


@beat
async def fetch_items(ctx: Order{i}) -> None:
    ctx.items.extend(f"{{ctx.order_id}}-{{n}}" for n in range({n_items}))


@retry(max_attempts=3, delay=0.1, backoff=2.0)
@timeout(seconds=5.0)
@beat
async def price_items(ctx: Order{i}) -> None:
    ctx.total = sum(STORE.price(item) for item in ctx.items)


@circuit_breaker(failure_threshold=5, recovery_timeout=30.0)
@beat(name="add_tax", blocking=False)
def add_tax(ctx: Order{i}) -> None:
    ctx.total *= 1.2


@fallback(default={{"status": "unknown", "attempts": 0}})
@beat
async def load_status(ctx: Order{i}) -> None:
    ctx.status = "loaded"
    ctx.attempts += 1


@beat(blocking=False)
def mark_big(ctx: Order{i}) -> None:
    ctx.tags["size"] = "big"


@beat(blocking=False)
def mark_small(ctx: Order{i}) -> None:
    ctx.tags["size"] = "small"


@fallback("none", field="reference")
@retry(max_attempts=2)
@beat
def charge(ctx: Payment{i}) -> None:
    ctx.charged = ctx.amount > 0
    ctx.reference = f"ref-{{ctx.amount:.2f}}"


def is_big(ctx: Order{i}) -> bool:
    return ctx.total > 100.0


async def is_tagged(ctx: Order{i}) -> bool:
    return bool(ctx.tags)


def payment_for(parent: Order{i}) -> Payment{i}:
    return Payment{i}(amount=parent.total)


def merge_payment(parent: Order{i}, child: Payment{i}) -> None:
    parent.status = "paid" if child.charged else parent.status


def tune(ctx: Settings{i}) -> Settings{i}:
    return ctx.with_field("retries", ctx.retries + 1).with_field("region", "us")


async def widen(ctx: Settings{i}) -> Settings{i}:
    return ctx.with_fields(limit=ctx.limit * 2, region="global")


def summarize(ctx: Report{i}) -> None:
    ctx.lines.append(f"{{ctx.order_id}}: {{ctx.status}} {{ctx.total:.2f}}")

{dep_code}
payment = Cadence("payment{i}", Payment{i}()).then("charge", charge)
settings = Cadence("settings{i}", Settings{i}()).then("tune", tune).then("widen", widen)

checkout = (
    Cadence("checkout{i}", Order{i}(order_id="o{i}"))
    .then("fetch", fetch_items)
    .sync("price", [price_items, add_tax, {audit_a}], merge=last_write_wins)
    .split("route", is_big, [mark_big, load_status], mark_small)
    .split("tagged", is_tagged, {audit_b})
    .child("pay", payment, merge_payment, context=payment_for)
    {dep_child}
    .then("status", load_status)
)

reports = (
    Cadence("reports{i}", Report{i}())
    .then("fetch", fetch_items)
    .sync("enrich", [price_items, load_status], merge=smart_merge)
    .then("summarize", summarize)
)
'''

DEP_CODE = """
def merge_upstream(parent: Order{i}, child: {a}.Payment{ia}) -> None:
    parent.attempts += int(child.charged)


def bump_upstream(ctx: {b}.Settings{ib}) -> {b}.Settings{ib}:
    return ctx.with_field("limit", ctx.limit + 1.0)

"""


EMPTY_PLUGIN = """\
from mypy.plugin import Plugin


class EmptyPlugin(Plugin):
    pass


def plugin(version: str) -> type[Plugin]:
    return EmptyPlugin
"""


def module_source(i: int, deps: tuple[int, int] | None, rng: random.Random) -> str:
    """Return the source of module `i`, using modules `deps` (None for the first module)."""
    if deps is None:
        imports, dep_code, dep_child = "", "", ""
        audit_a = audit_b = "audit"
    else:
        a, b = deps
        imports = f"\nfrom app import m{a:04d} as dep_a\nfrom app import m{b:04d} as dep_b\n"
        dep_code = DEP_CODE.format(i=i, a="dep_a", ia=a, b="dep_b", ib=b)
        dep_child = '.child("upstream", dep_a.payment, merge_upstream)'
        audit_a, audit_b = "dep_a.audit", "dep_b.audit"
    source = MODULE.format(
        i=i,
        imports=imports,
        dep_code=dep_code,
        dep_child=dep_child,
        audit_a=audit_a,
        audit_b=audit_b,
        price=f"{rng.uniform(1, 9):.2f}",
        n_items=rng.randint(1, 5),
    )
    # An empty placeholder leaves a line of spaces: drop it.
    return "\n".join(line for line in source.splitlines() if line.strip() or not line) + "\n"


def write_application(root: Path, modules: int) -> int:
    """Write package `app` of `modules` modules under `root`; return its number of lines."""
    rng = random.Random(20240601)
    package = root / "app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A generated application."""\n', encoding="utf-8")
    lines = 1
    for i in range(modules):
        deps = None
        if i > 0:
            other = rng.randrange(i - 1) if i > 1 else 0
            deps = (i - 1, other)
        source = module_source(i, deps, rng)
        (package / f"m{i:04d}.py").write_text(source, encoding="utf-8")
        lines += source.count("\n")
    for name, text in CONFIGS.items():
        (root / f"mypy-{name}.ini").write_text(text, encoding="utf-8")
    (root / "empty_plugin.py").write_text(EMPTY_PLUGIN, encoding="utf-8")
    return lines


# ---------------------------------------------------------------------------- measuring


@dataclass
class Series:
    """Runs of one configuration in one mode (cold or warm): wall and CPU seconds."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system, mypy and its workers

    def best(self, what: str = "wall") -> float:
        return min(getattr(self, what))

    def median(self, what: str = "wall") -> float:
        return statistics.median(getattr(self, what))


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children (0 where unknown)."""
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Bench:
    root: Path
    workers: int | None
    problems: list[str] = field(default_factory=list)
    rechecks: list[str] = field(default_factory=list)  # warm runs that did not use the cache
    cache_count: int = 0

    def command(self, config: str, cache: Path) -> list[str]:
        command = [sys.executable, "-m", "mypy", "--config-file", f"mypy-{config}.ini"]
        command += ["--cache-dir", str(cache)]
        if self.workers is not None:
            command += ["-n", str(self.workers)]
        return [*command, "app"]

    def fresh_cache(self) -> Path:
        self.cache_count += 1
        return self.root / "caches" / f"n{self.workers or 0}-{self.cache_count:03d}"

    def mypy(self, config: str, cache: Path) -> tuple[float, float] | None:
        """Run mypy once; return its wall and CPU time, or None (noting why) if it failed."""
        cpu = children_cpu()
        start = time.perf_counter()
        result = subprocess.run(  # noqa: S603 # this interpreter's mypy, on files written here
            self.command(config, cache),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        cpu = children_cpu() - cpu
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            problem = f"{config}: exit {result.returncode}: " + " | ".join(output[-5:])
            if problem not in self.problems:
                self.problems.append(problem)
            return None
        return elapsed, cpu

    def run(
        self, reps: int, configs: tuple[str, ...] = (PLAIN, PLUGIN)
    ) -> dict[tuple[str, str], Series]:
        """Measure cold and warm runs of `configs`, interleaved; `reps` rounds."""
        series = {(c, m): Series() for c in configs for m in ("cold", "warm")}
        for config in configs:  # untimed: the OS's file cache, mypy's imports
            cache = self.fresh_cache()
            failed = self.mypy(config, cache) is None
            shutil.rmtree(cache, ignore_errors=True)
            if failed:
                return series
        for rep in range(reps):
            order = configs if rep % 2 == 0 else configs[::-1]
            for config in order:
                cache = self.fresh_cache()
                cold = self.mypy(config, cache)
                warm = self.mypy(config, cache)
                shutil.rmtree(cache, ignore_errors=True)
                if cold is None or warm is None:
                    continue
                for mode, (wall, cpu) in (("cold", cold), ("warm", warm)):
                    series[config, mode].wall.append(wall)
                    series[config, mode].cpu.append(cpu)
                if warm[0] > cold[0] / 2:
                    self.rechecks.append(
                        f"{config}, round {rep + 1}: warm {warm[0]:.2f} s, cold {cold[0]:.2f} s"
                    )
            print(".", end="", flush=True)
        print()
        return series


def print_rows(series: dict[tuple[str, str], Series], configs: tuple[str, ...]) -> None:
    print(
        f"  {'mode':<6}{'config':<8}{'best s':>9}{'median s':>10}{'best cpu s':>12}"
        f"{'median cpu s':>14}{'runs':>6}"
    )
    for mode in ("cold", "warm"):
        for config in configs:
            s = series[config, mode]
            if not s.wall:
                print(f"  {mode:<6}{config:<8}{'n/a':>9}")
                continue
            print(
                f"  {mode:<6}{config:<8}{s.best():>9.2f}{s.median():>10.2f}"
                f"{s.best('cpu'):>12.2f}{s.median('cpu'):>14.2f}{len(s.wall):>6}"
            )


def overhead(plain: Series, other: Series, what: str) -> str:
    best = other.best(what) / plain.best(what) - 1
    median = other.median(what) / plain.median(what) - 1
    extra = (other.best(what) - plain.best(what)) * 1e3
    return f"{best:+.1%} best ({extra:+.0f} ms), {median:+.1%} median"


def print_table(title: str, series: dict[tuple[str, str], Series], rechecks: list[str]) -> None:
    print(f"\n{title}")
    print_rows(series, (PLAIN, PLUGIN))
    print("  plugin overhead (plugin / plain - 1), target at most +10%:")
    for mode in ("cold", "warm"):
        plain, plugin = series[PLAIN, mode], series[PLUGIN, mode]
        if not plain.wall or not plugin.wall:
            print(f"    {mode}: n/a")
            continue
        print(f"    {mode:<5} wall {overhead(plain, plugin, 'wall')}")
        print(f"    {'':<5} cpu  {overhead(plain, plugin, 'cpu')}")
    for recheck in rechecks:
        print(f"  a warm run took over half its cold run (mypy re-checked): {recheck}")


# ---------------------------------------------------------------------------- profiling


def split_overhead(root: Path, reps: int) -> None:
    """Time plain, an empty plugin and cadence_mypy: what any plugin costs, what the hooks do."""
    series = Bench(root, None).run(reps, (PLAIN, EMPTY, PLUGIN))
    print("\nsplit of the overhead: plain mypy, an empty plugin (no hooks), cadence_mypy")
    print_rows(series, (PLAIN, EMPTY, PLUGIN))
    for mode in ("cold", "warm"):
        plain, empty, plugin = (series[c, mode] for c in (PLAIN, EMPTY, PLUGIN))
        if not (plain.wall and empty.wall and plugin.wall):
            continue
        for what in ("wall", "cpu"):
            print(f"    {mode:<5} {what:<4} any plugin: {overhead(plain, empty, what)}")
            print(f"    {'':<5} {'':<4} the hooks:  {overhead(empty, plugin, what)}")


def profile_plugin(root: Path) -> None:
    """Run mypy (cold, with the plugin) in this process under cProfile; print the hooks' cost."""
    from mypy import api  # noqa: PLC0415 # only this mode needs mypy in-process

    cache = root / "caches" / "profile"
    args = ["--config-file", "mypy-plugin.ini", "--cache-dir", str(cache), "app"]
    cwd = Path.cwd()
    os.chdir(root)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    try:
        profiler.enable()
        _, _, status = api.run(args)
        profiler.disable()
    finally:
        os.chdir(cwd)
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler, stream=io.StringIO())
    raw = stats.stats  # pstats's table: {(file, line, function): (cc, nc, tt, ct, callers)}
    rows = []
    for (filename, _line, function), (_cc, calls, own, cumulative, _callers) in raw.items():
        if f"{os.sep}cadence_mypy{os.sep}" in filename:
            module = Path(filename).stem
            rows.append((cumulative, own, calls, f"{module}.{function}"))
    rows.sort(reverse=True)
    print(f"\nprofile: one cold run with the plugin under cProfile, exit {status}")
    print(f"  wall time under the profiler: {total:.2f} s (profiling slows Python code most)")
    print(f"  {'cadence_mypy function':<44}{'calls':>9}{'own ms':>9}{'cum ms':>9}{'% wall':>8}")
    for cumulative, own, calls, name in rows[:25]:
        print(
            f"  {name:<44}{calls:>9}{own * 1e3:>9.1f}{cumulative * 1e3:>9.1f}"
            f"{cumulative / total:>8.1%}"
        )
    own_total = sum(own for _, own, _, _ in rows)
    print(f"  all cadence_mypy functions, own time: {own_total * 1e3:.1f} ms")
    print(
        "  (own time excludes mypy functions the hooks call, such as is_subtype; the cum "
        "column includes them)"
    )


# ---------------------------------------------------------------------------- main


def machine_facts() -> str:
    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    import mypy.build  # noqa: PLC0415 # after the check that mypy is installed

    compiled = "interpreted" if mypy.build.__file__.endswith(".py") else "compiled with mypyc"
    cpu = "unknown cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory = "n/a"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text(encoding="utf-8").splitlines()[0].split()
        memory = f"{int(first[1]) / 2**20:.1f} GiB"
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}) | "
        f"{platform.platform()}\n{cpu} | {os.cpu_count()} cpus (load {load}) | memory {memory}\n"
        f"mypy {ver('mypy')} ({compiled}) | cadence-flow {ver('cadence-flow')} | "
        f"anyio {ver('anyio')} | typing-extensions {ver('typing-extensions')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, help="modules to generate (default 200, quick 60)")
    parser.add_argument("--reps", type=int, help="timed rounds (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="60 modules, 2 rounds: a smoke test")
    parser.add_argument("--no-parallel", action="store_true", help="skip the -n 2 measurement")
    parser.add_argument(
        "--profile", action="store_true", help="split the overhead and profile the hooks"
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="generate into DIR (new, or made here) and keep it"
    )
    args = parser.parse_args()
    modules = args.modules or (60 if args.quick else 200)
    reps = args.reps or (2 if args.quick else 5)

    for name in ("mypy", "cadence", "cadence_mypy"):
        if importlib.util.find_spec(name) is None:
            print(f"{name} is not importable from {sys.executable}; install the project with")
            print("  .venv/bin/python -m pip install -e . --group test")
            return
    print(machine_facts())
    sys.stdout.flush()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cadence-mypy-bench-") as temporary:
        root = args.keep or Path(temporary)
        if args.keep is not None and root.exists():
            if any(root.iterdir()) and not (root / "mypy-plain.ini").exists():
                print(f"{root} exists and is not a directory this script made; not touching it")
                return
            shutil.rmtree(root)
        lines = write_application(root, modules)
        print(
            f"application: {modules} modules, {lines} lines, in {root}; best and median of "
            f"{reps} interleaved rounds, in seconds per mypy run"
        )
        bench = Bench(root, None)
        print_table("sequential mypy", bench.run(reps), bench.rechecks)
        if not args.no_parallel and (os.cpu_count() or 1) >= 2:
            parallel = Bench(root, 2)
            print_table("mypy -n 2 (parallel workers)", parallel.run(reps), parallel.rechecks)
            bench.problems += [f"-n 2: {p}" for p in parallel.problems]
        for problem in bench.problems:
            print(f"\nmypy failed: {problem}")
        if args.profile:
            split_overhead(root, reps)
            profile_plugin(root)
    print(f"\n(took {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
