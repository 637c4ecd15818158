"""Graph passes: plain functions ``Graph -> Graph``, one job each.

* :func:`fold_pooling` removes sum and average pooling by folding it into the
  weights of the layer that reads it (netx and Loihi have no pooling layer).
"""
from nmtoolchain.passes.fold_pooling import fold_pooling

__all__ = ["fold_pooling"]
