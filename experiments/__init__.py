"""Experiment suite for the ``kinetics`` package: a Hydra runner around one shared training loop.

Layers point one way (each imports only from those above it):

* :mod:`experiments.core`: errors, the registries (models, datasets, reports), the config schemas,
  the :class:`~experiments.core.task.Task` protocol, loaders, metrics and model blocks. Imports no
  domain.
* :mod:`experiments.engine`: the training loop, checkpoints, callbacks, optimizers, schedulers,
  distributed set-up and run directories.
* the domains :mod:`experiments.synthetic`, :mod:`experiments.vision`, :mod:`experiments.pde`:
  each registers its models and data sets; none imports another.
* :mod:`experiments.domains` imports every domain; :mod:`experiments.runner` (``run(cfg)``) and
  :mod:`experiments.reports` build on them.

Importing this package is cheap: submodules are imported on use.
"""
