"""Experiment suite for the ``kinetics`` package: a Hydra runner around one shared training loop.

* :mod:`experiments.config`: the config schemas and :func:`~experiments.config.validate`, which
  rejects bad values before anything is built.
* :mod:`experiments.models` / :mod:`experiments.data`: registries of models and datasets
  (``create_model`` / ``create_dataset``), starting with the papers' synthetic experiments.
* :mod:`experiments.train`: :func:`~experiments.train.fit`, the training loop every trainer reuses.
* :mod:`experiments.logging`: run-directory writers (metrics.jsonl, summary.json, ...) and W&B.
* :mod:`experiments.runner`: ``run(cfg)``, what ``python run.py`` calls for every Hydra job.

Importing this package is cheap: submodules are imported on use.
"""
