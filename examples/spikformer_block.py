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
Lava, our processes for MatMul / Add / Transpose) agree bit for bit. As our
processes and the simulator share their rules, the attention ops are also
recomputed with numpy from the Lava recordings of their inputs.

Run ``python examples/spikformer_block.py`` to build it, run both and print
each layer's activity, "identical" or the first divergence, and the numpy
check.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, NamedTuple, Optional

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmtoolchain.ir import Add, CubaLIF, Graph, Input, Linear, MatMul, Output, Transpose
from nmtoolchain.numerics.loihi import LoihiCubaNeuron

#: Neuron layers of the block, in order (what a parity check records).
NEURON_LAYERS = ("q_lif", "k_lif", "v_lif", "attn_lif", "proj_lif", "mlp1_lif", "mlp2_lif")
#: The Lava-simulator-only nodes the block has.
ATTENTION_NODES = ("k_t", "scores", "attn_v", "res1", "res2")


class NeuronLayer(NamedTuple):
    """One neuron layer of the block: its synapse (None: ``source`` drives the
    neuron directly), the node feeding it, and its Loihi CUBA constants (no
    current memory, iDecay 4096; no bias)."""

    synapse: Optional[str]
    source: str
    vth: int
    vdecay: int


def neuron_layers(dim: int = 16) -> Dict[str, NeuronLayer]:
    """The block's neuron layers, in order (NEURON_LAYERS)."""
    return {"q_lif": NeuronLayer("q_fc", "x", 120, 1024),
            "k_lif": NeuronLayer("k_fc", "x", 120, 1024),
            "v_lif": NeuronLayer("v_fc", "x", 120, 1024),
            # A ranges over 0..tokens*dim; a threshold of a few tokens' worth fires sometimes
            "attn_lif": NeuronLayer(None, "attn_v", dim // 2, 2048),
            "proj_lif": NeuronLayer("proj_fc", "attn_lif", 60, 1024),
            "mlp1_lif": NeuronLayer("mlp1_fc", "res1", 100, 1024),
            "mlp2_lif": NeuronLayer("mlp2_fc", "mlp1_lif", 80, 1024)}


def _lif(g: Graph, name: str, layer: NeuronLayer) -> None:
    """A Loihi CUBA neuron node as the netx loader writes one."""
    vth = layer.vth
    g.add(name, CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=float(vth),
                        v_bias=np.float32(0)), [layer.synapse or layer.source],
          numerics=LoihiCubaNeuron(i_decay=4096, v_decay=layer.vdecay, v_th_mant=vth,
                                   bias_mant=0, bias_exp=6, ref_delay=1))


def _weights(rng: np.random.Generator, out: int, inp: int, lo: int, hi: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, (out, inp)).astype(np.float32)


def build_spikformer_block(tokens: int = 16, dim: int = 16, hidden: Optional[int] = None,
                           seed: int = 0) -> Graph:
    """The block above as a quantized IR graph (shapes inferred)."""
    rng = np.random.default_rng(seed)
    hidden = 2 * dim if hidden is None else hidden
    spec = neuron_layers(dim)
    g = Graph({"source": {"path": "spikformer_block"}})
    g.add("x", Input((tokens, dim)))
    for p in ("q", "k", "v"):
        g.add(f"{p}_fc", Linear(_weights(rng, dim, dim, -50, 60)), ["x"])
        _lif(g, f"{p}_lif", spec[f"{p}_lif"])
    g.add("k_t", Transpose((1, 0)), ["k_lif"])
    g.add("scores", MatMul(), ["q_lif", "k_t"])
    g.add("attn_v", MatMul(), ["scores", "v_lif"])
    _lif(g, "attn_lif", spec["attn_lif"])
    g.add("proj_fc", Linear(_weights(rng, dim, dim, -50, 50)), ["attn_lif"])
    _lif(g, "proj_lif", spec["proj_lif"])
    g.add("res1", Add(), ["x", "proj_lif"])
    g.add("mlp1_fc", Linear(_weights(rng, hidden, dim, -50, 50)), ["res1"])
    _lif(g, "mlp1_lif", spec["mlp1_lif"])
    g.add("mlp2_fc", Linear(_weights(rng, dim, hidden, -50, 50)), ["mlp1_lif"])
    _lif(g, "mlp2_lif", spec["mlp2_lif"])
    g.add("res2", Add(), ["res1", "mlp2_lif"])
    g.add("out", Output(), ["res2"])
    return g.infer_shapes()


def block_input(tokens: int = 16, dim: int = 16, steps: int = 24, rate: float = 0.3,
                seed: int = 1) -> np.ndarray:
    """Bernoulli input spikes, (steps, tokens, dim) of 0/1."""
    rng = np.random.default_rng(seed)
    return (rng.random((steps, tokens, dim)) < rate).astype(np.int64)


def attention_by_numpy(x: np.ndarray, rec: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The Transpose, MatMul and Add nodes recomputed with numpy from the
    recordings of their inputs ((T, ...) each, same step, no delay)."""
    k_t = rec["k_lif"].transpose(0, 2, 1)
    scores = rec["q_lif"] @ k_t
    return {"k_t": k_t, "scores": scores, "attn_v": scores @ rec["v_lif"],
            "res1": x + rec["proj_lif"], "res2": rec["res1"] + rec["mlp2_lif"]}


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
    by_numpy = attention_by_numpy(x, lava)
    wrong = [n for n, want in by_numpy.items() if not np.array_equal(lava[n], want)]
    print("attention ops vs numpy on Lava's recorded inputs:",
          "identical" if not wrong else "DIFFERENT at " + ", ".join(wrong))
    return 0 if div is None and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
