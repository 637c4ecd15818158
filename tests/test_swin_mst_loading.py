"""A Swin-style MST written with plain torch (tests/swin_mst_plain.py: windows,
shifted windows with Swin's -100 mask, patch merging by strided slicing, a fused
qkv split by chunk, QCFS where Swin has GELU) loads through torch.fx and through
TorchScript, converts with ``nmtc convert --method mst``, and its simulated SNN
equals, step by step, MST's own SNN evaluation re-implemented here in plain
torch: every QCFS module swapped for QCFS's ``ScaledNeuron`` (input / λ, IF with
threshold 1, soft reset, membrane pre-charged to 0.5, spikes times λ) and the
whole network called once per step on the same image (seeds.md §1.2, §2.3)."""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.errors import NmtcError, UnsupportedOpError
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.frontends.torchscript import graph_from_torchscript, save_torchscript
from nmtoolchain.ir import load_graph
from nmtoolchain.nn import QCFS
from simulators.cycle import Simulator

from swin_mst_plain import SwinMST, randomized

SHAPE = (1, 16, 16)


class ScaledIF(nn.Module):
    """QCFS's ScaledNeuron, written from seeds.md §1.2 (spikingjelly 0.0.0.0.12 IF)."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.lam
        if self.v is None:
            self.v = torch.full_like(x, 0.5)  # the pre-charge call on a constant 0.5
        self.v = self.v + x
        s = (self.v >= 1.0).to(x.dtype)  # Heaviside(0) = 1
        self.v = self.v - s
        return s * self.lam


def mst_snn_reference(model: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-step outputs (B, T, classes) of MST's snn_validate loop."""
    snn = copy.deepcopy(model).eval()

    def swap(m: nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, QCFS):
                setattr(m, name, ScaledIF(float(child.threshold)))
            else:
                swap(child)

    swap(snn)
    with torch.no_grad():
        return torch.stack([snn(x) for _ in range(steps)], dim=1)


@pytest.fixture(scope="module")
def model():
    return randomized(0)


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1))


def _outputs(graph, x, steps):
    out = Simulator(graph, "float", count=False).run(x, steps).outputs
    (y,) = out.values()
    return y


def test_fx_and_torchscript_give_the_same_ops_with_roll_slices_and_the_shift_mask(model):
    fx = graph_from_module(model, SHAPE)
    ts = graph_from_torchscript(torch.jit.script(model), SHAPE)
    count = Counter(n.op_name for n in fx)
    assert count == Counter(n.op_name for n in ts)
    # one shifted block at full resolution: roll in and roll back; the last block's
    # grid equals its window, so (as in Swin) it neither shifts nor partitions
    assert count["Roll"] == 2
    # 3 chunks of each fused qkv, 4 strided slices x 2 axes in the patch merging
    assert count["Slice"] == 3 * 3 + 4 * 2
    # per attention: the position bias, plus the -100 mask on the shifted one
    assert count["Bias"] == 3 + 1
    shift = [n for n in fx if n.op_name == "Bias" and n.op.bias.min() < -50]
    assert len(shift) == 1 and set(np.unique(shift[0].op.bias)) == {-100.0, 0.0}


@pytest.mark.parametrize("walker", ["fx", "torchscript"])
def test_ann_graph_equals_the_torch_module(model, images, walker):
    g = (graph_from_module(model, SHAPE) if walker == "fx"
         else graph_from_torchscript(torch.jit.script(model), SHAPE))
    with torch.no_grad():
        want = model(images)
    np.testing.assert_allclose(_outputs(g, images, 1)[:, 0].numpy(), want.numpy(),
                               rtol=1e-5, atol=1e-5)


