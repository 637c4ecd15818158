"""nmtc's own torch modules for training: QCFS activation, IF and LIF neurons,
Random Spike Masking.

Plain ``nn.Module``s in the style of sinabs: explicit state, ``reset_states()``,
composable like any torch layer. The torch loader translates each of them to
one IR node (``QCFS``, ``IF``, ``LIF``); nothing here depends on a back end or
a vendor library.
"""
from nmtoolchain.nn.qcfs import QCFS
from nmtoolchain.nn.neurons import IFNeuron, LIFNeuron, spike_with_surrogate
from nmtoolchain.nn.spike_mask import SpikeMask

__all__ = ["QCFS", "IFNeuron", "LIFNeuron", "SpikeMask", "spike_with_surrogate"]
