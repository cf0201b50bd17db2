"""Speed and memory benchmarks of the kinetics core against SPEC §5 (``make bench``).

The command line of the ``benchmarks`` package (one module per section; see its docstring):
runs every section and writes ``<out>/bench.md`` and ``<out>/bench.json`` atomically. Exits 1 if
a section failed (the others' numbers are still written).

Usage: ``python scripts/bench.py --out results/bench [--quick] [--skip-e2e] [--threads N]
[--only SECTION ...]`` (sections by their results key: collisions, kitinet, hard_all, e2e,
kiti_resnet, ko_resnets, text, lm).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.config import Config
from benchmarks.memory import probe_main
from benchmarks.runner import SECTIONS, run

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 if a section failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument(
        "--skip-e2e", action="store_true", help="skip the network steps (sections 4-8)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default 2; quick mode 1); see the report's note"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[key for key, _ in SECTIONS],
        metavar="SECTION",
        help="run only these sections (results keys: %(choices)s)",
    )
    # internal: fresh-process memory probe (the benchmark itself runs `python -m benchmarks.memory`)
    parser.add_argument("--rss-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe:
        return probe_main(args.rss_probe, args.threads)
    cfg = Config.quick() if args.quick else Config()
    if args.threads:
        cfg = replace(cfg, threads=args.threads)
    results = run(cfg, args.out, quick=args.quick, skip_e2e=args.skip_e2e, only=args.only)
    print(f"wrote {args.out}/bench.md and bench.json in {results['runtime_s']:.0f} s")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
