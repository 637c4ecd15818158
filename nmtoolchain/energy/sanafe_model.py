"""SANA-FE's event model of Loihi, from an nmtc run's counts: energy and time per step.

A profile with ``[chip] cost_model = "sanafe"`` (``loihi1-sanafe``) is priced
the way SANA-FE 2.2.9 prices its Loihi architecture (Boyle et al., IEEE TCAD
2025; read from its source, src/chip.cpp, pipeline.hpp, schedule.cpp), so that
its numbers can be checked against SANA-FE itself (tests/test_sanafe_referee.py):

* Loihi's pipeline: a layer at depth d (the input neurons are depth 0) fires
  d steps after the input that caused it, and its synapses are processed in
  the step its source fired. A run of T steps through D layers takes T + D
  steps (the drain), and every series here has that length.
* Energy per step: synaptic events x the synapse kind's energy (dense, conv
  or sparse); every mapped (non-input) neuron accessed every step; neurons
  updated (nmtc's ``active_neurons``: received input or spiked; SANA-FE also
  updates a neuron whose potential is non-zero without input, a difference of
  a few 21.6 pJ updates); each spike's ``spike_out``; one message per spike
  and destination core (input neurons send them too) at ``message_out``, and
  ``message_in`` at the receiver; tile hops (XY routing on SANA-FE's 8 x 4
  mesh, four cores a tile, tile ``k`` at x = k // 4 ... see :func:`_tile_xy`).
  No static power.
* Time per step: the barrier (SANA-FE's ``latency_sync`` table, read by the
  number of tiles used) plus the slowest core, where a core's time is the
  larger of its neuron work (access, update, spike out, message out per
  message) and its incoming work (message in plus the synaptic events of each
  message) plus the first message's generation delay. SANA-FE's detailed
  scheduler overlaps the two the same way; its exact message order is not
  modelled.

A split layer's work is shared evenly over its cores; a spike reaches every
core of each consumer layer (exact for dense layers; a convolution split
over several cores may reach fewer). numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from hardware_profiles import Profile
from nmtoolchain.energy.rules import _nodes, _static
from nmtoolchain.errors import BadInputError
from nmtoolchain.mapping import Placement

if TYPE_CHECKING:
    from simulators.cycle.counts import RunCounts

__all__ = ["SanafeLayerCost", "sanafe_costs", "barrier_ns", "CONV_OPS"]

#: synaptic ops priced with the conv synapse of SANA-FE's Loihi
CONV_OPS = ("Conv1d", "Conv2d", "Conv3d")
_CORES_PER_TILE = 4
_MESH_HEIGHT = 4  # SANA-FE loihi.yaml: width 8, height 4


@dataclass
class SanafeLayerCost:
    """One placed layer under SANA-FE's model: per-step series (length T + D)."""

    name: str
    synapse_nodes: Tuple[str, ...]
    depth: int
    cores: Tuple[int, ...]
    consumers: Tuple[str, ...]
    synaptic_pj: np.ndarray
    neuron_pj: np.ndarray
    network_pj: np.ndarray
    core_ns: np.ndarray          # per core of this layer (shared evenly)


def _tile_xy(core: int) -> Tuple[int, int]:
    tile = core // _CORES_PER_TILE
    return tile // _MESH_HEIGHT, tile % _MESH_HEIGHT


def _hop_pj_per_message(src: int, dst: int, profile: Profile) -> float:
    (x0, y0), (x1, y1) = _tile_xy(src), _tile_xy(dst)
    return (abs(x1 - x0) * profile.value("energy", "hop_east_west")
            + abs(y1 - y0) * profile.value("energy", "hop_north_south"))


def barrier_ns(profile: Profile, tiles: int) -> float:
    """SANA-FE's ``latency_sync`` table: the entry for the largest tile count
    not above ``tiles`` (keys ``barrier_<n>_tile(s)`` of [time])."""
    table = {}
    for sec, key, q in profile.quantities():
        if sec == "time" and key.startswith("barrier_"):
            table[int(key.split("_")[1])] = q.canonical
    if not table:
        return float(profile.value("time", "barrier"))
    keys = sorted(table)
    best = keys[0]
    for k in keys:
        if k <= tiles:
            best = k
    return float(table[best])


def _source_layer(counts: "RunCounts", node: str, layer_of: Dict[str, str]) -> Optional[str]:
    """The placed layer (neuron node) feeding ``node``, through unplaced layout
    nodes; None when it is the network input."""
    seen = set()
    frontier = list(_static(counts, node).get("inputs") or [])
    while frontier:
        n = frontier.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in layer_of:
            return layer_of[n]
        frontier.extend(_static(counts, n).get("inputs") or [])
    return None


def _shift(x: np.ndarray, by: int, length: int) -> np.ndarray:
    out = np.zeros(length)
    out[by:by + len(x)] = x[:max(0, length - by)]
    return out


