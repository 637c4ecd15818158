"""``device=``/``--device``: a GPU run gives, bit for bit, what the CPU run
gives and what Intel recorded (loihi numerics), and draws the same RSM masks;
a device the machine lacks is refused in one line. The GPU tests skip (with
the reason) on a machine without CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nmtoolchain import ir
from nmtoolchain.errors import BadInputError
from simulators.cycle import Simulator

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine: GPU parity not checked")


def _mask_graph() -> ir.Graph:
    g = ir.Graph()
    g.add("x", ir.Input((4, 5)))
    g.add("m", ir.SpikeMask(p=0.4, seed=7), ["x"])
    g.add("y", ir.Output(), ["m"])
    return g


def test_unknown_device_is_refused_in_one_line():
    with pytest.raises(BadInputError, match="not a torch device"):
        Simulator(_mask_graph(), "float", device="gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_in_one_line():
    with pytest.raises(BadInputError, match="no CUDA device"):
        Simulator(_mask_graph(), "float", device="cuda")


def test_spike_masks_are_drawn_from_the_seeded_cpu_generator():
    # independent reference: torch's CPU generator seeded by the documented rule
    # (SeedSequence of run seed 0, the op's seed 7, "seed given", first run), one
    # draw of the input's shape per step, keep where u >= p
    steps = 6
    res = Simulator(_mask_graph(), "float").run(torch.ones(2, 4, 5), steps)
    w = np.random.SeedSequence([0, 7, 0, 0]).generate_state(2)
    gen = torch.Generator().manual_seed(int(w[0]) << 31 ^ int(w[1]))
    want = torch.stack([(torch.rand((2, 4, 5), generator=gen) >= 0.4).float()
                        for _ in range(steps)], 1)
    assert torch.equal(res.outputs["y"], want)


@needs_cuda
def test_spike_masks_on_cuda_equal_the_cpu_masks():
    x = torch.ones(3, 4, 5)
    cpu = Simulator(_mask_graph(), "float").run(x, 8).outputs["y"]
    gpu = Simulator(_mask_graph(), "float", device="cuda").run(x, 8).outputs["y"]
    assert torch.equal(cpu, gpu.cpu())


@needs_cuda
@pytest.mark.parametrize("triton", ["0", "1"], ids=["torch-loops", "triton-kernel"])
def test_pilotnet_lif_on_cuda_equals_the_cpu_run_and_intels_recording(intel_netx, triton,
                                                                     monkeypatch):
    from nmtoolchain.frontends.netx_loader import load_netx
    from simulators.cycle import fused_triton

    monkeypatch.setenv("NMTC_TRITON", triton)
    if triton == "1" and not fused_triton.available("cuda"):
        pytest.skip("Triton is not installed with this torch: its CUBA kernel not checked")

    root = intel_netx / "gts/pilotnet_lif"
    image = np.load(root / "image.npy").transpose(2, 1, 0)
    x = torch.as_tensor(image[None].astype(np.float32))
    graph = load_netx(root / "network.net")
    cpu = Simulator(graph, "loihi", record="neurons", reset_interval=16).run(x, 17)
    gpu = Simulator(graph, "loihi", record="neurons", reset_interval=16,
                    device="cuda").run(x, 17).to_cpu()
    for name, v in cpu.recorded.items():
        assert torch.equal(v.double(), gpu.recorded[name].double()), name
    for node, series in cpu.counts.nodes.items():
        for key, arr in series.items():
            np.testing.assert_array_equal(arr, gpu.counts.nodes[node][key], err_msg=node + key)
    names = {"layer1_neuron": "conv-0", "layer5_neuron": "conv-4", "layer9_neuron": "fc-2"}
    for name, f in names.items():
        gt = np.load(root / f"{f}.npy")
        gt = gt.transpose([gt.ndim - 1] + list(range(gt.ndim - 2, -1, -1))).astype(np.int64)
        np.testing.assert_array_equal(gpu.recorded[name][0].numpy().astype(np.int64), gt[:17],
                                      err_msg=name)
