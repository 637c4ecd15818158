"""Graph passes: plain functions ``Graph -> Graph``, one job each.

* :func:`fold_pooling` removes sum and average pooling by folding it into the
  weights of the layer that reads it (netx and Loihi have no pooling layer).
* :func:`fold_scales` moves a neuron's output ``Scale`` (a converted network's
  spike amplitude λ) into the weights of the synapses it feeds.
* :func:`fold_batchnorm` folds BatchNorm into the neighbouring affine layer.
"""
from nmtoolchain.passes.fold_batchnorm import fold_batchnorm
from nmtoolchain.passes.fold_pooling import fold_pooling
from nmtoolchain.passes.fold_scale import fold_scales

__all__ = ["fold_batchnorm", "fold_pooling", "fold_scales"]
