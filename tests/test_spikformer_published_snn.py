"""The spiking Spikformer as the published code writes it (issue #11, build
item 3): time-major (T, B, ...) tensors and multi-step LIF loops over dim 0
(tests/spikformer_published_snn.py, plain torch), saved as TorchScript
(torch.jit.trace), as ONNX (torch.onnx.export) and as a pickled module,
loads into the IR and simulates in nmtc's float simulator as the module's own
forward: spike for spike at every LIF, logits to float tolerance. References: the producer module's forward
(its LIFs record their spikes), torch's parameter count, the hand derivation
of Spikformer-4-384's MACs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain.errors import NmtcError, UnsupportedOpError
from nmtoolchain.frontends import load_model
from simulators.cycle.interpreter import Simulator
from onnx_export import torchscript_exporter
from spikformer_published_snn import (MultiStepLIF, PublishedSpikformerSNN, lif_modules,
                                      randomize)

T = 4


def _small() -> PublishedSpikformerSNN:
    torch.manual_seed(0)
    return randomize(PublishedSpikformerSNN(1, 32, 1, 2, 2, 10, (False, False, False, True),
                                            T=T), gain=4.0)


def _trace(model: nn.Module, shape: tuple) -> torch.jit.ScriptModule:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning: the time loop is unrolled
        return torch.jit.trace(model, torch.rand((2,) + shape), check_trace=False)


def _export_onnx(model: nn.Module, shape: tuple, path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand((2,) + shape), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
                          opset_version=17, **torchscript_exporter())


def _module_of(node) -> str:
    """The torch module a LIF node came from (TorchScript: its source; ONNX: its scope)."""
    return node.annotations.get("module") or node.annotations["source"]


def _check_against_module(graph, model: PublishedSpikformerSNN, x: torch.Tensor) -> None:
    lifs = {_module_of(n): n for n in graph if n.op_name == "LIF"}
    producers = lif_modules(model)
    assert set(lifs) == set(producers)
    for m in producers.values():
        m.record = True
    with torch.no_grad():
        ref = model(x).numpy()
    res = Simulator(graph, record=[n.name for n in lifs.values()]).run(x.numpy(), T)
    for path, m in producers.items():
        node = lifs[path]
        assert float(node.op.v_threshold) == m.v_threshold and float(node.op.tau) == m.tau
        assert node.op.reset == "to_reset" and node.op.compare == ">="
        want = m.last_spikes.numpy()  # (T, B, ...)
        assert 0 < want.mean() < 1, path  # every LIF fires, and not always
        got = res.recorded[node.name].transpose(0, 1).numpy()
        np.testing.assert_array_equal(got, want, err_msg=path)
    out = next(iter(res.outputs.values())).numpy()  # (B, T, classes): head per step
    np.testing.assert_allclose(out.mean(1), ref, atol=1e-5)
    assert graph.metadata["output_decoding"]["method"] == "mean"
    assert graph.metadata["input_encoding"]["steps"] == T


def test_torchscript_trace_of_published_snn_simulates_spike_for_spike(tmp_path):
    model = _small()
    path = tmp_path / "spikformer_snn.pt"
    _trace(model, (1, 8, 8)).save(str(path))
    graph = load_model(path, input_shape=(1, 8, 8))
    assert {"MatMul", "Mean", "MaxPool2d", "BatchNorm", "Transpose"} <= {n.op_name for n in graph}
    assert graph.metadata["time_major"]["steps"] == T
    _check_against_module(graph, model, torch.rand(5, 1, 8, 8) * 3)


def test_onnx_export_of_published_snn_simulates_spike_for_spike(tmp_path):
    model = _small()
    path = tmp_path / "spikformer_snn.onnx"
    _export_onnx(model, (1, 8, 8), path)
    graph = load_model(path)
    assert {"MatMul", "Mean", "MaxPool2d", "Transpose"} <= {n.op_name for n in graph}
    assert graph.metadata["time_major"]["steps"] == T
    _check_against_module(graph, model, torch.rand(5, 1, 8, 8) * 3)


def test_onnx_time_loop_that_is_no_neuron_is_refused(tmp_path):
    path = tmp_path / "counter.onnx"
    _export_onnx(_TimeModel(_Counter(), nn.Flatten()), (6,), path)
    with pytest.raises(UnsupportedOpError, match="loop over time steps.*not spikes"):
        load_model(path)


def test_pickled_published_snn_loads_only_with_consent(tmp_path):
    model = _small()
    path = tmp_path / "module.pt"
    torch.save(model, path)
    with pytest.raises(NmtcError, match="pickle"):
        load_model(path, input_shape=(1, 8, 8))
    graph = load_model(path, input_shape=(1, 8, 8), allow_pickle=True)
    assert graph.metadata["source"]["format"] == "pickle"
    _check_against_module(graph, model, torch.rand(4, 1, 8, 8) * 3)


class _Counter(nn.Module):
    """A loop over time steps that outputs its running sum: no spiking neuron."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v, out = torch.zeros_like(x_seq[0]), []
        for t in range(x_seq.shape[0]):
            v = v + x_seq[t]
            out.append(v)
        return torch.stack(out)


