"""Counting the work of a simulation run, from the tensors the kernels saw.

The interpreter hands every step's (inputs, output) of each node to an
:class:`ActivityCounter`; the counter buffers :attr:`ActivityCounter.chunk`
steps and reduces them in one vectorized pass per node into the per-step
series of a :class:`~simulators.cycle.counts.RunCounts` (the counters are
documented there). :func:`static_facts` adds what does not depend on activity.
This module never steps a kernel nor walks the graph a second time.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nmtoolchain.ir import Graph
from simulators.cycle import fused
from simulators.cycle.fanout import fanout_maps

#: kinds of node outputs that are events (spikes, or graded spikes)
SPIKING_KINDS = ("spikes", "graded")

Series = Dict[str, Dict[str, np.ndarray]]
#: (slot, shape, dtype) -> a reusable temporary tensor (ActivityCounter._buffer)
Scratch = Callable[[str, Sequence[int], torch.dtype], torch.Tensor]


class ActivityCounter:
    """Buffers each node's per-step (inputs, output) and counts them by chunks.

    ``kinds`` (set by :meth:`start`) says what each node's output carries
    ('spikes', 'graded', 'analog'); Input and Output nodes are not counted.
    """

    def __init__(self, graph: Graph, order: Sequence[str], device: str, chunk: int = 32) -> None:
        self.graph, self.device = graph, device
        self.chunk = chunk  # steps buffered before counting them in one vectorized pass
        fanout = {n: fanout_maps(graph, graph[n]) for n in order}
        #: per synaptic node: (structural, non-zero-weight) fan-out per input element
        self.fanout: Dict[str, Tuple[torch.Tensor, ...]] = {
            n: tuple(f.to(device=device, dtype=torch.float32) for f in m)
            for n, m in fanout.items() if m is not None}
        self.skip = {n for n in order if graph[n].op_name in ("Input", "Output")}
        self.kinds: Dict[str, str] = {}
        self.series: Series = {}
        self.steps = 0
        self._pending: Dict[str, list] = {}
        #: reusable bool buffers by (slot, shape, device): fresh multi-MB masks every
        #: chunk cost page faults that rival the reductions themselves
        self._scratch: Dict[tuple, torch.Tensor] = {}
        #: fan-out maps as int64 vectors, for the compiled counting pass
        self._int_fanout: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}

    def start(self, steps: int, kinds: Dict[str, str]) -> None:
        """Begin a run of ``steps`` steps with nothing counted."""
        self.steps, self.kinds = steps, kinds
        self.series, self._pending = {}, {}

    def observe(self, name: str, xs: List[torch.Tensor], out: torch.Tensor) -> None:
        """Node ``name`` took ``xs`` and gave ``out`` this step."""
        if name not in self.skip:
            self._pending.setdefault(name, []).append((xs, out))

    def observe_block(self, name: str, xs: List[torch.Tensor], out: torch.Tensor,
                      t0: int) -> None:
        """Node ``name`` took ``xs`` and gave ``out`` over steps t0 .. t0+n-1
        (every tensor (n, B, ...)): counted at once, no per-step buffering."""
        if name in self.skip:
            return
        n = out.shape[0]
        self._store(name, self.count_chunk(name, xs, out), t0, n)

    def end_step(self, t: int) -> None:
        """Step ``t`` is over: count the buffered steps when a chunk (or the run) is full."""
        if (t + 1) % self.chunk == 0 or t + 1 == self.steps:
            self._flush(t + 1)
            self._pending = {}

    def _flush(self, t_end: int) -> None:
        """Count the buffered steps [t_end - n, t_end) of every node at once.

        The tensors are the very inputs and outputs the kernels saw in this
        run; only the reductions are batched over steps to save dispatches."""
        for name, items in self._pending.items():
            n = len(items)
            xs = [torch.stack([it[0][i] for it in items]) for i in range(len(items[0][0]))]
            out = torch.stack([it[1] for it in items])
            self._store(name, self.count_chunk(name, xs, out), t_end - n, n)

    def _store(self, name: str, counts: Dict[str, torch.Tensor], t0: int, n: int) -> None:
        """Write a chunk's per-step counters into steps t0 .. t0+n-1 of the run's
        series: one host copy for all of them (on a GPU, one synchronization
        per node and chunk instead of one per counter)."""
        if not counts:
            return
        keys = list(counts)
        rows = torch.stack([counts[k].to(torch.float64).reshape(n) for k in keys]).cpu().numpy()
        for key, row in zip(keys, rows):
            arr = self.series.setdefault(name, {}).setdefault(key, np.zeros(self.steps))
            arr[t0:t0 + n] = row

    def count_chunk(self, name: str, xs: List[torch.Tensor], out: torch.Tensor
                    ) -> Dict[str, torch.Tensor]:
        """Counters for one node over a chunk: xs[i] and out are (n, B, ...).

        Each input is read a few times at most: its per-step min and max
        (separate ``amin``/``amax``, several times faster than ``aminmax``
        over a dimension on CPUs), its sum, and one boolean event mask, from
        which both ``events_in`` and a neuron's ``active_neurons`` come."""
        node = self.graph[name]
        n = out.shape[0]
        kinds = [self.kinds.get(s, "analog") for s in node.inputs]
        flats = [_flat(x, n) for x in xs]
        c: Dict[str, torch.Tensor] = {}
        binary = [False] * len(xs)
        if kinds and all(k == "spikes" for k in kinds):
            ranges = [(f.amin(1), f.amax(1)) for f in flats]
            c["max_in"] = torch.stack([hi for _, hi in ranges]).amax(0).float()
            binary = [x.dtype != torch.bool and bool(hi.max() <= 1) and bool(lo.min() >= 0)
                      for (lo, hi), x in zip(ranges, xs)]
            # a synapse's output labelled with its input's kind (e.g. a conv or a bias
            # fed no spikes) can lie in [0, 1] without being 0/1: not binary (syops rule)
            offgrid = [b and not self.graph[s].op.is_neuron and not torch.equal(x, x.round())
                       for b, x, s in zip(binary, xs, node.inputs)]
            binary = [b and not o for b, o in zip(binary, offgrid)]
            c["nonbinary_in"] = torch.stack([(lo < 0) | (hi > 1) for lo, hi in ranges]
                                            ).any(0).float() + float(any(offgrid))
        if (node.op.is_neuron and len(xs) == 1 and not binary[0] and name not in self.fanout
                and xs[0].numel() == out.numel() and fused.available(out.device)):
            # a neuron fed one analog input: its events and its active neurons in one
            # compiled pass (no masks), the same counts as the masks below give
            c["events_in"], active = fused.event_counts(flats[0], _flat(out, n))
            c.update(_neuron_counts(out, None, None, self.kinds[name], active=active))
            return c
        fo = self.fanout.get(name)
        if (fo is not None and len(xs) == 1 and not binary[0] and kinds[0] != "spikes"
                and fused.available(out.device)):
            # a synapse fed one analog or graded input: its events and fan-out sums
            # in one compiled pass (no masks), the same counts as below
            c.update(self._compiled_synaptic_counts(name, xs[0], kinds[0]))
            return c
        # binary spikes (values 0/1) are their own event mask and their sum their
        # event count; other inputs get one boolean mask each, kept for the neuron
        sums = [f.sum(1) if b else None for f, b in zip(flats, binary)]
        masks = [None if b else _event_mask(f, self._buffer(f"mask{i}", f.shape))
                 for i, (f, b) in enumerate(zip(flats, binary))]
        c["events_in"] = sum(_exact_count(s, f) if b else _count(m)
                             for s, m, f, b in zip(sums, masks, flats, binary))
        if fo is not None:
            mask = xs[0] if binary[0] else masks[0].reshape(xs[0].shape)
            c.update(_synaptic_counts(fo, xs[0], mask, kinds[0], sums[0], self._buffer))
        elif node.op_name == "MatMul":
            nz = [x if b else _indicator(x) for x, b in zip(xs, binary)]
            products = _per_step(torch.matmul(nz[0].to(torch.float32), nz[1].to(torch.float32)), n)
            c["synops" if all(k in SPIKING_KINDS for k in kinds) else "macs"] = products
        if node.op.is_neuron:
            fired = _flat(out, n)
            c.update(_neuron_counts(out, masks[0] if xs else None,
                                    flats[0] if xs and binary[0] else None, self.kinds[name],
                                    self._buffer))
        return c

    def _compiled_synaptic_counts(self, name: str, x: torch.Tensor, kind: str
                                  ) -> Dict[str, torch.Tensor]:
        """:func:`_synaptic_counts` and events_in for one non-spike input, from
        one compiled pass over it (:func:`fused.weighted_event_counts`): the
        fan-out sums per (step, sample) are exact integers, as the float32
        matrix products of the masked path give them below 2^24."""
        fo = self._int_fanout.get(name)
        if fo is None:
            fo = self._int_fanout[name] = tuple(
                f.reshape(-1).double().round().to(torch.int64) for f in self.fanout[name])
        n, b = x.shape[0], x.shape[1]
        events, full, nz, outside = fused.weighted_event_counts(x.reshape(n * b, -1), *fo)
        x = x.to(torch.float32)
        ops = nz.to(torch.float32).reshape(n, b)
        sample_mac = outside.reshape(n, b)
        return {"events_in": events.reshape(n, b).sum(1).double(),
                "values_in": _per_step(x, n),
                "synops" if kind == "graded" else "macs": full.to(torch.float32).reshape(
                    n, b).sum(1),
                "nb_ops": ops.sum(1), "nb_is_mac": sample_mac.any(1).float(),
                "nb_mac_ops": (ops * sample_mac).sum(1)}

    def _buffer(self, slot: str, shape: Sequence[int], dtype: torch.dtype = torch.bool
                ) -> torch.Tensor:
        """A tensor for temporary ``slot``, the same one for every chunk of that
        shape and dtype (contents undefined; callers overwrite it whole and
        reduce it at once, so none outlives a :meth:`count_chunk` call)."""
        key = (slot, tuple(shape), dtype)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = torch.empty(tuple(shape), dtype=dtype,
                                                   device=self.device)
        return buf


