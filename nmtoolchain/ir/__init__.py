"""The nmtc intermediate representation: typed ops, a graph, serialization.

A superset of NIR 1.0.x: every NIR primitive has an op of the same name
(``Op.nir_type``); the rest (attention, normalization, QCFS, spike masks,
token halting/merging, sigma-delta) are what the seed methods and Loihi need.
"""
from nmtoolchain.ir.op import OP_REGISTRY, Op, Shape
from nmtoolchain.ir.io import Input, Output
from nmtoolchain.ir.linear import Affine, Bias, Linear, Scale
from nmtoolchain.ir.conv import Conv1d, Conv2d
from nmtoolchain.ir.pooling import AvgPool2d, MaxPool2d, SumPool2d
from nmtoolchain.ir.reshape import Flatten, Mean, Reshape, Transpose
from nmtoolchain.ir.indexing import Roll, Slice
from nmtoolchain.ir.neuron import (
    IF, LI, LIF, CubaLI, CubaLIF, Delay, I, SigmaDelta, Threshold)
from nmtoolchain.ir.norm import BatchNorm, LayerNorm
from nmtoolchain.ir.activation import GELU, QCFS, ReLU, Softmax
from nmtoolchain.ir.arithmetic import Add, Concat, MatMul
from nmtoolchain.ir.tokens import SpikeMask, TokenHalt, TokenMerge
from nmtoolchain.ir.graph import Graph, Node
from nmtoolchain.ir.serialize import graph_from_bytes, graph_to_bytes, load_graph, save_graph

__all__ = [
    "OP_REGISTRY", "Op", "Shape", "Graph", "Node",
    "Input", "Output", "Affine", "Bias", "Linear", "Scale", "Mean", "Conv1d", "Conv2d",
    "SumPool2d", "AvgPool2d", "MaxPool2d", "Flatten", "Reshape", "Transpose", "Roll", "Slice",
    "I", "IF", "LI", "LIF", "CubaLIF", "CubaLI", "Threshold", "Delay", "SigmaDelta",
    "BatchNorm", "LayerNorm", "ReLU", "GELU", "QCFS", "Softmax", "Add", "Concat", "MatMul",
    "SpikeMask", "TokenHalt", "TokenMerge",
    "save_graph", "load_graph", "graph_to_bytes", "graph_from_bytes",
]