class _TimeModel(nn.Module):
    def __init__(self, neuron: nn.Module, after_mean: nn.Module) -> None:
        super().__init__()
        self.fc, self.neuron, self.after_mean = nn.Linear(6, 6), neuron, after_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(3, 1, 1)
        t, b, c = x.shape
        x = self.fc(x.flatten(0, 1)).reshape(t, b, c)
        return self.after_mean(self.neuron(x).mean(0))


def test_a_time_loop_that_is_no_neuron_is_refused_naming_it(tmp_path):
    path = tmp_path / "counter.pt"
    _trace(_TimeModel(_Counter(), nn.Flatten()), (6,)).save(str(path))
    with pytest.raises(UnsupportedOpError, match="module 'neuron'.*not spikes"):
        load_model(path, input_shape=(6,))


def test_a_nonlinearity_after_the_time_mean_is_refused(tmp_path):
    path = tmp_path / "relu_after_mean.pt"
    _trace(_TimeModel(MultiStepLIF(), nn.ReLU()), (6,)).save(str(path))
    with pytest.raises(UnsupportedOpError, match="after_mean.*mean over time"):
        load_model(path, input_shape=(6,))


def test_other_lif_constants_are_identified_from_the_loop(tmp_path):
    # soft-reset (v_reset=None in spikingjelly) is written here as subtracting the threshold
    class SoftLIF(MultiStepLIF):
        def forward(self, x_seq):
            v, out = torch.zeros_like(x_seq[0]), []
            for t in range(x_seq.shape[0]):
                h = v + (x_seq[t] - v) / self.tau
                s = (h - self.v_threshold >= 0).to(x_seq.dtype)
                v = h - s * self.v_threshold
                out.append(s)
            return torch.stack(out)

    torch.manual_seed(1)
    model = _TimeModel(SoftLIF(tau=4.0, v_threshold=0.75), nn.Flatten()).eval()
    path = tmp_path / "soft.pt"
    _trace(model, (6,)).save(str(path))
    graph = load_model(path, input_shape=(6,))
    (lif,) = [n for n in graph if n.op_name == "LIF"]
    assert (float(lif.op.tau), float(lif.op.v_threshold), lif.op.reset) == (4.0, 0.75, "subtract")
    x = torch.randn(7, 6) * 3
    with torch.no_grad():
        ref = model(x).numpy()
    out = next(iter(Simulator(graph).run(x.numpy(), 3).outputs.values())).numpy().mean(1)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_published_snn_4_384_counts_from_torchscript(tmp_path):
    torch.manual_seed(0)
    model = randomize(PublishedSpikformerSNN())
    assert sum(p.numel() for p in model.parameters()) == 9_324_730
    path = tmp_path / "spikformer_4_384.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model, torch.rand(1, 3, 32, 32), check_trace=False).save(str(path))
    graph = load_model(path, input_shape=(3, 32, 32))
    tot = graph.totals()
    assert tot["parameters"] == 9_324_730  # the paper's 9.32 M
    # hand: SPS convs, 4 blocks of 64 tokens x (4 D² + 2 D·4D) + Q·Kᵀ + A·V, head
    sps = (32 * 32 * 27 * 48 + 32 * 32 * 9 * 48 * 96 + 32 * 32 * 9 * 96 * 192
           + 16 * 16 * 9 * 192 * 384 + 8 * 8 * 9 * 384 * 384)
    qk = av = 12 * 64 * 64 * 32
    assert tot["macs"] == sps + 4 * (64 * (4 * 384 * 384 + 2 * 384 * 1536) + qk + av) + 3840
    lifs = [n for n in graph if n.op_name == "LIF"]
    assert len(lifs) == 5 + 4 * 7
    assert sorted({float(n.op.v_threshold) for n in lifs}) == [0.5, 1.0]


def test_published_snn_4_384_counts_from_onnx(tmp_path):
    # T = 1 keeps the export short; the per-step counts do not depend on T
    torch.manual_seed(0)
    model = randomize(PublishedSpikformerSNN(T=1))
    path = tmp_path / "spikformer_4_384.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand(1, 3, 32, 32), str(path), input_names=["x"],
                          output_names=["y"], opset_version=17, **torchscript_exporter())
    tot = load_model(path).totals()
    # torch.onnx (eval mode) fuses each SPS BatchNorm2d into its conv: the BN's weight
    # and bias (2 per channel) become one conv bias per channel
    assert tot["parameters"] == 9_324_730 - (48 + 96 + 192 + 384 + 384)
    assert tot["macs"] == 934_039_296
