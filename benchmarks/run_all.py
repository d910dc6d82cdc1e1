"""Run every performance benchmark once, one after the other, at its documented default size (``make bench``).

Each benchmark is its own process (so one's threads and caches do not colour the next), writes its JSON
under ``bench-out/`` and prints its own table; docs/benchmarks.md records the figures with their commands.
Run it on an otherwise idle machine: a figure taken beside other heavy work is not a figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, arguments) — the quick, self-contained form of each benchmark; the trainer benchmark's accuracy
# mode needs a dataset directory and hours, so it is run by hand (docs/benchmarks.md).
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("bench_graph.py", []),
    ("bench_trainer.py", ["throughput", "--dataset", "demo", "--train", "3000"]),
    ("bench_searcher.py", []),
    ("bench_search_quality.py", ["--out-dir", "bench-out"]),
    ("bench_loop.py", []),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only these benchmarks (file names)")
    parser.add_argument("--out", default="bench-out", help="directory for the JSON results")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    unknown = set(args.only or []) - {b[0] for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {[b[0] for b in BENCHMARKS]}")
    failed = []
    for name, extra in chosen:
        cmd = [sys.executable, str(HERE / name), *extra]
        if name != "bench_search_quality.py":
            cmd += ["--json", str(out / f"{Path(name).stem}.json")]
        print(f"\n=== {' '.join(cmd[1:])}  (load {os.getloadavg()[0]:.2f})", flush=True)
        start = time.perf_counter()
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
