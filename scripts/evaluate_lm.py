"""Evaluate an exported language model with lm-evaluation-harness; write a JSON summary.

Usage (from the repository root)::

    python scripts/evaluate_lm.py --checkpoint runs/gpt2/export --tasks table1 --out results.json
    python scripts/evaluate_lm.py --checkpoint DIR --tasks mini --limit 20 --out mini.json
    python scripts/evaluate_lm.py --checkpoint DIR --tasks arc_easy piqa --batch-size 16 \\
        --device cuda:0 --out arc_piqa.json

``--tasks`` takes lm-eval task/group names or the suites ``table1`` (MMLU, ARC-C/E, HellaSwag,
WinoGrande, PIQA, OBQA: KITINet Table 1 and KO Table 6), ``table2`` (answer perplexity on
GSM8K, MATH, MathQA, OCW), ``ko_table6`` and ``mini`` (answer perplexity on the Python FAQ pairs,
the CPU stand-in of Table 2). Everything runs zero-shot; see :mod:`experiments.lm.evaluation`.

The JSON is written atomically; an existing ``--out`` is left alone unless ``--overwrite`` (checked
before anything is evaluated). Bad arguments, a missing checkpoint, an unknown task or a data set
that cannot be loaded (e.g. a hub data set offline) end with one line on stderr and status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from experiments.core.errors import ConfigError
from experiments.core.io import atomic_write_json, git_commit
from experiments.lm import evaluation


class _OneLineParser(argparse.ArgumentParser):
    """argparse without the usage block on errors: one line, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="save_pretrained directory (model + tokenizer)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        required=True,
        metavar="TASK",
        help=f"lm-eval task names or suites ({', '.join(evaluation.SUITES)})",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--limit", type=_positive_int, default=None, help="documents per task (smoke runs)"
    )
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--dtype", default="auto", help="model dtype (default: auto, the checkpoint's)"
    )
    parser.add_argument(
        "--faq-qa",
        type=Path,
        default=None,
        help="FAQ JSONL file of kinetics_faq_answer_ppl (default: $KINETICS_FAQ_QA, else "
        "${KINETICS_DATA_DIR:-data}/lm_raw/pydocs/faq_qa.jsonl)",
    )
    parser.add_argument(
        "--include-path",
        type=Path,
        nargs="+",
        default=None,
        help="further directories of lm-eval YAML tasks",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    """Evaluate as ``args`` say and write ``args.out``; the summary written."""
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out} exists: pass --overwrite to replace it")
    summary = evaluation.evaluate_checkpoint(
        args.checkpoint,
        args.tasks,
        batch_size=args.batch_size,
        device=args.device,
        limit=args.limit,
        include_path=args.include_path,
        dtype=args.dtype,
        metadata={"faq_qa": str(args.faq_qa)} if args.faq_qa else None,
    )
    summary["command"] = shlex.join(["python", "scripts/evaluate_lm.py", *argv])
    summary["commit"] = git_commit()
    atomic_write_json(args.out, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 (with one line on stderr) on a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        summary = run(args, argv)
    except ConfigError as error:  # MissingDataError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, result in summary["tasks"].items():
        scores = ", ".join(
            f"{key} {value:.4g}"
            for key, value in result.items()
            if key not in ("kind", "n", "num_fewshot", "version", "subtasks")
            and isinstance(value, float)
        )
        print(f"{name}: {scores} (n={result['n']})")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
