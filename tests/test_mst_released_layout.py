"""Item 1 of issue 18, "the released MST model's modules": the module layout of
MST's released code (tests/mst_released_layout.py, written from seeds.md §2.1)
is refused by both loaders in one line naming the op and the module path, and
the preset ``mst+mlp`` masks the inputs of BOTH MLP linears of the mini-MST.

What is refused, and why nmtc does not translate it: the released code folds
the windows into the batch axis (``window_partition``: ``view(-1, w, w, C)``,
B·windows rows), while nmtc's IR keeps axis 0 as the batch (an SNN keeps one
membrane state per sample); it draws RSM with ``torch.rand`` inside forward
(nmtc has the seeded ``SpikeMask``); and it computes the batch size with
``int()`` and checks it with ``assert``, which torch.fx cannot trace."""
from __future__ import annotations

import pytest
import torch

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.frontends.torchscript import graph_from_torchscript
from nmtoolchain.methods.rsm import apply_rsm
from nmtoolchain.models import build_model

from mst_released_layout import randomized

SHAPE = (1, 8, 8)


def _refusal(model, walker: str) -> str:
    with pytest.raises(UnsupportedOpError) as e:
        if walker == "fx":
            graph_from_module(model, SHAPE, origin="mst.pt")
        else:
            graph_from_torchscript(torch.jit.script(model), SHAPE, origin="mst.pt")
    msg = str(e.value)
    assert "mst.pt" in msg and "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("walker, op", [("fx", ".view()"), ("torchscript", "aten::view")])
def test_windows_folded_into_the_batch_axis_are_refused_naming_op_and_module(walker, op):
    msg = _refusal(randomized(0), walker)
    assert op in msg and "module 'layers.0'" in msg and "batch axis" in msg, msg


@pytest.mark.parametrize("flag, module, what", [
    ("released_masks", "'layers.0.attn'", "rand()"),  # RSM drawn with torch.rand in forward
    ("released_reverse", "'layers.0'", "int()"),  # int(windows.shape[0] / ...)
    ("released_assert", "'layers.0'", "control flow"),  # assert L == H * W
])
def test_released_code_constructs_fx_cannot_trace_are_refused_naming_module(flag, module, what):
    msg = _refusal(randomized(0, **{flag: True}), "fx")
    assert f"module {module}" in msg and what in msg, msg


def test_mst_plus_mlp_masks_the_inputs_of_both_mlp_linears():
    """Each block's two 'mlp_in' masks feed exactly the Linear whose weights are the
    torch module's fc1, resp. fc2 (compared by value), and get p; 'mst' leaves them at 0."""
    torch.manual_seed(0)
    model = build_model("mini_mst", {"dim": 8, "heads": 2, "depth": 2, "window": 2,
                                     "shift": True, "final_norm": True}).eval()
    g = graph_from_module(model, SHAPE)
    for preset, p_mlp in (("mst+mlp", 0.5), ("mst", 0.0)):
        masked = apply_rsm(g, 0.5, preset=preset, seed=4)
        fed = []
        for n in masked:
            if n.op_name == "SpikeMask" and n.annotations.get("rsm_role") == "mlp_in":
                assert n.op.p == p_mlp
                (user,) = masked.users(n.name)
                fed.append(user.op.weight)
        want = [lin.weight.detach().numpy() for blk in model.blocks for lin in (blk.fc1, blk.fc2)]
        assert len(fed) == len(want) == 4
        for got, w in zip(fed, want):
            assert got.shape == w.shape and (abs(got - w) < 1e-6).all()
