"""Spikformer family (issue #11): neurons, models, counting, energy by hand.

References: hand-derived neuron traces and counts (seeds.md §1.1, §1.3),
torch's own parameter count and forward pass, and the paper's energy formula
recomputed from torch forward hooks (independent of nmtc's simulator).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain import api
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.models import build_model, load_checkpoint
from nmtoolchain.models.spikformer import Spikformer, spikformer_4_384_cifar, spikformer_digits
from nmtoolchain.nn import LIFNeuron, PLIFNeuron
from nmtoolchain.report.inspect import inspect_graph

BUNDLED = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_spikformer.pt"


def test_lif_decay_input_hard_reset_by_hand():
    # τ = 2: h = v + (x - v) / 2; fire at h >= 1; hard reset to 0
    # x = 1.5: h = 0.75; x = 1.5: h = 0.75 + 0.375 = 1.125 -> spike, v = 0;
    # x = 0.4: h = 0.2; x = 2.5: h = 0.2 + 1.15 = 1.35 -> spike
    lif = LIFNeuron(tau=2.0, reset="to_reset", v_reset=0.0)
    x = torch.tensor([1.5, 1.5, 0.4, 2.5]).reshape(1, 4, 1)
    assert lif(x)[0, :, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert float(lif.v) == pytest.approx(0.0)


def test_plif_initial_tau_and_loader_tau():
    plif = PLIFNeuron(init_tau=2.0)
    assert float(plif.w) == 0.0 and plif.current_tau() == pytest.approx(2.0)
    with torch.no_grad():
        plif.w.fill_(0.7)  # sigmoid(0.7) = 0.66819: τ = 1.49658
    g = graph_from_module(nn.Sequential(nn.Linear(3, 4), plif), (3,))
    lif = next(n for n in g.topological_order() if n.op_name == "LIF")
    assert float(lif.op.tau) == pytest.approx(1.0 / (1.0 / (1.0 + np.exp(-0.7))), rel=1e-6)
    assert lif.op.reset == "to_reset"


def test_spikformer_4_384_parameters_and_macs_by_hand():
    model = Spikformer(**spikformer_4_384_cifar())
    g = graph_from_module(model.eval(), (3, 32, 32))
    tot = g.totals()
    d, hidden, blocks = 384, 1536, 4
    sps_w = 9 * (3 * 48 + 48 * 96 + 96 * 192 + 192 * 384 + 384 * 384)  # convs, no bias
    sps_bn = 2 * (48 + 96 + 192 + 384 + 384)
    block = 4 * (d * d + d) + 4 * 2 * d + (d * hidden + hidden) + 2 * hidden \
        + (hidden * d + d) + 2 * d
    head = d * 10 + 10
    assert tot["parameters"] == sps_w + sps_bn + blocks * block + head == 9_324_730
    assert tot["parameters"] == sum(p.numel() for p in model.parameters())
    # buffers: BN running mean and var, plus the constant 0.125 of each block
    bn_channels = (48 + 96 + 192 + 384 + 384) + blocks * (4 * d + hidden + d)
    assert tot["buffers"] == 2 * bn_channels + blocks
    # MACs per step: SPS convs at 32, 32, 32, 16 and 8 pixels a side (pools after conv2, conv3)
    sps = (32 * 32 * 27 * 48 + 32 * 32 * 9 * 48 * 96 + 32 * 32 * 9 * 96 * 192
           + 16 * 16 * 9 * 192 * 384 + 8 * 8 * 9 * 384 * 384)
    n, heads, dh = 64, 12, 32
    qk = heads * n * n * dh  # Q·Kᵀ: every (i, j) pair, dh products each = 1,572,864
    av = heads * n * dh * n  # A·V: every (i, channel), n products each
    linears = n * (4 * d * d + 2 * d * hidden)
    assert tot["macs"] == sps + blocks * (linears + qk + av) + d * 10 == 934_039_296
    rows = {r["name"]: r for r in inspect_graph(g)["nodes"]}
    mm = [r for r in rows.values() if r["op"] == "MatMul"]
    assert len(mm) == 2 * blocks and sorted({r["macs"] for r in mm}) == [qk] == [av]


def test_autost_variant_per_block_heads_and_ratios_match_torch():
    cfg = {**spikformer_digits("autost"), "depth": 2, "heads": [2, 4], "mlp_ratio": [3, 2]}
    model = build_model("spikformer", cfg).eval()
    assert model.blocks[1].attn.heads == 4
    assert model.blocks[0].mlp.fc1_linear.out_features == 3 * 32
    with torch.no_grad():  # a non-default learned leak must reach the IR
        model.blocks[0].mlp.fc1_lif.w.fill_(-0.5)
    x = torch.rand(3, 1, 8, 8)
    model.reset_states()
    with torch.no_grad():
        ref = model(x.unsqueeze(1).expand(-1, 4, 1, 8, 8)).numpy()
    sim = api.simulate(model, x.numpy(), timesteps=4, input_shape=(1, 8, 8))
    out = np.asarray(next(iter(sim.outputs.values())))
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.fixture(scope="module")
def bundled():
    if not BUNDLED.exists():
        pytest.skip("the digits Spikformer checkpoint is not bundled")
    return load_checkpoint(BUNDLED)


def test_bundled_digits_spikformer_simulates_as_torch(bundled):
    from nmtoolchain.datasets import load_digits_split

    model, meta = bundled
    split = load_digits_split()
    x = split.x_test
    model.reset_states()
    with torch.no_grad():
        ref = model(torch.from_numpy(x).unsqueeze(1).expand(-1, 4, 1, 8, 8)).numpy()
    acc_torch = float((ref.mean(1).argmax(-1) == split.y_test).mean())
    assert acc_torch > 0.85
    sim = api.simulate(str(BUNDLED), x[:64], timesteps=4)
    out = np.asarray(next(iter(sim.outputs.values())))
    np.testing.assert_allclose(out, ref[:64], atol=1e-4)


def _hand_energy(model, x, steps):
    """The paper's E = 4.6 pJ · FLOPs(first conv) · T + 0.9 pJ · Σ fr · T · FLOPs,
    from torch forward hooks: per weighted layer, FLOPs per step from its shapes
    and fr = its mean input value; per SSA product, fr of Q (Q·Kᵀ) and of V (A·V)."""
    rates, flops = {}, {}

    def hook(name):
        def f(m, inp, out):
            xin = inp[0].detach()
            if isinstance(m, nn.Conv2d):
                per_step = out.shape[-2] * out.shape[-1] * m.out_channels * m.in_channels * 9
            else:  # Linear on (B, T, N, in)
                per_step = int(np.prod(xin.shape[2:-1])) * m.in_features * m.out_features
            flops[name] = per_step
            rates[name] = float(xin.mean())
        return f

    spikes = {}

    def lif_hook(name):
        def f(m, inp, out):
            spikes[name] = float(out.detach().mean())
        return f

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook(name))
        if name.endswith(("q_lif", "v_lif")):
            m.register_forward_hook(lif_hook(name))
    model.reset_states()
    with torch.no_grad():
        model(torch.from_numpy(x).unsqueeze(1).expand(-1, steps, *x.shape[1:]))
    first = "patch_embed.stages.0.0.module"
    e = 4.6 * flops[first] * steps
    e += 0.9 * sum(rates[n] * steps * flops[n] for n in flops if n != first)
    cfg = model.config
    tokens = 16
    for i, heads in enumerate(cfg["heads"]):
        prod = tokens * tokens * int(cfg["embed_dim"])  # heads · N · N · dh
        e += 0.9 * steps * prod * (spikes[f"blocks.{i}.attn.q_lif"]
                                   + spikes[f"blocks.{i}.attn.v_lif"])
    return e


def test_energy_under_spikformer_rule_equals_paper_formula_by_hand(bundled):
    from nmtoolchain.datasets import load_digits_split

    model, meta = bundled
    x = load_digits_split().x_test[:16]
    rep = api.report(str(BUNDLED), x, timesteps=4, profiles=["cmos45nm"])
    got = rep.energy_pj("cmos45nm")
    expected = _hand_energy(model, x, 4)
    assert got == pytest.approx(expected, rel=1e-6)
