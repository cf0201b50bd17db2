"""The one place that imports every report module, so each registers its renderers.

Importing a module of :mod:`experiments.reports` registers its renderers with
:data:`~experiments.core.registry.REPORTS` under their ``scripts/render.py`` names; a new report
module needs one line here.
"""

from __future__ import annotations

import experiments.reports.kitinet
import experiments.reports.ko
import experiments.reports.lm
import experiments.reports.mini_lm
import experiments.reports.pde
import experiments.reports.sweep
import experiments.reports.text  # noqa: F401
