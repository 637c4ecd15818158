"""A Spikformer-style block in Loihi fixed point, run in Lava and in nmtc.

The block (N tokens of D features, one attention head, built directly in
quantized form: integer weights, Lava-CUBA ``loihi`` annotations)::

    x (N, D) spikes
    Q, K, V = LIF(Linear(x))            token-wise, each (N, D)
    S = Q @ Kᵀ                          (N, N) spike counts   [MatMul, Transpose]
    A = S @ V                           (N, D) counts         [MatMul]
    a = LIF(A)                          threshold scaled to the counts
    r1 = x + LIF(Linear(a))             residual               [Add]
    r2 = r1 + LIF(Linear(LIF(Linear(r1))))   MLP D -> 2D -> D, residual [Add]

Weights are random integers (seeded); thresholds are set so every neuron
layer fires some of the time on Bernoulli input. Nothing is trained: the
block exists to check that nmtc's simulator and Lava (Dense and LIF from
Lava, our processes for MatMul / Add / Transpose) agree bit for bit.

Run ``python examples/spikformer_block.py`` to build it, run both and print
each layer's activity and "identical" or the first divergence.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmtoolchain.ir import Add, CubaLIF, Graph, Input, Linear, MatMul, Output, Transpose
from nmtoolchain.numerics.loihi import LoihiCubaNeuron

#: Neuron layers of the block, in order (what a parity check records).
NEURON_LAYERS = ("q_lif", "k_lif", "v_lif", "attn_lif", "proj_lif", "mlp1_lif", "mlp2_lif")
#: The Lava-simulator-only nodes the block has.
ATTENTION_NODES = ("k_t", "scores", "attn_v", "res1", "res2")


def _lif(g: Graph, name: str, src: str, vth: int, *, idecay: int = 4096, vdecay: int = 1024,
         bias: int = 0) -> None:
    """A Loihi CUBA neuron node as the netx loader writes one."""
    g.add(name, CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=float(vth),
                        v_bias=np.float32(bias)), [src],
          numerics=LoihiCubaNeuron(i_decay=idecay, v_decay=vdecay, v_th_mant=vth,
                                   bias_mant=bias, bias_exp=6, ref_delay=1))


def _weights(rng: np.random.Generator, out: int, inp: int, lo: int, hi: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, (out, inp)).astype(np.float32)


def build_spikformer_block(tokens: int = 16, dim: int = 16, hidden: Optional[int] = None,
                           seed: int = 0) -> Graph:
    """The block above as a quantized IR graph (shapes inferred)."""
    rng = np.random.default_rng(seed)
    hidden = 2 * dim if hidden is None else hidden
    g = Graph({"source": {"path": "spikformer_block"}})
    g.add("x", Input((tokens, dim)))
    for p in ("q", "k", "v"):
        g.add(f"{p}_fc", Linear(_weights(rng, dim, dim, -50, 60)), ["x"])
        _lif(g, f"{p}_lif", f"{p}_fc", 120)
    g.add("k_t", Transpose((1, 0)), ["k_lif"])
    g.add("scores", MatMul(), ["q_lif", "k_t"])
    g.add("attn_v", MatMul(), ["scores", "v_lif"])
    # A ranges over 0..tokens*dim; a threshold of a few tokens' worth fires sometimes
    _lif(g, "attn_lif", "attn_v", dim // 2, vdecay=2048)
    g.add("proj_fc", Linear(_weights(rng, dim, dim, -50, 50)), ["attn_lif"])
    _lif(g, "proj_lif", "proj_fc", 60)
    g.add("res1", Add(), ["x", "proj_lif"])
    g.add("mlp1_fc", Linear(_weights(rng, hidden, dim, -50, 50)), ["res1"])
    _lif(g, "mlp1_lif", "mlp1_fc", 100)
    g.add("mlp2_fc", Linear(_weights(rng, dim, hidden, -50, 50)), ["mlp1_lif"])
    _lif(g, "mlp2_lif", "mlp2_fc", 80)
    g.add("res2", Add(), ["res1", "mlp2_lif"])
    g.add("out", Output(), ["res2"])
    return g.infer_shapes()


def block_input(tokens: int = 16, dim: int = 16, steps: int = 24, rate: float = 0.3,
                seed: int = 1) -> np.ndarray:
    """Bernoulli input spikes, (steps, tokens, dim) of 0/1."""
    rng = np.random.default_rng(seed)
    return (rng.random((steps, tokens, dim)) < rate).astype(np.int64)


def main() -> int:
    from exporters.loihi2.lava_graph import check_graph_parity, deployability
    from simulators.compare import format_divergence

    g = build_spikformer_block()
    x = block_input()
    div, lava, ours = check_graph_parity(g, x, x.shape[0])
    for name, rec in lava.items():
        print(f"{name:>10}: {int(np.count_nonzero(rec)):6d} non-zero of {rec.size}, "
              f"max {int(rec.max())}")
    dep = deployability(g)
    print("on Loihi 2 through netx:", ", ".join(dep["loihi2_netx"]))
    print("only in Lava's simulator:", ", ".join(dep["lava_simulator_only"]))
    print(format_divergence(div))
    return 0 if div is None else 1


if __name__ == "__main__":
    sys.exit(main())
