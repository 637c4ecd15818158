"""nmtc's own torch modules for training: QCFS activation, IF, LIF and
parametric LIF neurons, multi-step wrappers (StepWise, TokenBatchNorm),
Random Spike Masking.

Plain ``nn.Module``s in the style of sinabs: explicit state, ``reset_states()``,
composable like any torch layer. The torch loader translates each of them to
one IR node (``QCFS``, ``IF``, ``LIF``); nothing here depends on a back end or
a vendor library.
"""
from nmtoolchain.nn.qcfs import QCFS
from nmtoolchain.nn.neurons import IFNeuron, LIFNeuron, spike_with_surrogate
from nmtoolchain.nn.spike_mask import SpikeMask
from nmtoolchain.nn.plif import PLIFNeuron
from nmtoolchain.nn.multistep import StepWise, TokenBatchNorm

__all__ = ["QCFS", "IFNeuron", "LIFNeuron", "PLIFNeuron", "SpikeMask", "StepWise",
           "TokenBatchNorm", "spike_with_surrogate"]