def sanafe_costs(counts: "RunCounts", profile: Profile, placement: Placement
                 ) -> Tuple[int, List[SanafeLayerCost], Dict[str, np.ndarray], np.ndarray,
                            float, Dict[int, np.ndarray]]:
    """Per-layer SANA-FE costs of a per-sample run: (steps incl. drain, layers,
    input node -> network pJ series, step ns, barrier ns, core -> ns series)."""
    layers = [L for L in placement.layers]
    if not layers:
        raise BadInputError(f"profile '{profile.id}': the sanafe cost model needs a placement "
                            "with cores")
    layer_of = {n: L.name for L in layers for n in L.nodes}
    by_name = {L.name: L for L in layers}
    source: Dict[str, Optional[str]] = {}
    for L in layers:
        syn = [n for n in L.nodes if n != L.name]
        srcs = {_source_layer(counts, s, layer_of) for s in syn} or {None}
        source[L.name] = sorted(srcs, key=lambda s: (s is not None, s or ""))[-1]
    depth: Dict[str, int] = {}

    def _depth(name: str) -> int:
        if name not in depth:
            depth[name] = 0  # guards a loop
            s = source[name]
            depth[name] = 1 + (_depth(s) if s is not None else 0)
        return depth[name]

    for L in layers:
        _depth(L.name)
    D = max(depth.values())
    T = counts.steps
    S = T + D
    consumers: Dict[Optional[str], List[str]] = {}
    for L in layers:
        consumers.setdefault(source[L.name], []).append(L.name)

    e = lambda k: float(profile.value("energy", k))  # noqa: E731
    t = lambda k: float(profile.value("time", k))    # noqa: E731
    c = lambda n, k: np.asarray(counts.counter(n, k), dtype=float)  # noqa: E731

    def fanout_cores(name: Optional[str]) -> Tuple[int, ...]:
        return tuple(cc for m in consumers.get(name, []) for cc in by_name[m].cores)

    def network(spikes: np.ndarray, src_cores: Tuple[int, ...], name: Optional[str]
                ) -> Tuple[np.ndarray, np.ndarray]:
        dests = fanout_cores(name)
        msgs = spikes * len(dests)
        hop = np.mean([sum(_hop_pj_per_message(s, d, profile) for d in dests)
                       for s in src_cores]) if dests else 0.0
        return msgs, msgs * e("message_out") + msgs * e("message_in") + spikes * hop

    core_ns: Dict[int, np.ndarray] = {}
    recv_ns: Dict[int, np.ndarray] = {}
    out: List[SanafeLayerCost] = []
    for L in layers:
        d = depth[L.name]
        syn_nodes = tuple(n for n in L.nodes if n != L.name)
        syn_pj = np.zeros(S)
        recv = np.zeros(S)
        for s in syn_nodes:
            kind = "conv" if _static(counts, s).get("op") in CONV_OPS else "dense"
            ev = _shift(c(s, "synops") + c(s, "macs"), d - 1, S)
            syn_pj += ev * e(f"synop_{kind}")
            recv += ev * t(f"synop_{kind}")
        # messages arriving: each source spike sends one message to each of our cores
        src = source[L.name]
        if src is None:
            src_spikes = np.maximum.reduce([c(s, "spikes_in") for s in syn_nodes]) \
                if syn_nodes else np.zeros(T)
            arrive = _shift(src_spikes, 0, S)
        else:
            arrive = _shift(c(src, "spikes_out"), depth[src], S)
        recv += arrive * t("message_in") * len(L.cores)
        n_neur = int(_static(counts, L.name).get("neurons") or 0)
        updated = _shift(c(L.name, "active_neurons"), d, S)
        fired = _shift(c(L.name, "spikes_out"), d, S)
        neu_pj = n_neur * e("neuron_access") + updated * e("neuron_update") \
            + fired * e("spike_out")
        msgs, net_pj = network(fired, L.cores, L.name)
        gen = n_neur * t("neuron_access") + updated * t("neuron_update") \
            + fired * t("spike_out") + msgs * t("message_out")
        k = len(L.cores)
        for cc in L.cores:
            core_ns[cc] = core_ns.get(cc, np.zeros(S)) + gen / k
            recv_ns[cc] = recv_ns.get(cc, np.zeros(S)) + recv / k
        out.append(SanafeLayerCost(L.name, syn_nodes, d, L.cores,
                                   tuple(consumers.get(L.name, [])), syn_pj, neu_pj, net_pj,
                                   gen / k))
    # the input neurons: their own cores after the placement's, 1,024 per core
    inputs_pj: Dict[str, np.ndarray] = {}
    first = [L for L in layers if source[L.name] is None]
    in_core = max(cc for L in layers for cc in L.cores) + 1
    in_spikes = np.zeros(S)
    for L in first:
        syn_nodes = [n for n in L.nodes if n != L.name]
        if syn_nodes:
            in_spikes = np.maximum(in_spikes, _shift(np.maximum.reduce(
                [c(s, "spikes_in") for s in syn_nodes]), 0, S))
    in_name = next((n for n in _nodes(counts) if _static(counts, n).get("op") == "Input"),
                   "input")
    msgs, net_pj = network(in_spikes, (in_core,), None)
    inputs_pj[in_name] = net_pj
    core_ns[in_core] = msgs * t("message_out")
    first_msg = t("message_out")
    for cc, r in recv_ns.items():
        core_ns[cc] = np.maximum(core_ns[cc], np.where(r > 0, r + first_msg, 0.0))
    tiles = len({cc // _CORES_PER_TILE for cc in core_ns})
    barrier = barrier_ns(profile, tiles)
    ids = sorted(core_ns)
    slowest = np.stack([core_ns[i] for i in ids]).max(0)
    return S, out, inputs_pj, slowest + barrier, barrier, core_ns
