"""ANN -> SNN conversion passes and input encoders.

* :func:`convert_relu_to_if`: threshold balancing of a ReLU network into a
  rate-coded IF network (``threshold_balance``).
* :func:`rate_encode`: deterministic rate coding of analog inputs (``encode``).
"""
from nmtoolchain.convert.encode import encoding_metadata, rate_encode
from nmtoolchain.convert.threshold_balance import activation_scales, convert_relu_to_if

__all__ = ["rate_encode", "encoding_metadata", "convert_relu_to_if", "activation_scales"]
