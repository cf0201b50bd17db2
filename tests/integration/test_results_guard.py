"""Committed results stay reproducible: a few cheap cells of ``results/`` are recomputed here with
the command of their Make target and compared with the committed tables to their printed digits.

A change that moves these numbers (the collision math, a random stream, initialisation, data
order, the optimizer wrapper, the renderer) fails this test until its author regenerates the
result (`make figure-ko-fig2`, `make table-kitinet-fc`) in the same commit.

The runs use the targets' machine-independent CPU kernels (``PORTABLE_KERNELS`` in the Makefile),
so they should give the committed bits on any x86-64 CPU. Should another CPU still differ, the
test is skipped with both CPUs named rather than failed: bitwise reproduction is only promised on
the kind of CPU the committed runs record.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers import REPO, run_py

from experiments.engine.runtime import environment


@dataclass(frozen=True)
class Cells:
    """Rows of ``results/<result>/README.md`` recomputed from ``overrides`` of ``experiment``."""

    result: str
    experiment: str
    overrides: tuple[str, ...]
    renderer: str
    min_rows: int  # rows with numbers the recomputation must reproduce (so it cannot pass empty)


CELLS = [
    # soft and hard collision (KO's counter-based stream) and plain Adam, two activations
    Cells(
        "ko_fig2",
        "ko/fig2",
        ("model.activation=sigmoid,tanh", "collision=none,soft,hard"),
        "ko-fig2",
        min_rows=8,
    ),
    # KITINet's collision step in training (its keyed stream), vanilla alongside
    Cells(
        "kitinet_fc",
        "kitinet/fc",
        ("model.activation=tanh", "collision=none,kitinet"),
        "kitinet-fc",
        min_rows=3,
    ),
]


def portable_kernels() -> dict[str, str]:
    """The Makefile's ``PORTABLE_KERNELS`` assignments, as the targets run with them."""
    makefile = (REPO / "Makefile").read_text()
    line = re.search(r"^PORTABLE_KERNELS := (.+)$", makefile, re.M)
    assert line, "the Makefile no longer defines PORTABLE_KERNELS"
    return dict(item.split("=", 1) for item in shlex.split(line.group(1)))


def numbered_rows(readme: str) -> set[tuple[str, ...]]:
    """The table rows holding numbers of ours (a ``±`` or an ``→``), as tuples of stripped cells
    (column widths depend on the other rows, so lines are not compared as text)."""
    rows = set()
    for line in readme.splitlines():
        numbers = "±" in line or "→" in line
        if line.startswith("|") and numbers and "missing" not in line:
            rows.add(tuple(cell.strip() for cell in line.strip().strip("|").split("|")))
    return rows


def recorded_cpu(readme: str) -> str | None:
    """The CPU the committed runs recorded (their provenance header), if they did."""
    found = re.search(r"environments recorded by the runs: .*?\bcpu ([^,;]+)", readme)
    return found.group(1).strip() if found else None


@pytest.mark.parametrize("cells", CELLS, ids=[c.result for c in CELLS])
def test_committed_cells_reproduce(tmp_path: Path, cells: Cells) -> None:
    committed = (REPO / "results" / cells.result / "README.md").read_text()
    runs, out = tmp_path / "runs", tmp_path / "out"
    run_py(
        "run.py",
        "--multirun",
        f"experiment={cells.experiment}",
        "seed=0,1,2",
        *cells.overrides,
        f"hydra.sweep.dir={runs}",
        env=portable_kernels(),
    )
    run_py("scripts/render.py", cells.renderer, "--runs", str(runs), "--out", str(out))
    ours = numbered_rows((out / "README.md").read_text())
    assert len(ours) >= cells.min_rows, sorted(ours)
    moved = sorted(ours - numbered_rows(committed))
    if moved:
        cpu, here = recorded_cpu(committed), environment(torch.device("cpu"))["cpu"]
        if cpu is not None and cpu != here:
            pytest.skip(
                f"results/{cells.result} was made on {cpu}; this CPU ({here}) gives other bits"
            )
    assert not moved, (
        f"rows of results/{cells.result}/README.md no longer reproduce; if the change is meant, "
        f"regenerate it (see results/README.md) in the same commit. Recomputed rows: {moved}"
    )


def test_every_result_directory_is_indexed() -> None:
    """``results/README.md`` has a row per result directory, naming a Make target that exists and
    the commit its runs were made at (a prefix of the one its own header records)."""
    index = (REPO / "results" / "README.md").read_text()
    rows = {
        cells[0].strip("` /"): cells
        for line in index.splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
    }
    directories = sorted(p.name for p in (REPO / "results").iterdir() if p.is_dir())
    assert sorted(rows) == directories
    targets = set(re.findall(r"^([a-z0-9-]+):", (REPO / "Makefile").read_text(), re.M))
    for name, cells in rows.items():
        target = re.search(r"`make ([a-z0-9-]+)`", " ".join(cells))
        assert target and target.group(1) in targets, (name, cells)
        commit = re.search(r"`([0-9a-f]{7,40})`", cells[-1])
        assert commit, (name, cells)
        header = _header_of(REPO / "results" / name)
        assert commit.group(1) in header, (name, commit.group(1))


def _header_of(directory: Path) -> str:
    """The provenance text of a result directory: its README's header, or the bench report's."""
    for name in ("README.md", "bench.md"):
        if (directory / name).is_file():
            return (directory / name).read_text()[:3000]
    raise AssertionError(f"{directory} has no README.md or bench.md")
