"""NeuroBench 2.3 itself as the referee of the ``neurobench`` counting rules.

The same two-layer spiking network runs in snnTorch under NeuroBench's
``Benchmark`` with its ``SynapticOperations`` metric, and in nmtc's simulator
(hand-built IR with the same weights); nmtc's ``neurobench`` rule must give
NeuroBench's Effective_MACs, Effective_ACs and Dense when NeuroBench runs the
whole batch per forward call, and ``neurobench-sample`` what NeuroBench gives
at batch size 1. The inputs hold multi-spikes (a 2) in some samples and steps
only, so the two groupings differ; the hidden layer is a stateless threshold
(snnTorch ``Leaky(beta=0, reset_mechanism='none')`` = NIR/nmtc ``Threshold``),
so both simulators emit the same spikes by construction.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

neurobench = pytest.importorskip(
    "neurobench", reason="neurobench (installed by `make env`) is not installed here")
snn = pytest.importorskip("snntorch", reason="snntorch (NeuroBench's SNN wrapper) is not installed")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import SynapticOperations  # noqa: E402
from neurobench.models import SNNTorchModel  # noqa: E402

from nmtoolchain.energy import apply_rule  # noqa: E402
from nmtoolchain.ir import Affine, Graph, Input, Output, Threshold  # noqa: E402
from simulators.cycle.interpreter import simulate  # noqa: E402

W1 = np.array([[0.6, 0.0, 0.9, 0.35], [0.0, 0.8, 0.45, 0.0], [0.7, 0.3, 0.0, 0.55]],
              np.float32)                    # 4 inputs -> 3 hidden
W2 = np.array([[0.5, 0.0, 1.1], [0.0, 0.9, 0.4]], np.float32)  # 3 hidden -> 2 outputs
THR = 0.5


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 3, bias=False)
        self.fc2 = torch.nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.from_numpy(W1))
            self.fc2.weight.copy_(torch.from_numpy(W2))
        self.lif1 = snn.Leaky(beta=0.0, threshold=THR, reset_mechanism="none")
        self.lif2 = snn.Leaky(beta=0.0, threshold=THR, reset_mechanism="none")

    def forward(self, x):
        spk1, mem1 = self.lif1(self.fc1(x))
        spk2, mem2 = self.lif2(self.fc2(spk1))
        return spk2, mem2


def _graph() -> Graph:
    g = Graph()
    g.add("x", Input((4,)))
    g.add("fc1", Affine(W1), ["x"])
    g.add("t1", Threshold(threshold=np.float32(THR)), ["fc1"])
    g.add("fc2", Affine(W2), ["t1"])
    g.add("t2", Threshold(threshold=np.float32(THR)), ["fc2"])
    g.add("y", Output(), ["t2"])
    return g


def _data() -> torch.Tensor:
    """(N=6, T=5, 4) spike counts; a 2 in sample 1 (step 0), sample 4 (steps 2, 3)."""
    rng = np.random.default_rng(3)
    x = (rng.random((6, 5, 4)) < 0.45).astype(np.float32)
    x[1, 0, 2] = 2.0
    x[4, 2, 0] = 2.0
    x[4, 3, 3] = 2.0
    return torch.from_numpy(x)


def _neurobench(x: torch.Tensor, batch_size: int) -> dict:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(len(x))),
                                       batch_size=batch_size, shuffle=False)
    bench = Benchmark(SNNTorchModel(_Net()), data, [], [], [[], [SynapticOperations]])
    return bench.run(verbose=False)["SynapticOperations"]


def _nmtc(x: torch.Tensor, rule: str) -> dict:
    ops = apply_rule(simulate(_graph(), x, x.shape[1]).counts, rule)
    return {"Effective_MACs": sum(float(o.macs.sum()) for o in ops.per_node.values()),
            "Effective_ACs": sum(float(o.acs.sum()) for o in ops.per_node.values()),
            "Dense": float(ops.dense)}


def test_the_data_makes_the_groupings_differ():
    x = _data()
    assert _neurobench(x, 6)["Effective_MACs"] != _neurobench(x, 1)["Effective_MACs"]


@pytest.mark.parametrize("rule, batch_size", [("neurobench", 6), ("neurobench-sample", 1)])
def test_nmtc_rule_equals_neurobench(rule, batch_size):
    x = _data()
    want = _neurobench(x, batch_size)
    got = _nmtc(x, rule)
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert got[key] == pytest.approx(want[key]), (key, got, want)
