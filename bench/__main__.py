"""``python -m bench [--quick] [--only N[,N]] [--interval S[,S]] [--markdown FILE]``: run
the benchmarks and print one table (benchmark, figure, value, baseline, ratio)."""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
import time
from pathlib import Path

from bench.common import Result, machine, say
from bench.context import Context

MODULES = {1: "latency", 2: "scan", 3: "exporter", 4: "duckdb_metrics", 5: "writer",
           6: "status", 7: "backfill", 8: "footprint", 9: "exporter_burst",
           10: "exporter_webconfig", 11: "history", 12: "slurm_calls",
           13: "web_pages", 14: "peer",
           15: "burst", 16: "dagster_ui"}


def _num(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit in ("calls", "files", "samples") and value == 1:
        return f"1 {unit[:-1]}"
    if unit in ("rows/s", "reports/s", "calls", "files", "samples"):
        return f"{value:,.0f} {unit}"
    return f"{value:.4g} {unit}".strip()


def ratio_text(ratio: float) -> str:
    """x1.94, x0.127; below 1% as a fraction (1/10,400), which reads better than 9.6e-05;
    x0 for none at all."""
    if ratio == 0:
        return "x0"
    return f"x{ratio:.3g}" if ratio >= 0.01 else f"1/{1 / ratio:,.0f}"


def _ratio(r: Result) -> str:
    if r.ratio is None:
        return "-"
    return ratio_text(r.ratio) + (" (worse)" if r.worse else "")


def rows(results: list[Result]) -> list[tuple[str, str, str, str, str]]:
    return [(r.bench, r.figure, _num(r.value, r.unit),
             "-" if r.baseline is None else f"{_num(r.baseline, r.unit)} ({r.baseline_name})",
             _ratio(r)) for r in results]


HEAD = ("benchmark", "figure", "value", "baseline", "ratio")


def text_table(results: list[Result]) -> str:
    table = [HEAD, *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, for development")
    p.add_argument("--only", help="comma-separated benchmark numbers (1-16)")
    p.add_argument("--markdown", type=Path, help="also write the table as markdown here, "
                   "with the machine, for bench/RESULTS.md")
    p.add_argument("--interval", default="5",
                   help="benchmark 1's sensors.interval_seconds; comma-separated to run it "
                   "once per value, e.g. 4,9,14 (default 5)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/baton-bench"),
                   help="where generated data goes; deleted at the end")
    p.add_argument("--keep", action="store_true", help="keep the workdir")
    args = p.parse_args(argv)
    # stopped by a signal: clean up (stop services, cancel held jobs) as on Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    chosen = sorted(int(n) for n in args.only.split(",")) if args.only else sorted(MODULES)
    try:
        intervals = [int(s) for s in args.interval.split(",")]
    except ValueError:
        intervals = []
    if not intervals or any(s < 1 for s in intervals):
        p.error(f"--interval {args.interval}: whole seconds, at least 1, comma-separated")
    ctx = Context(quick=args.quick, workdir=args.workdir, intervals=intervals)
    results: list[Result] = []
    failed = []
    try:
        for n in chosen:
            mod = importlib.import_module(f"bench.{MODULES[n]}")
            say(f"{n}. {mod.TITLE}")
            start = time.monotonic()
            try:
                results += mod.run(ctx)
            except Exception as exc:  # one broken benchmark must not lose the others
                say(f"{n}. FAILED: {type(exc).__name__}: {exc}")
                failed.append(n)
            finally:
                ctx.close()  # its services stop before the next benchmark measures
            say(f"{n}. done in {time.monotonic() - start:.0f}s")
            print(text_table(results), file=sys.stderr)
    finally:
        ctx.close()
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(text_table(results))
    if args.markdown:
        info = machine()
        head = "\n".join(f"- {k}: {v}" for k, v in info.items())
        mode = "quick sizes" if args.quick else "full sizes"
        args.markdown.write_text(f"{head}\n- mode: {mode}\n\n{markdown_table(results)}\n")
        say(f"wrote {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
