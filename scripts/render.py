"""Render a paper figure or table from run directories (never from W&B).

Usage (from the repository root)::

    python scripts/render.py ko-fig2    --runs multirun/ko_fig2    --out results/ko_fig2
    python scripts/render.py kitinet-fc --runs multirun/kitinet_fc --out results/kitinet_fc
    python scripts/render.py ko-table1 --runs multirun/ko_table1 --out results/ko_table1
    python scripts/render.py ko-fig3 --runs multirun/ko_table1 --out results/ko_table1
    python scripts/render.py ko-table45 --runs multirun/ko_table1 --out results/ko_table45
    python scripts/render.py kitinet-table3 --runs multirun/kitinet_table3 --out results/kitinet_table3
    python scripts/render.py ko-table2 --runs multirun/ko_table2 --out results/ko_table2
    python scripts/render.py kitinet-table4 --runs multirun/kitinet_pde --out results/kitinet_table4
    python scripts/render.py kitinet-table6 --runs multirun/kitinet_pde --out results/kitinet_table6
    python scripts/render.py kitinet-table7 --runs multirun/kitinet_pde --out results/kitinet_table7
    python scripts/render.py kitinet-fig2 --runs multirun/kitinet_pde --out results/kitinet_fig2
    python scripts/render.py mini-pde --runs multirun/mini_pde --out results/mini_pde
    python scripts/render.py ko-table3 --runs multirun/ko_table3 --out results/ko_table3
    python scripts/render.py kitinet-table5 --runs multirun/kitinet_table5 --out results/kitinet_table5
    python scripts/render.py mini-text --runs multirun/mini_text --out results/mini_text
    python scripts/render.py kitinet-table1 --runs multirun/kitinet_table1 --out results/kitinet_table1
    python scripts/render.py kitinet-table2 --runs multirun/kitinet_table2 --out results/kitinet_table2
    python scripts/render.py ko-table6 --runs multirun/ko_table6 --out results/ko_table6
    python scripts/render.py mini-lm --runs multirun/mini_lm --out results/mini_lm

Each subcommand reads every run directory under ``--runs`` (``config.yaml`` + ``summary.json``, plus
``weights_final.pt`` for heat maps and ``lm_eval.json`` for the LM tables), aggregates over seeds
and writes ``README.md`` (and figures) into ``--out``, with our numbers beside the paper's from
``results/paper_tables.yaml``. Without run directories under ``--runs`` (e.g. ``make RENDER_ONLY=1
...`` on a fresh clone) the committed result in ``--out`` is left byte for byte, or, if there is
none, an all-"missing" one is written; either way one line on stderr names the runs directory and
the command that makes runs, and the exit status is 0 (the rule: :mod:`experiments.reports`, applied
by :func:`experiments.reports.render.render_report`).
The renderers live in :mod:`experiments.reports`; to add one, write
``render_<name>(runs, out, command) -> list[Path]`` there, decorate it with
``@REPORTS.register(name="<name>")`` and import its module in ``experiments/reports/all.py``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.core.registry import REPORTS
from experiments.reports.render import render_report


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), render, print the files written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=REPORTS.names(), help="figure or table to render")
    parser.add_argument("--runs", type=Path, required=True, help="directory holding run dirs")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/render.py", *argv])
    try:
        rendered = render_report(args.target, args.runs, args.out, command)
    except NotADirectoryError as error:
        parser.error(str(error))
    for path in rendered.written:
        print(path)
    if rendered.message:
        print(rendered.message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
