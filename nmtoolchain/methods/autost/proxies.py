"""AutoST's training-free proxies from the shared static counter.

``flops_syops``: AutoST's fitness, ``syops.get_model_complexity_info``'s total
op count ``ops[0]`` per sample over T = 4 steps for a 32x32 input
(``reference/seeds.md`` §3.3): conv/linear MACs (+ bias ops), BatchNorm
2·numel, neurons numel, max-pool numel; Q·Kᵀ and A·V invisible. It is the
``syops`` counting rule (:func:`nmtoolchain.energy.rules.syops_rule`) applied
to the graph's static facts with every input taken as real-valued, so each
module books its full op count (``ops[0]`` does not depend on firing rates).
``macs_clean``: every multiply-accumulate of the graph, attention products
included (``Graph.node_counts``' ``macs``, what ``nmtc inspect`` shows) × T.
``parameters``: what torch's ``sum(p.numel())`` gives for the model (and what
AutoST's parameter window is checked on): the IR's trainable values plus one
learnable scalar per PLIF neuron module (its τ, which the IR holds as a
constant).

Per-node counts depend only on the node's own shapes, so a candidate's totals
are the stem's (SPS and head, one per D) plus one term per block (one per
(D, heads, ratio)); each is counted once on its weight-free graph
(:mod:`~nmtoolchain.methods.autost.arch_graph`) and cached, and scoring a
candidate adds cached numbers (``tests/test_autost_proxies.py`` checks the sum
against the whole graph).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Mapping, Tuple

from nmtoolchain.energy.rules import syops_rule
from nmtoolchain.ir import Graph, Input, Output
from nmtoolchain.methods.autost.arch_graph import _block, _Builder, spikformer_graph
from nmtoolchain.methods.autost.space import FIXED, STEPS, Candidate, model_config
from nmtoolchain.models.spikformer import _resolve
from simulators.cycle.counting import static_facts
from simulators.cycle.counts import RunCounts


@dataclass(frozen=True)
class StaticScore:
    """A candidate's training-free figures (per sample, over ``steps`` steps)."""

    parameters: int        # torch's sum(p.numel()) of the model
    flops_syops: float     # syops ops[0]: AutoST's FLOPs proxy (ops, not GFLOPs)
    macs_clean: float      # all MACs incl. Q·Kᵀ and A·V
    neurons: int           # neurons per step
    synapses: int          # stored connections (border-aware)

    def __add__(self, other: "StaticScore") -> "StaticScore":
        return StaticScore(self.parameters + other.parameters,
                           self.flops_syops + other.flops_syops,
                           self.macs_clean + other.macs_clean,
                           self.neurons + other.neurons, self.synapses + other.synapses)

    @property
    def gflops(self) -> float:
        """The proxy as AutoST reports it: ops[0] / 1e9."""
        return self.flops_syops / 1e9

    def as_dict(self) -> Dict[str, Any]:
        return {"parameters": self.parameters, "flops_syops": self.flops_syops,
                "gflops_syops": self.gflops, "macs_clean": self.macs_clean,
                "neurons": self.neurons, "synapses": self.synapses}


def static_counts(graph: Graph, steps: int = STEPS) -> RunCounts:
    """A run's :class:`RunCounts` holding only the graph's static facts (the
    simulator's own :func:`static_facts`), every input taken as real-valued."""
    order = [n.name for n in graph.topological_order()]
    return RunCounts(steps, 1, "float", static={n: static_facts(graph, n, None, {})
                                                for n in order}, order=order)


def graph_score(graph: Graph, steps: int = STEPS, plif: bool = True) -> StaticScore:
    """Score any graph: the syops proxy, clean MACs, parameters (``plif``: one
    learnable τ per neuron node, as AutoST's PLIF modules have)."""
    ops = syops_rule(static_counts(graph, steps), graph)
    tot = graph.totals()
    plif_taus = sum(1 for n in graph.nodes.values() if n.op.is_neuron) if plif else 0
    return StaticScore(int(tot["parameters"]) + plif_taus, float(ops.acs + ops.macs),
                       float(tot["macs"]) * steps, int(tot["neurons"]), int(tot["synapses"]))


def _frozen(overrides: Mapping[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                        for k, v in overrides.items()))


@lru_cache(maxsize=None)
def _stem_score(embed_dim: int, steps: int, overrides: Tuple[Tuple[str, Any], ...]
                ) -> Tuple[StaticScore, int]:
    """SPS + head (the model with no blocks) and its token count."""
    cfg = dict(FIXED, embed_dim=embed_dim, depth=0, heads=[], mlp_ratio=[])
    cfg.update({k: list(v) if isinstance(v, tuple) else v for k, v in overrides})
    g = spikformer_graph(cfg)
    tokens = _tokens(g)
    return graph_score(g, steps, cfg["variant"] == "autost"), tokens


def _tokens(g: Graph) -> int:
    mean = next(n for n in g.nodes.values() if n.op_name == "Mean")
    return int(g[mean.inputs[0]].shape[0])


@lru_cache(maxsize=None)
def _block_score(embed_dim: int, heads: int, ratio: int, tokens: int, steps: int,
                 overrides: Tuple[Tuple[str, Any], ...]) -> StaticScore:
    """One encoder block on (tokens, D) inputs."""
    cfg = dict(FIXED, embed_dim=embed_dim, depth=1, heads=[heads], mlp_ratio=[ratio])
    cfg.update({k: list(v) if isinstance(v, tuple) else v for k, v in overrides})
    cfg = _resolve(cfg)
    b = _Builder(cfg)
    b.g.add("input", Input((tokens, embed_dim)))
    b.g.add("output", Output(), (_block(b, "input", embed_dim, heads, ratio,
                                        cfg["variant"] == "autost"),))
    return graph_score(b.g.infer_shapes(), steps, cfg["variant"] == "autost")


def candidate_score(cand: Candidate, steps: int = STEPS, **overrides: Any) -> StaticScore:
    """The static score of ``cand`` (cached per stem and per block kind);
    ``overrides`` change the fixed model settings (e.g. ``num_classes``)."""
    key = _frozen(overrides)
    stem, tokens = _stem_score(cand.embed_dim, steps, key)
    total = stem
    for h, r in zip(cand.heads, cand.mlp_ratios):
        total = total + _block_score(cand.embed_dim, h, r, tokens, steps, key)
    return total


def config_score(config: Mapping[str, Any], steps: int = STEPS) -> StaticScore:
    """Score a whole ``spikformer`` config on its full weight-free graph (no cache)."""
    cfg = _resolve(config)
    return graph_score(spikformer_graph(cfg), steps, cfg["variant"] == "autost")


__all__ = ["StaticScore", "static_counts", "graph_score", "candidate_score", "config_score",
           "model_config"]
