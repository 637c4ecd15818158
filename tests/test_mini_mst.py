"""The mini-MST (nmtoolchain.models.mst): what the torch loader makes of it,
its MST/QCFS conversion, and the float-simulated SNN against the torch ANN;
plus the loader's Bias (tensor + constant) and Mean translations."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain.accuracy import accuracy_vs_timesteps, ann_accuracy
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.frontends import load_model
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.models import build_model, load_checkpoint
from nmtoolchain.nn import QCFS
from simulators.cycle import Simulator

BUNDLED = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_mini_mst.pt"


@pytest.fixture(scope="module")
def trained():
    module, meta = load_checkpoint(BUNDLED)
    return module, meta


@pytest.fixture(scope="module")
def ann_graph(trained):
    return graph_from_module(trained[0], (1, 8, 8))


def test_bundled_checkpoint_loads_with_two_matmuls_softmax_and_bias_per_block(trained):
    graph = load_model(BUNDLED)
    ops = Counter(n.op_name for n in graph)
    cfg = trained[1]["config"]
    depth = cfg["depth"]
    shifted = depth // 2 if cfg.get("shift") else 0  # odd blocks (Swin)
    assert shifted >= 1 and cfg.get("final_norm")  # the bundled model has both
    # per block the position bias; per shifted block the -100 mask too, and a roll in and out
    assert ops["MatMul"] == 2 * depth and ops["Softmax"] == depth
    assert ops["Bias"] == depth + shifted and ops["Roll"] == 2 * shifted
    assert ops["Mean"] == 1 and ops["LayerNorm"] == 1
    roles = sorted(n.annotations.get("rsm_role") for n in graph if n.op_name == "SpikeMask")
    # the MLP mask covers the inputs of both MLP linears
    assert roles == sorted(["q", "k", "score", "mlp_in", "mlp_in"] * depth)


def _swin_mask(size: int, window: int, shift: int) -> np.ndarray:
    """Swin's SW-MSA mask written out with numpy: label the 9 regions the shift
    creates, partition into windows, -100 where two tokens' labels differ."""
    img = np.zeros((size, size))
    label = 0
    for hs in (slice(0, size - window), slice(size - window, size - shift),
               slice(size - shift, size)):
        for ws in (slice(0, size - window), slice(size - window, size - shift),
                   slice(size - shift, size)):
            img[hs, ws] = label
            label += 1
    wins = [img[r:r + window, c:c + window].reshape(-1)
            for r in range(0, size, window) for c in range(0, size, window)]
    return np.stack([np.where(w[None, :] != w[:, None], -100.0, 0.0) for w in wins])


def test_shifted_block_adds_swins_mask_and_rolls_by_half_a_window(trained, ann_graph):
    from nmtoolchain.models.mst import MSTBlock

    blocks = [m for m in trained[0].modules() if isinstance(m, MSTBlock)]
    assert [b.shift for b in blocks] == [0, 1]  # 4x4 grid, window 2: odd block shifts 1
    masks = [n.op.bias for n in ann_graph if n.op_name == "Bias" and n.op.bias.min() < -50]
    assert len(masks) == 1
    np.testing.assert_array_equal(masks[0].reshape(4, 4, 4), _swin_mask(4, 2, 1))
    rolls = [n.op for n in ann_graph if n.op_name == "Roll"]
    assert [(r.shifts, r.axes) for r in rolls] == [((-1, -1), (0, 1)), ((1, 1), (0, 1))]


