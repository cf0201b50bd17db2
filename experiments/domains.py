"""The one place that imports every domain, so each registers its models and data sets.

A new domain is a folder under ``experiments/`` whose modules register themselves with
:data:`~experiments.core.registry.MODELS` / :data:`~experiments.core.registry.DATASETS`, plus one
line here.
"""

from __future__ import annotations

import experiments.lm.data
import experiments.lm.models
import experiments.pde.data
import experiments.pde.models
import experiments.synthetic.data
import experiments.synthetic.models
import experiments.text.data
import experiments.text.models
import experiments.vision.data
import experiments.vision.models  # noqa: F401
