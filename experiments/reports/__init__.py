"""Renderers of the papers' tables and figures from run directories (never from W&B).

- :mod:`~experiments.reports.common`: collect runs, aggregate over seeds, the papers' numbers
  (``results/paper_tables.yaml``), markdown and provenance;
- :mod:`~experiments.reports.runs`: helpers on collected runs shared by the renderers;
- :mod:`~experiments.reports.ko`, :mod:`~experiments.reports.kitinet`,
  :mod:`~experiments.reports.pde`, :mod:`~experiments.reports.text`, :mod:`~experiments.reports.lm`,
  :mod:`~experiments.reports.sweep`: the renderers, registered
  with :data:`~experiments.core.registry.REPORTS` under their ``scripts/render.py`` names;
- :mod:`~experiments.reports.all` imports every renderer module;
- :mod:`~experiments.reports.render`: :func:`~experiments.reports.render.render_report`, the one
  write path (``scripts/render.py`` calls it), which applies the rule below.

**Nothing silent, nothing lost.** A renderer reads the run directories under ``--runs``; with none
(the directory absent or empty, e.g. ``make RENDER_ONLY=1 ...`` on a fresh clone) it still renders,
every cell of ours "missing" and the paper's beside them. What reaches ``--out`` then:

1. runs found: the rendered files replace those in ``--out`` (re-rendering is the point); cells
   without runs are "missing";
2. no runs, and ``--out`` already holds at least one of the files the renderer writes (a committed
   result): nothing is written, every file in ``--out`` stays byte for byte;
3. no runs, and ``--out`` holds none of them: the all-"missing" files are written (what a newcomer
   should see), their provenance saying there were no runs.

"No runs" is per renderer: the most runs any of its files is rendered from, as its
:func:`~experiments.reports.common.provenance_header` states, is 0. So a renderer that selects its
rows from a shared root (the PDE tables from ``multirun/kitinet_pde``) has no runs when none of the
root's runs is one of its rows. In cases 2 and 3 one line on stderr names the runs directory, what
was done and the command that makes the runs (the Make target whose recipe renders this report
from this directory); the exit status is 0, so a ``make`` recipe goes on. Renderers themselves
never exit the process and never decide this: they render into a staging directory and
:func:`~experiments.reports.render.render_report` moves the files (or not).

Importing this package imports no renderer.
"""
