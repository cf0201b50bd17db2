"""The one write path of every renderer: what may be written into ``--out``, and what the user is told.

:func:`render_report` runs a registered renderer into a staging directory beside ``out`` and then
applies the rule of :mod:`experiments.reports` (its docstring states it):

- the renderer found runs: its files replace those in ``out`` (re-rendering is the point);
- it found none and ``out`` already holds one of the files it would write: nothing is written,
  the committed result stays byte for byte;
- it found none and ``out`` holds none of them: its all-"missing" files are written.

Without runs, :attr:`Rendered.message` is one line naming the runs directory and the command that
produces runs; ``scripts/render.py`` prints it on stderr and exits 0 (``make RENDER_ONLY=1 ...``
goes on to the next renderer).
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import experiments.reports.all  # noqa: F401  (registers every renderer)
from experiments.core.registry import REPORTS
from experiments.reports import common as tables

__all__ = ["MAKEFILE", "Rendered", "make_target", "render_report"]

MAKEFILE = tables.REPO_ROOT / "Makefile"
_RULE = re.compile(r"^([A-Za-z0-9_.-]+)\s*:(?!=)")  # "target: ..." (not "VAR := ...")


@dataclass(frozen=True)
class Rendered:
    """What :func:`render_report` did.

    Attributes:
        written: files written into ``out``, in the renderer's order.
        kept: files of ``out`` left as they were (no runs, and a result was already there).
        runs: the most runs any of the renderer's files was rendered from (0: none found).
        message: one line for the user when there were no runs, else ``None``.
    """

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    runs: int = 0
    message: str | None = None


def make_target(name: str, runs: str | os.PathLike[str], makefile: Path = MAKEFILE) -> str | None:
    """The Make target whose recipe renders ``name`` from ``runs`` (``None`` if no target does).

    Read from the Makefile's ``scripts/render.py <name> --runs <dir>`` recipe lines; ``runs``
    matches as written or, resolved, relative to the repository root.
    """
    if not makefile.is_file():
        return None
    wanted = {os.path.normpath(runs), str(Path(runs).resolve())}
    target = None
    for line in makefile.read_text(encoding="utf-8").splitlines():
        if rule := _RULE.match(line):
            target = rule.group(1)
        elif line.startswith("\t") and "scripts/render.py " in line and target:
            words = shlex.split(line.split("scripts/render.py ", 1)[1])
            if words[:1] != [name] or "--runs" not in words[:-1]:
                continue
            listed = words[words.index("--runs") + 1]
            if {os.path.normpath(listed), str((tables.REPO_ROOT / listed).resolve())} & wanted:
                return target
    return None


def _staged_files(staging: Path) -> list[Path]:
    return sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())


def render_report(name: str, runs: Path, out: Path, command: str) -> Rendered:
    """Render report ``name`` from the run directories under ``runs`` into ``out`` (see the
    module docstring for what is written when there are no runs).

    Raises:
        ConfigError: ``name`` is no registered report.
        NotADirectoryError: ``runs`` exists but is not a directory (a wrong argument, not "no runs").
    """
    renderer = REPORTS.get(name)
    runs, out = Path(runs), Path(out)
    if runs.exists() and not runs.is_dir():
        raise NotADirectoryError(f"--runs {runs} is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.render-", dir=out.parent) as tmp:
        staging = Path(tmp)
        with tables.recording_rendered_runs() as counts:
            returned = renderer(runs, staging, command)
        found = max(counts) if counts else len(tables.find_run_dirs(runs)) if runs.is_dir() else 0
        staged = _staged_files(staging)
        order = [p.relative_to(staging) for p in returned if p.is_relative_to(staging)]
        staged = [p for p in order if p in staged] + [p for p in staged if p not in order]
        existing = [out / p for p in staged if (out / p).exists()]
        if not found and existing:
            message = _no_runs_message(name, runs, out, kept=True)
            return Rendered(kept=existing, message=message)
        written = []
        for relative in staged:
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, target)
            written.append(target)
    message = None if found else _no_runs_message(name, runs, out, kept=False)
    return Rendered(written=written, runs=found, message=message)


def _no_runs_message(name: str, runs: Path, out: Path, *, kept: bool) -> str:
    """The one line for the user: where no runs were found, what was done, how to make runs."""
    target = make_target(name, runs)
    others = len(tables.find_run_dirs(runs)) if runs.is_dir() else 0
    where = (  # a shared runs root (the PDE tables) may hold other reports' runs only
        f"none of the {others} run directories under {runs} is one of its runs"
        if others
        else f"no run directories under {runs}"
    )
    produce = (
        f"`make {target}` (without RENDER_ONLY=1)"
        if target
        else f"`python run.py --multirun experiment=<...> hydra.sweep.dir={runs}` (`make help`)"
    )
    did = (
        f"kept the result already in {out}/ unchanged"
        if kept
        else f'wrote an all-"missing" result into {out}/'
    )
    return f"render.py {name}: {where}: {did}; runs come from {produce}"
