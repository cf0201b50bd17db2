"""kinetics: the Kinetics-inspired Optimizer (KO) and KITINet in pure PyTorch.

* KO: :class:`KineticOptimizer` wraps any torch optimizer; before each step the weight gradients of
  chosen layers collide (:func:`soft_collision` or the DSMC :func:`hard_collision`) to counter
  parameter condensation.
* KITINet: :class:`KITINet` replaces a residual addition ``x + v`` by one DSMC collision step in
  training (:func:`kitinet_collision`) and is exactly ``x + v`` in eval.
* :mod:`kinetics.metrics`: condensation metrics (cosine matrices, rho, heat maps).

This package depends on torch only; the experiment suite (``experiments``) builds on it.
"""

from kinetics.collision import hard_collision, soft_collision
from kinetics.dsmc import collide, collision_mask
from kinetics.kitinet import KITINet, KITINetConfig, kitinet_collision
from kinetics.metrics import (
    condensation_order,
    cosine_similarity_matrix,
    max_offdiag_abs_cos,
    plot_cosine_heatmap,
    rho,
)
from kinetics.optimizer import (
    KineticOptimizer,
    find_classifier,
    last_block,
    neuron_view,
    select_modules,
)

__all__ = [
    "KITINet",
    "KITINetConfig",
    "KineticOptimizer",
    "collide",
    "collision_mask",
    "condensation_order",
    "cosine_similarity_matrix",
    "find_classifier",
    "hard_collision",
    "kitinet_collision",
    "last_block",
    "max_offdiag_abs_cos",
    "neuron_view",
    "plot_cosine_heatmap",
    "rho",
    "select_modules",
    "soft_collision",
]
__version__ = "0.1.0"
