"""How compile time grows with program size (run by hand; not part of CI).

    .venv/bin/python bench/compile_scaling.py                 # 1k, 10k, 100k ops
    .venv/bin/python bench/compile_scaling.py --sizes 1000 10000 --profile 10000

Two families of programs, each with about N op nodes in the graph:

* ``flat``:   N/3 statements ``h = Dense(8)(h)``, ``g = relu(h)``, ``h = h + g``; the
  source grows with N, so this measures the parser and the elaborator together.
* ``repeat``: one block of 30 ops applied ``repeat N/30`` times; the source stays a few
  lines long, so this measures elaboration and the graph checks alone.

For each program: parse time (text -> syntax tree), elaborate + check time (the rest of
``graphdsl.compile``), total, microseconds per op, all in CPU seconds of this process
(steadier than wall-clock time on a shared machine; wall time of the whole compile is
shown too), best of 3 runs for programs under 20k ops. Growth is called linear when the
time per op of the largest program is within 2x of the smallest. Where TensorFlow/Keras is
importable, building the same functional graph with Keras is timed beside it (up to
--keras-max ops: Keras needs about 6-9 s per 1k layers).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import os
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import graphdsl
from graphdsl.diagnostics import DiagnosticSink
from graphdsl.syntax.parser import parse

WIDTH = 8
BLOCK_UNITS = 10  # units of 3 ops in the repeated block: 30 ops per copy


def flat_program(ops: int) -> str:
    units = max(ops // 3, 1)
    lines = ["model Flat {", f"    input x : float32[B, {WIDTH}]", "    h = x"]
    for _ in range(units):
        lines += [f"    h = Dense({WIDTH})(h)", "    g = relu(h)", "    h = h + g"]
    lines += ["    inference output y = h", "}"]
    return "\n".join(lines) + "\n"


def repeat_program(ops: int) -> str:
    copies = max(ops // (3 * BLOCK_UNITS), 1)
    body = []
    for _ in range(BLOCK_UNITS):
        body += ["    h = Dense(d)(h)", "    g = relu(h)", "    h = h + g"]
    return "\n".join([
        "block Unit(d: int) {",
        "    input x : float32[B, d]",
        "    h = x",
        *body,
        "    output h",
        "}",
        "model Repeated {",
        f"    input x : float32[B, {WIDTH}]",
        f"    inference output y = repeat {copies} Unit({WIDTH})(x)",
        "}",
    ]) + "\n"


FAMILIES: dict[str, Callable[[int], str]] = {"flat": flat_program, "repeat": repeat_program}


def best_of(runs: int, action: Callable[[], Any]) -> tuple[float, float, Any]:
    """(best CPU seconds, best wall seconds, result). CPU time is what the table shows: on a
    shared machine it is far steadier than wall-clock time."""
    best_cpu = best_wall = math.inf
    result = None
    for _ in range(runs):
        cpu, wall = time.process_time(), time.perf_counter()
        result = action()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall, result


def time_graphdsl(source: str, runs: int) -> dict[str, float]:
    def parse_only() -> Any:
        # as graphdsl.compile runs it: with the cyclic collector paused
        sink = DiagnosticSink()
        collecting = gc.isenabled()
        gc.disable()
        try:
            module = parse(source, "bench.gdl", sink)
        finally:
            if collecting:
                gc.enable()
        if module is None:
            raise SystemExit(f"the generated program does not parse: {sink.sorted()[:1]}")
        return module

    parse_s, _, _ = best_of(runs, parse_only)
    total_s, wall_s, program = best_of(runs, lambda: graphdsl.compile(source, file="bench.gdl"))
    (model,) = program.models.values()
    ops = sum(1 for _ in model.ops())
    return {"ops": ops, "parse": parse_s, "check": max(total_s - parse_s, 0.0),
            "total": total_s, "wall": wall_s}


def keras_builder() -> Callable[[str, int], float] | None:
    """Time building the same functional graph in Keras, if TensorFlow is importable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return None

    def build(family: str, ops: int) -> float:
        from keras import Input, Model, layers

        # Keras walks the functional graph recursively (keras/src/ops/function.py).
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * ops + 1000))
        start = time.perf_counter()
        x = Input(shape=(WIDTH,))
        h = x
        if family == "flat":
            units = max(ops // 3, 1)
        else:
            units = max(ops // (3 * BLOCK_UNITS), 1) * BLOCK_UNITS
        for _ in range(units):
            h = layers.Dense(WIDTH)(h)
            g = layers.Activation("relu")(h)
            h = layers.Add()([h, g])
        Model(x, h)
        return time.perf_counter() - start

    return build


def keras_column(build: Callable[[str, int], float], family: str, ops: int,
                 limit: int) -> str:
    if ops > limit:
        return "skipped"
    try:
        return f"{build(family, ops):.3f}"
    except RecursionError:
        return "RecursionError"


def growth(rows: list[dict[str, float]]) -> str:
    if len(rows) < 2:
        return "n/a (one size)"
    first, last = rows[0], rows[-1]
    exponent = math.log(last["total"] / first["total"]) / math.log(last["ops"] / first["ops"])
    ratio = (last["total"] / last["ops"]) / (first["total"] / first["ops"])
    verdict = "linear" if ratio <= 2.0 else "SUPERLINEAR"
    return (f"{verdict}: time ~ ops^{exponent:.2f}; time per op x{ratio:.2f} from "
            f"{first['ops']:,} to {last['ops']:,} ops")


def profile(source: str, top: int = 20) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    graphdsl.compile(source, file="bench.gdl")
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    cli.add_argument("--families", nargs="+", choices=sorted(FAMILIES),
                     default=["flat", "repeat"])
    cli.add_argument("--keras-max", type=int, default=10_000, metavar="OPS",
                     help="time Keras only up to this size (it builds ~1k ops per 10 s)")
    cli.add_argument("--profile", type=int, metavar="OPS",
                     help="also print the top functions (by own time) for a flat program "
                          "of this size")
    args = cli.parse_args()

    graphdsl.compile(flat_program(30))  # build the parser tables outside the timings
    keras_build = keras_builder()
    header = f"{'family':<7} {'ops':>8} {'lines':>7} {'parse s':>9} {'elab+check s':>13} " \
             f"{'total s':>9} {'us/op':>8} {'wall s':>8}"
    if keras_build:
        header += f" {'keras s':>9}"
    print(f"CPU seconds (time.process_time), best of 3 under 20k ops; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(header)
    print("-" * len(header))
    for family in args.families:
        rows = []
        for size in args.sizes:
            source = FAMILIES[family](size)
            runs = 3 if size < 20_000 else 1
            row = time_graphdsl(source, runs)
            rows.append(row)
            line = (f"{family:<7} {row['ops']:>8,} {source.count(chr(10)):>7,} "
                    f"{row['parse']:>9.3f} {row['check']:>13.3f} {row['total']:>9.3f} "
                    f"{1e6 * row['total'] / row['ops']:>8.1f} {row['wall']:>8.3f}")
            if keras_build:
                line += f" {keras_column(keras_build, family, size, args.keras_max):>9}"
            print(line, flush=True)
        print(f"  {family}: {growth(rows)}")
    if not keras_build:
        print("Keras: not importable here (TensorFlow is not installed); no side-by-side column")
    if args.profile:
        print(f"\nprofile of a flat program of {args.profile:,} ops (top by own time):")
        print(profile(flat_program(args.profile)))


if __name__ == "__main__":
    main()