def test_loaded_bias_holds_the_relative_position_table_by_offset(trained, ann_graph):
    attn = trained[0].blocks[0].attn
    table = attn.rpb_table.detach().numpy()  # ((2w-1)², heads), w = 2: offsets -1..1
    bias = next(n for n in ann_graph if n.op_name == "Bias").op.bias
    coords = [(i // 2, i % 2) for i in range(4)]
    for h in range(table.shape[1]):
        for i, (yi, xi) in enumerate(coords):
            for j, (yj, xj) in enumerate(coords):
                want = table[(yi - yj + 1) * 3 + (xi - xj + 1), h]
                assert bias[h, i, j] == pytest.approx(want, abs=1e-7)


def test_ann_graph_one_step_equals_the_torch_module(trained, ann_graph):
    x = load_digits_split().x_test[:64]
    with torch.no_grad():
        want = trained[0](torch.from_numpy(x)).numpy()
    out = next(n.name for n in ann_graph.outputs())
    got = Simulator(ann_graph, "float", count=False).run(x, 1).outputs[out][:, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conversion_gives_if_with_lambda_threshold_and_half_lambda_precharge(trained, ann_graph):
    snn = convert_mst(ann_graph)
    lams = sorted(float(m.threshold) for m in trained[0].modules() if isinstance(m, QCFS))
    ifs = [n for n in snn if n.op_name == "IF"]
    assert "QCFS" not in {n.op_name for n in snn}
    assert sorted(float(n.op.v_threshold) for n in ifs) == pytest.approx(lams, rel=1e-6)
    for n in ifs:
        assert float(n.op.v_init) == pytest.approx(float(n.op.v_threshold) / 2, rel=1e-6)
        assert n.op.reset == "subtract" and n.op.compare == ">="
        (scale,) = snn.users(n.name)
        assert scale.op_name == "Scale"
        assert float(scale.op.scale) == pytest.approx(float(n.op.v_threshold), rel=1e-6)


def test_conversion_keeps_attention_ops_per_step(trained, ann_graph):
    """The torch module says how many attention ops there are (two matmuls, a
    softmax and a position bias per attention, one mean, its spike masks); the
    SNN keeps each, and each computes on that step's values: numpy's matmul and
    softmax of the recorded inputs, plus the module's own bias table, every step."""
    from nmtoolchain.models.mst import WindowAttention
    from nmtoolchain.nn import SpikeMask

    module = trained[0]
    attns = [m for m in module.modules() if isinstance(m, WindowAttention)]
    shifted = [a for a in attns if a.shifted]
    want = {"MatMul": 2 * len(attns), "Softmax": len(attns),
            "Bias": len(attns) + len(shifted), "Mean": 1,
            "SpikeMask": sum(isinstance(m, SpikeMask) for m in module.modules())}
    snn = convert_mst(ann_graph)
    got = Counter(n.op_name for n in snn)
    assert {op: got[op] for op in want} == want
    kept = snn.metadata["conversion"]["per_step_analog"]
    assert {op: len(kept[op]) for op in want} == want
    nodes = [n for n in snn if n.op_name in ("MatMul", "Softmax", "Bias")]
    record = sorted({n.name for n in nodes} | {i for n in nodes for i in n.inputs})
    steps = 3
    rec = Simulator(snn, "float", record=record, count=False).run(
        load_digits_split().x_test[:2], steps).recorded
    val = {k: v.numpy().astype(np.float64) for k, v in rec.items()}
    # the module's bias table, per Bias node (the graph keeps torch's call order)
    # (and, after the shifted attention's position bias, its shift mask)
    constants = []
    for a in attns:
        constants.append(a.rel_bias.numpy().astype(np.float64))
        if a.shifted:
            constants.append(a.shift_mask.numpy().astype(np.float64))
    table = dict(zip([n.name for n in nodes if n.op_name == "Bias"], constants))
    for n in nodes:
        ins = [val[i] for i in n.inputs]
        out = val[n.name]
        for t in range(steps):
            if n.op_name == "MatMul":
                want_t = np.matmul(ins[0][:, t], ins[1][:, t])
            elif n.op_name == "Softmax":
                z = ins[0][:, t] - ins[0][:, t].max(axis=-1, keepdims=True)
                want_t = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
            else:
                want_t = ins[0][:, t] + table[n.name]
            np.testing.assert_allclose(out[:, t], want_t, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{n.name} at step {t}")
    assert any(val[n.name].std() > 0 for n in nodes if n.op_name == "MatMul")


def test_converted_snn_at_64_steps_is_within_3_points_of_the_torch_ann(trained, ann_graph):
    split = load_digits_split()
    x, y = split.x_test[:150], split.y_test[:150]
    ann = ann_accuracy(trained[0], x, y)
    ((t, snn),) = accuracy_vs_timesteps(convert_mst(ann_graph), x, y, [64])
    assert ann > 0.7
    assert abs(snn - ann) <= 0.03, (ann, snn)


def test_snn_at_one_step_is_far_below_the_ann(trained, ann_graph):
    """Negative control: conversion error is large at T = 1 (seeds.md §1.2)."""
    split = load_digits_split()
    x, y = split.x_test[:150], split.y_test[:150]
    ((_, snn1),) = accuracy_vs_timesteps(convert_mst(ann_graph), x, y, [1])
    assert snn1 < ann_accuracy(trained[0], x, y) - 0.2


def test_mask_p_reaches_the_ir_spike_masks():
    model = build_model("mini_mst", {"mask_p": 0.75, "mlp_mask_p": 0.25}).eval()
    graph = graph_from_module(model, (1, 8, 8))
    ps = {n.annotations["rsm_role"]: n.op.p for n in graph if n.op_name == "SpikeMask"}
    assert ps == {"q": 0.75, "k": 0.75, "score": 0.75, "mlp_in": 0.25}


class _BiasMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.table = nn.Parameter(torch.randn(3, 4, generator=gen))
        self.register_buffer("offset", torch.randn(1, 4, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.table          # constant on the right
        y = self.offset + y         # constant on the left, with a batch axis of 1
        return torch.mean(y, dim=1) + y.mean(-2)


def test_bias_and_mean_loading_matches_torch():
    net = _BiasMean().eval()
    graph = graph_from_module(net, (3, 4))
    ops = Counter(n.op_name for n in graph)
    assert ops["Bias"] == 2 and ops["Mean"] == 2
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = net(x).numpy()
    out = next(n.name for n in graph.outputs())
    got = Simulator(graph, "float", count=False).run(x.numpy(), 1).outputs[out][:, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_patch_merging_variant_translates_and_converts():
    """merge=True adds Swin's patch merging (2x2 tokens -> 4C -> BN -> Linear -> QCFS) and a
    block at half resolution: the IR graph equals the torch module at one step, and the
    converted SNN runs with the reduction as an IF layer."""
    torch.manual_seed(0)
    model = build_model("mini_mst", {"dim": 8, "heads": 2, "merge": True, "window": 2}).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d) or isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = load_digits_split().x_test[:16]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    graph = graph_from_module(model, (1, 8, 8))
    out = next(n.name for n in graph.outputs())
    got = Simulator(graph, "float", count=False).run(x, 1).outputs[out][:, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    snn = convert_mst(graph)
    assert any(n.op_name == "IF" and "reduction" in n.name for n in snn)
    res = Simulator(snn, "float", count=False).run(x, 4).outputs[out]
    assert tuple(res.shape) == (16, 4, 10)
