"""The published Spikformer with spikingjelly's own MultiStepLIFNode (the
neuron the published code imports; tau=2, detach_reset, torch backend) as the
producer: exported by torch.onnx or pickled whole (TorchScript cannot hold its
surrogate-spike autograd Function), loaded into the IR, simulated in nmtc's
float simulator. Reference: spikingjelly's forward (its neurons' outputs,
caught by forward hooks) and the model's logits."""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch

from nmtoolchain.frontends import load_model
from simulators.cycle.interpreter import Simulator
from onnx_export import torchscript_exporter
from spikformer_published_snn import MultiStepLIF, PublishedSpikformerSNN, randomize

with contextlib.redirect_stdout(io.StringIO()):  # its import prints dataset-toolbox notes
    neuron = pytest.importorskip("spikingjelly.clock_driven.neuron",
                                 reason="spikingjelly is not installed (extra 'interop')")
    functional = pytest.importorskip("spikingjelly.clock_driven.functional")

T = 4


def _with_spikingjelly_neurons(model: torch.nn.Module) -> torch.nn.Module:
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, MultiStepLIF):
                setattr(mod, name, neuron.MultiStepLIFNode(
                    tau=2.0, v_threshold=child.v_threshold, detach_reset=True, backend="torch"))
    return model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = _with_spikingjelly_neurons(
        PublishedSpikformerSNN(1, 32, 1, 2, 2, 10, (False, False, False, True), T=T))
    return randomize(model, gain=4.0)


def _check(graph, model: torch.nn.Module, key: str) -> None:
    functional.reset_net(model)
    spikes = {}
    for name, m in model.named_modules():
        if isinstance(m, neuron.MultiStepLIFNode):
            m.register_forward_hook(lambda m, i, o, name=name: spikes.__setitem__(name, o))
    x = torch.rand(5, 1, 8, 8) * 3
    with torch.no_grad():
        ref = model(x).numpy()
    lifs = {n.annotations[key]: n for n in graph if n.op_name == "LIF"}
    assert set(lifs) == set(spikes)
    res = Simulator(graph, record=[n.name for n in lifs.values()]).run(x.numpy(), T)
    for name, want in spikes.items():
        want = want.numpy()
        assert 0 < want.mean() < 1, name
        got = res.recorded[lifs[name].name].transpose(0, 1).numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    out = next(iter(res.outputs.values())).numpy().mean(1)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_spikingjelly_spikformer_from_onnx_simulates_spike_for_spike(tmp_path):
    model = _model()
    path = tmp_path / "spikformer_sj.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand(2, 1, 8, 8), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
                          opset_version=17, **torchscript_exporter())
    _check(load_model(path), model, "module")


def test_pickled_spikingjelly_spikformer_simulates_spike_for_spike(tmp_path):
    model = _model()
    path = tmp_path / "spikformer_sj_module.pt"
    torch.save(model, path)
    graph = load_model(path, input_shape=(1, 8, 8), allow_pickle=True)
    assert graph.metadata["source"]["format"] == "pickle"
    _check(graph, model, "source")