def test_cli_converted_snn_equals_mst_snn_evaluation_step_by_step(model, images, tmp_path):
    from typer.testing import CliRunner

    from nmtoolchain.cli import app

    src = save_torchscript(model, tmp_path / "swin_mst.pt", SHAPE)
    out = tmp_path / "swin_mst_snn.nmir"
    res = CliRunner().invoke(app, ["convert", "--method", "mst", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    snn = load_graph(out)
    assert Counter(n.op_name for n in snn)["IF"] == 32
    steps = 24
    got = _outputs(snn, images, steps).numpy()
    want = mst_snn_reference(model, images, steps).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the SNN is not trivially constant: its running logits move over time
    assert np.abs(np.diff(want, axis=1)).max() > 0


def test_fx_converted_snn_equals_mst_snn_evaluation_step_by_step(model, images):
    snn = convert_mst(graph_from_module(model, SHAPE))
    steps = 24
    np.testing.assert_allclose(_outputs(snn, images, steps).numpy(),
                               mst_snn_reference(model, images, steps).numpy(),
                               rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ refusals
class _FoldsWindowsIntoBatch(nn.Module):
    """Swin's own window_partition: windows folded into the batch axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.permute(0, 2, 3, 1).reshape(b, h // 4, 4, w // 4, 4, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, 4, 4, c)


class _MaskedFillOnActivations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", torch.eye(3, 4, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(self.mask, 0.0)


class _AdvancedIndex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idx", torch.tensor([0, 2, 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.idx]


class _RollWithoutDims(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1)


class _RandomInForward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rand(3, 4)


@pytest.mark.parametrize("module, where, what", [
    (_FoldsWindowsIntoBatch(), "reshape", "batch axis"),
    (_MaskedFillOnActivations(), "masked_fill", "masked_fill of a tensor computed"),
    (_AdvancedIndex(), "getitem|aten::index", "advanced indexing|is not supported"),
    (_RollWithoutDims(), "roll", "without dims"),
    (_RandomInForward(), "rand", "not supported"),
])
@pytest.mark.parametrize("walker", ["fx", "torchscript"])
def test_unsupported_constructs_are_refused_naming_the_op(module, where, what, walker):
    """One line naming the file and the op. (torch.fx itself runs torch.rand(3, 4)
    at trace time, as it runs every call without traced arguments, so a random
    constant in forward is caught only through TorchScript.)"""
    if walker == "fx" and isinstance(module, _RandomInForward):
        pytest.skip("torch.fx evaluates calls without traced arguments while tracing")
    shape = (1, 8, 8) if isinstance(module, _FoldsWindowsIntoBatch) else (3, 4)
    with pytest.raises(UnsupportedOpError) as e:
        if walker == "fx":
            graph_from_module(module, shape, origin="m.pt")
        else:
            graph_from_torchscript(torch.jit.script(module), shape, origin="m.pt")
    msg = str(e.value)
    assert "m.pt" in msg, msg
    assert any(w in msg.lower() for w in where.split("|")), msg
    assert any(w in msg for w in what.split("|")), msg
    assert "\n" not in msg


class _GeluMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4)
        self.q = QCFS()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(self.fc2(torch.nn.functional.gelu(self.act(self.fc1(x)))))


@pytest.mark.parametrize("walker", ["fx", "torchscript"])
def test_gelu_loads_and_equals_torch_but_mst_conversion_refuses_it(walker):
    torch.manual_seed(0)
    m = _GeluMLP().eval()
    g = (graph_from_module(m, (4,)) if walker == "fx"
         else graph_from_torchscript(torch.jit.script(m), (4,)))
    x = torch.randn(5, 4)
    with torch.no_grad():
        want = m(x)
    np.testing.assert_allclose(_outputs(g, x, 1)[:, 0].numpy(), want.numpy(), atol=1e-6)
    with pytest.raises(UnsupportedOpError, match=r"node '.*act.*' \(GELU\).*QCFS"):
        convert_mst(g)


@pytest.mark.parametrize("target", ["nir", "loihi2", "onnx", "speck"])
def test_targets_refuse_roll_and_slice_by_name(model, target):
    from nmtoolchain.targets.registry import get_target

    snn = convert_mst(graph_from_module(model, SHAPE))
    refused = {r.op for r in get_target(target).refusals(snn)}
    assert {"Roll", "Slice"} <= refused, refused
