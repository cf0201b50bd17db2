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

Runs mode: ``--runs DIR`` instead of ``--checkpoint`` / ``--out`` evaluates every finished run
directory under ``DIR`` (``summary.json`` and the ``export/`` the runner writes) that has no
``lm_eval.json`` yet, and writes ``<run>/lm_eval.json``; one line per run says what was done::

    python scripts/evaluate_lm.py --runs multirun/mini_lm/mini_lm_table1 --tasks mini \\
        --faq-qa data/lm_raw/pydocs/faq_qa.jsonl

It is idempotent: an evaluated run is skipped (its line names requested tasks its file lacks;
delete the file to evaluate it again), a run without ``summary.json`` (unfinished) or without
``export/`` too, and a file is never overwritten, not even one another process wrote meanwhile.
An absent ``DIR`` holds no runs: one line on stderr, status 0 (``make RENDER_ONLY=1`` goes on).

The JSON is written atomically; an existing ``--out`` is left alone unless ``--overwrite`` (checked
before anything is evaluated). Bad arguments, a missing checkpoint, an unknown task or a data set
that cannot be loaded (e.g. a hub data set offline) end with one line on stderr and status 2 (in
runs mode at the first run that fails; the files already written stay).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from experiments.core.errors import ConfigError
from experiments.core.io import atomic_write_json, git_commit
from experiments.lm import evaluation

RUN_RESULT = "lm_eval.json"
"""The file the runs mode writes into each run directory (the reports read it)."""
EXPORT = "export"
"""The runner's ``save_pretrained`` directory inside a run directory."""


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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        type=Path,
        help="save_pretrained directory (model + tokenizer); needs --out",
    )
    source.add_argument(
        "--runs",
        type=Path,
        help="evaluate every finished run directory under this one that has no "
        f"{RUN_RESULT} yet, writing <run>/{RUN_RESULT}",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        required=True,
        metavar="TASK",
        help=f"lm-eval task names or suites ({', '.join(evaluation.SUITES)})",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write (--checkpoint)")
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
    args = parser.parse_args(argv)
    if args.checkpoint is not None and args.out is None:
        parser.error("--checkpoint needs --out")
    if args.runs is not None and (args.out is not None or args.overwrite):
        parser.error(
            f"--runs writes <run>/{RUN_RESULT} and never overwrites: drop --out/--overwrite"
        )
    return args


def _evaluate(checkpoint: Path, args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """lm-eval on ``checkpoint`` as ``args`` say, with the command line and commit recorded."""
    summary = evaluation.evaluate_checkpoint(
        checkpoint,
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
    return summary


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    """Evaluate as ``args`` say and write ``args.out``; the summary written."""
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out} exists: pass --overwrite to replace it")
    summary = _evaluate(args.checkpoint, args, argv)
    atomic_write_json(args.out, summary)
    return summary


# ----------------------------------------------------------------------------- runs mode


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (itself included): one holding ``config.yaml`` or
    ``summary.json``, finished or not. Sorted; exports, checkpoints and hidden directories are
    not searched."""
    found = []
    for directory, subdirs, files in os.walk(root):
        if "config.yaml" in files or "summary.json" in files:
            found.append(Path(directory))
        # Hydra's .hydra/ holds a config.yaml too; exports and checkpoints hold no runs
        subdirs[:] = [d for d in subdirs if d not in (EXPORT, "checkpoints") and d[0] != "."]
    return sorted(found)


def _skip_reason(run: Path, tasks: Sequence[str]) -> str | None:
    """Why ``run`` is not evaluated (None: evaluate it)."""
    if not (run / "summary.json").is_file():
        return "skipped: not finished (no summary.json)"
    if not (run / EXPORT).is_dir():
        return f"skipped: no {EXPORT}/ (the runner exports language models only)"
    result = run / RUN_RESULT
    if result.exists():
        lacks = _lacking_tasks(result, tasks)
        extra = f" (it lacks {', '.join(lacks)}: delete it to evaluate again)" if lacks else ""
        return f"skipped: {RUN_RESULT} exists{extra}"
    return None


def _lacking_tasks(result: Path, tasks: Sequence[str]) -> list[str]:
    """The requested tasks (suites expanded) that the existing ``result`` has no entry for."""
    try:
        done = json.loads(result.read_text()).get("tasks", {})
    except (OSError, ValueError, AttributeError):
        return ["(unreadable file)"]
    return [task for task in evaluation.resolve_tasks(tasks) if task not in done]


def write_new_json(path: Path, obj: Any) -> bool:
    """Write ``obj`` as JSON to ``path`` unless ``path`` exists; False if it did.

    Atomic and never overwriting, also against another process: the complete file is written
    (atomically, with the user's umask) under a unique name beside ``path`` and hard-linked to
    it: ``os.link`` fails if ``path`` exists, where a rename would replace it."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.new")
    atomic_write_json(staged, obj)
    try:
        os.link(staged, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: a rename, after a last look
        if path.exists():
            return False
        os.replace(staged, path)
        return True
    finally:
        staged.unlink(missing_ok=True)
    return True


def evaluate_runs(args: argparse.Namespace, argv: Sequence[str]) -> Iterator[str]:
    """Evaluate the runs under ``args.runs`` that need it; yields one line per run directory."""
    for run_dir in run_dirs(args.runs):
        reason = _skip_reason(run_dir, args.tasks)
        if reason is not None:
            yield f"{run_dir}: {reason}"
            continue
        summary = _evaluate(run_dir / EXPORT, args, argv)
        summary["run_dir"] = str(run_dir)
        if not write_new_json(run_dir / RUN_RESULT, summary):
            yield f"{run_dir}: kept the {RUN_RESULT} another process wrote meanwhile"
            continue
        yield f"{run_dir}: evaluated -> {RUN_RESULT} ({_scores(summary)})"


# ----------------------------------------------------------------------------- command line


def _scores(summary: dict[str, Any]) -> str:
    """``task: metric value, ...; task: ...``: every float score of a summary."""
    return "; ".join(f"{name}: {_task_scores(result)}" for name, result in summary["tasks"].items())


def _task_scores(result: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} {value:.4g}"
        for key, value in result.items()
        if key not in ("kind", "n", "num_fewshot", "version", "subtasks")
        and isinstance(value, float)
    )


def _main_runs(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The runs mode: a line per run on stdout, then how many were evaluated."""
    if not args.runs.is_dir():
        print(f"no run directories under {args.runs}: nothing to evaluate", file=sys.stderr)
        return 0
    evaluated = total = 0
    try:
        for line in evaluate_runs(args, argv):
            total += 1
            evaluated += " evaluated -> " in line
            print(line, flush=True)
    except ConfigError as error:  # MissingDataError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"evaluated {evaluated} of {total} run directories under {args.runs}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 (with one line on stderr) on a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.runs is not None:
        return _main_runs(args, argv)
    try:
        summary = run(args, argv)
    except ConfigError as error:  # MissingDataError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, result in summary["tasks"].items():
        print(f"{name}: {_task_scores(result)} (n={result['n']})")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
