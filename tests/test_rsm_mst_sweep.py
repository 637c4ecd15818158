"""RSM on the mini-MST: the spiking view of P·V and the (1-p)² law of Q·Kᵀ on the
bundled checkpoint, checked against numpy on recorded tensors; the sweep
script's attention layout and its two energy views (benchmarks/rsm_masking_sweep.py)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.energy import compare_profiles
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.methods.rsm import apply_rsm, score_value_matmuls, spiking_view_counts
from nmtoolchain.models import load_checkpoint
from simulators.cycle import simulate

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "nmtoolchain" / "data" / "digits_mini_mst.pt"
B, T = 32, 16  # test images, steps


@pytest.fixture(scope="module")
def bundled():
    module, meta = load_checkpoint(BUNDLED)
    snn = convert_mst(graph_from_module(module, (1, 8, 8)))
    return snn, meta["config"]


@pytest.fixture(scope="module")
def x():
    return load_digits_split().x_test[:B]


def _qk(snn):
    """The Q·Kᵀ MatMul: the one whose two operands are both reached from q/k masks."""
    names = [n.name for n in snn if n.op_name == "MatMul"
             and not any(m["matmul"] == n.name for m in score_value_matmuls(snn))]
    return names[0]  # the first block's (W-MSA)


def test_spiking_view_on_the_mini_mst_equals_recorded_passed_score_spikes_times_head_dim(
        bundled, x):
    snn, cfg = bundled
    d = int(cfg["dim"]) // int(cfg["heads"])  # V's last dimension: the head width
    g = apply_rsm(snn, 0.5, preset="mst", seed=3)
    pvs = score_value_matmuls(g)
    assert len(pvs) == int(cfg["depth"])  # one P·V per block
    res = simulate(g, x, T, record=[m["mask"] for m in pvs])
    view = spiking_view_counts(g, res.counts)
    for m in pvs:
        assert g[m["mask"]].annotations["rsm_role"] == "score" and m["d"] == d
        passed = res.recorded[m["mask"]].numpy()  # (B, T, windows, heads, n, n)
        want = np.count_nonzero(passed.reshape(B, T, -1), axis=(0, 2)) * d
        np.testing.assert_array_equal(view.counter(m["matmul"], "synops"), want)
        assert not view.counter(m["matmul"], "macs").any()
        assert res.counts.counter(m["matmul"], "macs").sum() > 0  # the run's counts untouched
    # every other node and counter is copied unchanged
    rebooked = {m["matmul"] for m in pvs}
    for n in res.counts.order:
        if n not in rebooked:
            for k, series in res.counts.nodes.get(n, {}).items():
                np.testing.assert_array_equal(view.counter(n, k), series)


def test_qk_synops_at_p_075_are_keep_squared_of_p_0_within_binomial_tolerance(bundled, x):
    snn, _ = bundled
    p, keep = 0.75, 0.25
    qk = _qk(snn)
    left, right = snn[qk].inputs
    full = simulate(apply_rsm(snn, 0.0, preset="mst"), x, T, record=[left, right])
    # unit = (image, step, window, head, channel): a = Q spikes, b = K spikes of that channel
    a = np.count_nonzero(full.recorded[left].numpy(), axis=-2).astype(float)   # (.., n, dh)
    b = np.count_nonzero(full.recorded[right].numpy(), axis=-1).astype(float)  # (.., dh, n)
    s0 = float((a * b).sum())
    assert full.counts.total("synops", [qk]) == s0  # the p = 0 count is Σ a·b, by numpy
    masked = simulate(apply_rsm(snn, p, preset="mst", seed=1), x, T, record=[left, right])
    s = masked.counts.total("synops", [qk])
    # masked: A ~ Bin(a, keep), B ~ Bin(b, keep) independent per unit (q, k spikes upstream of
    # the masks are unchanged); E[AB] = keep² a b, Var = E[A²]E[B²] - (E[A]E[B])²
    ea2 = a * keep * p + (a * keep) ** 2
    eb2 = b * keep * p + (b * keep) ** 2
    sd = math.sqrt(float((ea2 * eb2 - (a * b * keep ** 2) ** 2).sum()))
    assert s0 > 5e4 and 5 * sd / s0 < 0.01, (s0, sd)  # enough coincidences for a sharp test
    assert abs(s / s0 - keep ** 2) < 5 * sd / s0, (s / s0, sd / s0)
    assert abs(s / s0 - keep) > 0.1  # not the one-operand factor
    # seeded exact check: the count equals the coincidences of the recorded masked operands
    ma = np.count_nonzero(masked.recorded[left].numpy(), axis=-2).astype(float)
    mb = np.count_nonzero(masked.recorded[right].numpy(), axis=-1).astype(float)
    assert s == float((ma * mb).sum())


def _sweep_module():
    spec = importlib.util.spec_from_file_location("rsm_masking_sweep",
                                                  ROOT / "benchmarks" / "rsm_masking_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_attention_layout_names_the_mini_mst_attention_nodes(bundled):
    snn, cfg = bundled
    layout = _sweep_module().attention_layout(apply_rsm(snn, 0.5, preset="mst"))
    assert len(layout) == int(cfg["depth"])
    block = layout[0]
    src = {k: snn[v].annotations.get("source") for k, v in block.items() if v}
    assert src["q"] == "blocks.0.attn.q" and src["k"] == "blocks.0.attn.k"
    assert src["v"] == "blocks.0.attn.v" and src["proj"] == "blocks.0.attn.proj"
    assert src["score_if"] == "blocks.0.attn.attn_if"
    assert src["score_mask"] == "blocks.0.attn.mask_score"
    assert src["attn_v_if"] == "blocks.0.attn.attn_v_if"
    assert src["fc1"] == "blocks.0.fc1" and src["fc2"] == "blocks.0.fc2"
    assert snn[block["qk"]].op_name == snn[block["pv"]].op_name == "MatMul"
    assert snn[block["pv"]].inputs[0] == [n.name for n in snn if n.op_name == "Softmax"][0]


def test_the_two_views_differ_in_energy_by_the_rebooked_pv_ops_only(bundled, x):
    """cmos45nm under the fanout rule: E = 0.9 pJ x synops + 4.6 pJ x MACs (Horowitz 45 nm),
    so E(spiking) - E(graph) = 0.9 x P·V synops(spiking) - 4.6 x P·V MACs(graph)."""
    snn, _ = bundled
    g = apply_rsm(snn, 0.75, preset="mst", seed=2)
    counts = simulate(g, x[:16], 8).counts
    view = spiking_view_counts(g, counts)
    pv = [m["matmul"] for m in score_value_matmuls(g)]  # every block's P·V
    e = {k: compare_profiles(c, ["cmos45nm"], rule="fanout", graph=g).total["cmos45nm"]
         for k, c in (("graph", counts), ("spiking", view))}
    want = (0.9 * view.total("synops", pv) - 4.6 * counts.total("macs", pv)) / 16
    assert e["spiking"] - e["graph"] == pytest.approx(want, rel=1e-6)
    assert want != 0


def test_sweep_masked_path_of_mst_plus_mlp_adds_exactly_both_mlp_linears(bundled, x):
    """The sweep's per-preset masked path (shared p = 0 row): 'mst+mlp' - 'mst' =
    the counted work of fc1 and fc2 of every block, found by their torch source."""
    snn, cfg = bundled
    sweep = _sweep_module()
    g = apply_rsm(snn, 0.0, preset="mst")
    n = 8
    row = sweep.measure_mst(g, x[:n], np.zeros(n, dtype=int), 4, ("q", "k", "score"))
    res = simulate(g, x[:n], 4)  # the same run again (p = 0: no mask draws anything)
    mlp = [v.name for v in g if v.annotations.get("source") in
           {f"blocks.{i}.{fc}" for i in range(int(cfg["depth"])) for fc in ("fc1", "fc2")}]
    assert len(mlp) == 2 * int(cfg["depth"])
    want = (res.counts.total("synops", mlp) + res.counts.total("macs", mlp)) / n
    paths = row["work"]["graph"]["path_of"]
    assert want > 0
    assert paths["mst+mlp"] - paths["mst"] == pytest.approx(want, rel=1e-9)
    assert paths["mst"] == pytest.approx(row["work"]["graph"]["path"], rel=1e-12)
