"""Every benchmark, one table: figure | measured | baseline | ratio | target | met?

    .venv/bin/python bench/run.py [--quick] [--only one_sync,pages,...] [--peers]

``--peers`` adds an optional arm to the gateway benchmark: the same figures through IBM's
ContextForge 1.1.0 (bench/peers.py; installed from PyPI into its own cached venv on first use,
which needs Python 3.12 or 3.13). Where it cannot be installed or started, the arm is one
"skipped" row saying why.

Each figure is measured beside its baseline in the same run (the machine is shared and noisy,
so ratios, not absolute times, are what to compare across runs). Peers run on 127.0.0.1 only.
Prints the table and writes it, with the machine's facts, to ``bench/RESULTS.md``.
"""

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import ROOT, Figure, table  # noqa: E402

BENCHMARKS = {
    "one_sync": "1. One sync vs the SDK client and the floor",
    "sync_all": "2. Sync-all scaling",
    "pages": "3. Pages",
    "hot_path": "4. Credential hot path",
    "storm": "5. Refresh storm",
    "gateway": "6. Agent gateway",
    "records": "7. Calls and Audit pages, usage charts",
    "streams": "8. Held agent streams",
    "surface": "9. Resources and prompts through the gateway vs tools/call",
}
PEERS = "6b. Agent gateway beside a peer: ContextForge (--peers)"
RESULTS = os.path.join(ROOT, "bench", "RESULTS.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (figures noisier)")
    parser.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(BENCHMARKS))
    parser.add_argument(
        "--peers",
        action="store_true",
        help="with the gateway benchmark, the same figures through ContextForge",
    )
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    load_before = os.getloadavg()
    began = time.perf_counter()
    sections = []
    runs = [(name, BENCHMARKS[name]) for name in chosen]
    if args.peers and "gateway" in chosen:
        runs.insert(chosen.index("gateway") + 1, ("peers", PEERS))
    for name, title in runs:
        print(f"… {title}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            figures = importlib.import_module(f"bench.{name}").run(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            figures = [Figure(f"{name} failed: {type(exc).__name__}: {exc}"[:200], None)]
        seconds = time.perf_counter() - started
        sections.append((f"{title} ({seconds:.0f} s)", figures))
    elapsed = time.perf_counter() - began
    command = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    if args.peers:
        command += " --peers"
    report = _report(sections, command, elapsed, load_before, os.getloadavg())
    print(report)
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write(report)
    missed = [
        f
        for _, figures in sections
        for f in figures
        if not f.skipped and (f.met is False or f.measured is None)
    ]
    print(f"{len(missed)} figure(s) missed their target or failed; see bench/RESULTS.md",
          file=sys.stderr)  # fmt: skip


def _report(sections, command, elapsed, load_before, load_after) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s in all.",
        "",
        f"Machine: {_cpu()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after (shared machine: compare ratios, not times).",
        "",
    ]
    for title, figures in sections:
        lines += [f"## {title}", "", table(figures), ""]
    return "\n".join(lines)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