def _event_mask(flat: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[x != 0] as a bool tensor, written into ``out`` when given (a cast to
    bool is the fastest way there on CPUs; NaN counts as an event, -0.0 does
    not, as in count_nonzero)."""
    if out is None:
        return flat.bool() if flat.dtype != torch.bool else flat.clone()
    return out.copy_(flat)


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Per-row number of True values of a (n, m) bool tensor, exact, as float64
    (summed as bytes into int32 / int64: several times faster than
    ``count_nonzero`` along a dimension)."""
    dtype = torch.int32 if mask.shape[1] < 2 ** 31 else torch.int64
    return mask.view(torch.uint8).sum(1, dtype=dtype).double()


def _exact_count(row_sums: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """The event count of 0/1 values from their per-row sums: a float32 sum of
    0/1 values is exact while a row holds fewer than 2^24 of them."""
    limit = {torch.float32: 2 ** 24, torch.float64: 2 ** 53}.get(flat.dtype, 0)
    if flat.shape[1] >= limit:
        return _count(flat.bool())
    return row_sums.double()


def _nonzero(x: torch.Tensor, n: int) -> torch.Tensor:
    """Per-step number of non-zero elements, exact."""
    return _count(_event_mask(_flat(x, n)))


def _indicator(x: torch.Tensor) -> torch.Tensor:
    """[x != 0] as 0/1 values of x's own type: |x| then sign, two vectorized
    passes (comparisons into bool tensors are several times slower on CPUs)."""
    if x.dtype == torch.bool:
        return x.to(torch.float32)
    return x.abs().sign()


def _flat(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.reshape(n, -1)


def _per_step(x: torch.Tensor, n: int) -> torch.Tensor:
    return _flat(x, n).sum(1)


def _synaptic_counts(fanout: Tuple[torch.Tensor, ...], x: torch.Tensor,
                     mask: torch.Tensor, kind: str, row_sums: Optional[torch.Tensor] = None,
                     scratch: Optional[Scratch] = None) -> Dict[str, torch.Tensor]:
    """synops or macs, spikes_in and NeuroBench's ops of a node with fan-out maps;
    ``x`` is its (n, B, ...) input over a chunk, ``mask`` its event mask (binary
    spikes are their own), ``row_sums`` x's per-step sums when already at hand."""
    full, nz_weights = fanout
    x = x.to(torch.float32)
    n, b = x.shape[0], x.shape[1]
    xf = x.reshape(n * b, -1)
    f_full, f_nz = full.reshape(-1), nz_weights.reshape(-1)
    c: Dict[str, torch.Tensor] = {"values_in": row_sums if row_sums is not None
                                  else _per_step(x, n)}
    if kind == "spikes":
        c["spikes_in"] = c["values_in"]
        c["synops"] = (xf @ f_full).reshape(n, b).sum(1)
        sample_mac = xf.amax(1).reshape(n, b) > 1
        mf = xf if not bool(sample_mac.any()) else _mask(xf, mask, scratch)
    else:
        mf = _mask(xf, mask, scratch)
        key = "synops" if kind == "graded" else "macs"
        c[key] = (mf @ f_full).reshape(n, b).sum(1)
        sample_mac = _outside_unit_set(xf, scratch).reshape(n, b)
    ops = (mf @ f_nz).reshape(n, b)
    c["nb_ops"] = ops.sum(1)
    # NeuroBench decides MAC or AC per forward call: one step of the whole batch
    # (nb_is_mac), or one step of one sample when samples are run one by one
    c["nb_is_mac"] = sample_mac.any(1).float()
    c["nb_mac_ops"] = (ops * sample_mac).sum(1)
    return c


def _mask(xf: torch.Tensor, mask: torch.Tensor, scratch: Optional[Scratch] = None
          ) -> torch.Tensor:
    """The event mask as float32 values shaped like ``xf`` (n·B, numel); a bool
    mask goes through its bytes (uint8 to float32 is vectorized on CPUs, bool
    to float32 several times slower)."""
    mask = mask.reshape(xf.shape)
    if mask.dtype == torch.bool:
        mask = mask.view(torch.uint8)
    if scratch is None:
        return mask.to(torch.float32)
    return scratch("mask_f32", xf.shape, torch.float32).copy_(mask)


def _outside_unit_set(xf: torch.Tensor, scratch: Optional[Scratch] = None) -> torch.Tensor:
    """Per row of ``xf``: whether some value lies outside {-1, 0, 1} (NaN and
    ±inf do). d = x·x - |x| is 0 exactly for -1, 0 and 1 and for no other
    float (rounded x·x never equals |x| elsewhere; inf gives NaN), so a row
    holds such a value unless d's min and max are both 0: float passes only,
    no bool tensors (whose element-wise logic is slow on CPUs)."""
    d = xf.abs() if scratch is None else torch.abs(xf, out=scratch("d", xf.shape, xf.dtype))
    d.neg_().addcmul_(xf, xf)
    return ~((d.amax(1) == 0) & (d.amin(1) == 0))


def _neuron_counts(out: torch.Tensor, in_mask: Optional[torch.Tensor],
                   in_binary: Optional[torch.Tensor], kind: str,
                   scratch: Optional[Scratch] = None,
                   active: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """neuron_updates, active_neurons and spikes_out of a neuron node over a chunk.

    ``in_mask``: the (n, m) event mask of its first input (taken over, its
    storage reused), or None when that input is binary (``in_binary``, its
    (n, m) values) or the node has no input; ``scratch``: where temporary
    masks may live (see :meth:`ActivityCounter._buffer`); ``active``: the
    per-step active-neuron counts when already counted (then no mask is read)."""
    n = out.shape[0]
    c = {"neuron_updates": torch.full((n,), float(out[0].numel()))}
    fired = _flat(out, n)
    if active is not None:
        c["active_neurons"] = active
    elif in_mask is not None or in_binary is not None:  # active: received a non-zero input or fired
        active = in_mask if in_mask is not None else _event_mask(
            in_binary, None if scratch is None else scratch("mask0", in_binary.shape))
        if active.shape == fired.shape:  # or as bytes: ~10x faster than logical_or_ on CPUs
            fired = fired if fired.dtype == torch.bool else _event_mask(
                fired, None if scratch is None else scratch("fired", fired.shape))
            active.view(torch.uint8).bitwise_or_(fired.view(torch.uint8))
        else:
            active = torch.logical_or(active, fired)
        c["active_neurons"] = _count(active)
    else:
        c["active_neurons"] = _nonzero(out, n)
    if kind == "spikes":
        c["spikes_out"] = _per_step(out, n)
    elif kind == "graded":
        c["spikes_out"] = _nonzero(out, n)
    return c


def static_facts(graph: Graph, name: str, series: Optional[Dict[str, np.ndarray]],
                 kinds: Dict[str, str]) -> Dict[str, object]:
    """What :attr:`RunCounts.static` holds for one node: sizes from the graph,
    plus whether its inputs stayed in {0, 1} in the run (``series``: its counters)."""
    node = graph[name]
    c = graph.node_counts(node)
    bias = getattr(node.op, "bias", None)
    return {
        "op": node.op_name, "neurons": c["neurons"], "synapses": c["synapses"],
        "dense_macs": c["macs"], "parameters": c["parameters"],
        "inputs": list(node.inputs), "output_shape": list(node.shape),
        "has_bias": bool(np.any(bias) if isinstance(bias, np.ndarray) else False),
        "input_numel": int(sum(np.prod(graph[s].shape) for s in node.inputs)),
        # syops' test (at most two values, all in [0, 1]): spikes that stayed 0/1,
        # or an input that was zero throughout the run (a silent layer's output)
        "input_binary": bool(series is not None and (
            ("max_in" in series and series["max_in"].max() <= 1
             and not series.get("nonbinary_in", np.zeros(1)).any())
            or ("events_in" in series and not series["events_in"].any()))),
        "input_kind": [kinds.get(s, "analog") for s in node.inputs],
    }
