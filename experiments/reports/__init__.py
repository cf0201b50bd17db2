"""Renderers of the papers' tables and figures from run directories (never from W&B).

- :mod:`~experiments.reports.common`: collect runs, aggregate over seeds, the papers' numbers
  (``results/paper_tables.yaml``), markdown and provenance;
- :mod:`~experiments.reports.runs`: helpers on collected runs shared by the renderers;
- :mod:`~experiments.reports.ko`, :mod:`~experiments.reports.kitinet`,
  :mod:`~experiments.reports.pde`, :mod:`~experiments.reports.sweep`: the renderers, registered
  with :data:`~experiments.core.registry.REPORTS` under their ``scripts/render.py`` names;
- :mod:`~experiments.reports.all` imports every renderer module (``scripts/render.py`` does).

Importing this package imports no renderer.
"""
