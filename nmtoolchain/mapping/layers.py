"""Layers as the mapping sees them, and what a slice of a layer needs on a core.

A *layer* is one neuron node with the synaptic node that feeds it (Affine,
Linear, Conv1d, Conv2d), or a neuron node fed straight by a graph ``Input``
(netx's input layer with a neuron, driven through its bias: no synapses, no
input axons). The synapse's memory lives on the neuron's cores, as on Loihi.
Between a neuron and the next synapse only Flatten/Reshape may stand: they
are views, so a synapse's input element i is its pre-synaptic neuron i in
C-order.

A *recurrent* layer (netx's ``dense_rec``: a dense input synapse and a dense
recurrent synapse from the layer's own neurons, summed by an ``Add`` into
the neuron) is one dense layer whose synapse matrix is ``[W_in | W_rec]``:
its recurrent synapses count toward the synaptic memory of the cores that
hold its neurons, each of its own neurons with a recurrent synapse into a
slice is one more input axon of that slice, and its neurons' output axons
include the layer's own cores (fixed by iterating the partition until it is
stable, :func:`nmtoolchain.mapping.loihi_mapper.map_loihi`).

Two slicings, one per geometry:

* :class:`FlatGeometry` (dense layers and 1-D input layers): a slice is a
  contiguous range of the flattened neurons (C-order).
* :class:`BoxGeometry` (convolutions and multi-dimensional input layers): a
  slice is a box of output channels x rows x columns; boxes tile the layer
  on a grid. Spatial tiles keep a conv core's receptive field (its input
  axons) small, which channel-major ranges would not: one full 32x99 feature
  map of PilotNet's first conv reads the whole 3x66x200 input.

What a slice needs (one core per slice):

* ``neurons``: neurons in it.
* ``synaptic_memory`` (bits): dense and non-shared conv synapses cost
  ``weight_bits + synapse_overhead_bits`` each; a dense layer stores its
  non-zero weights, or every weight when the profile says dense storage. A
  conv with ``weight_sharing`` stores the kernel rows of its output channels
  once per core at ``weight_bits`` each (a shared kernel is addressed by
  position, so no per-synapse index is charged).
* ``input_axons``: distinct pre-synaptic neurons with a synapse into the
  slice (one input axon each). For convolutions: input channels of the
  touched groups x input rows x input columns of the slice's receptive field
  (padding excluded), a structural count. With the profile's
  ``conv_shared_axons`` (Loihi 2's convolutional connectivity: the spike
  carries its source position and the shared kernel is indexed by it) a
  convolution slice needs one input axon for its incoming connection.
* ``output_axons``: for each neuron of the slice, the number of distinct
  destination cores that hold one of its synapses, summed (Loihi routes one
  spike message per destination core). Known once the consumer layers are
  placed, which is why layers are partitioned last to first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nmtoolchain.errors import DoesNotFitError, UnsupportedOpError
from nmtoolchain.ir import Graph
from nmtoolchain.ir.op import OP_REGISTRY
from nmtoolchain.mapping.limits import (RESOURCES, CoreLimits, is_loihi_integer,
                                        netx_weight_bits)

__all__ = ["Layer", "Slice", "FlatGeometry", "BoxGeometry", "extract_layers",
           "SYNAPSE_OPS", "VIEW_OPS"]

#: the ops whose weights a layer stores (the IRs ``is_synapse`` trait), for messages
SYNAPSE_OPS = tuple(sorted(n for n, c in OP_REGISTRY.items()
                          if c.is_synapse and not n.startswith("_")))
VIEW_OPS = ("Flatten", "Reshape")
Box = Tuple[Tuple[int, int], ...]


@dataclass
class Slice:
    """One core's share of a layer: a box over the geometry's axes and its needs."""

    box: Box                       # per axis (start, stop), over Geometry.axes_shape
    needs: Dict[str, int]          # resource -> amount on this core
    core: int = -1                 # assigned after all layers are partitioned


# ------------------------------------------------------------------ helpers
def _cum(a: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(a, dtype=np.int64)])


def _max_end(cum: np.ndarray, a: int, limit: int) -> int:
    """Largest b with cum[b] - cum[a] <= limit."""
    return int(np.searchsorted(cum, cum[a] + limit, side="right")) - 1


def _segments(n: int, t: int, strategy: str) -> List[Tuple[int, int]]:
    """Split range(n) into pieces of at most t: full pieces then the rest
    ('pack'), or as even as possible ('balance')."""
    if strategy == "balance":
        k = -(-n // t)
        q, r = divmod(n, k)
        out, s = [], 0
        for i in range(k):
            e = s + q + (1 if i < r else 0)
            out.append((s, e))
            s = e
        return out
    return [(s, min(s + t, n)) for s in range(0, n, t)]


def _tile_sizes(n: int) -> List[int]:
    """Distinct piece sizes ceil(n/k), k = 1..n (every useful piece count)."""
    return sorted({-(-n // k) for k in range(1, n + 1)}, reverse=True)


def _cover(o0: int, o1: int, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """Input positions (bool over n_in) read by outputs o0..o1-1 of a conv axis."""
    mask = np.zeros(n_in, dtype=bool)
    o = np.arange(o0, o1)
    for kk in range(k):
        idx = o * s - p + kk * d
        idx = idx[(idx >= 0) & (idx < n_in)]
        mask[idx] = True
    return mask


def _valid_taps(n_out: int, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """(n_out, k) 1 where output o's tap kk lands inside the input (not padding)."""
    o = np.arange(n_out)[:, None]
    idx = o * s - p + np.arange(k)[None, :] * d
    return ((idx >= 0) & (idx < n_in)).astype(np.int64)


# --------------------------------------------------------------- geometries
class FlatGeometry:
    """Neurons sliced as contiguous ranges of the flattened (C-order) layer.

    Dense synapses: ``weight`` (out, in) applied to the last axis, shared by
    ``tokens`` leading positions (neuron i is token i // out, row i % out; its
    inputs are token t's ``in`` elements). ``weight=None``: no synapses.
    """

    slicing = "flat"

    def __init__(self, n: int, weight: Optional[np.ndarray] = None, tokens: int = 1,
                 dense_storage: bool = False, bits_per_synapse: int = 0) -> None:
        self.n = int(n)
        self.axes_shape = (self.n,)
        self.weight = weight
        self.bits = int(bits_per_synapse)
        if weight is None:
            self.out = self.inn = 0
            self.tokens = 1
            self.mask = None
            self.row_syn = np.zeros(self.n, dtype=np.int64)
            self.full_rows = True
        else:
            self.out, self.inn = (int(v) for v in weight.shape)
            self.tokens = int(tokens)
            nz = np.asarray(weight) != 0
            self.full_rows = bool(dense_storage or nz.all())
            self.mask = None if self.full_rows else nz
            per_row = np.full(self.out, self.inn, dtype=np.int64) if self.full_rows \
                else nz.sum(1).astype(np.int64)
            self.row_syn = np.tile(per_row, self.tokens)
        self.in_size = self.tokens * self.inn

    # -- per-neuron and per-slice needs
    def synapses_per_neuron(self) -> np.ndarray:
        return self.row_syn

    def _fan_in(self, a: int, b: int) -> int:
        if self.weight is None or b <= a:
            return 0
        t0, t1 = a // self.out, (b - 1) // self.out
        if self.full_rows:
            return self.inn * (t1 - t0 + 1)
        total = 0
        for t in range(t0, t1 + 1):
            r0 = max(a, t * self.out) - t * self.out
            r1 = min(b, (t + 1) * self.out) - t * self.out
            total += int(self.mask[r0:r1].any(0).sum())
        return total

    def _fan_in_end(self, a: int, cap: int, limit: int) -> int:
        """Largest b <= cap with fan-in of [a, b) <= limit."""
        if self.weight is None:
            return cap
        if self.full_rows:
            k = limit // self.inn if self.inn else cap
            if k < 1:
                return a
            return min(cap, (a // self.out + k) * self.out)
        union = np.zeros(self.inn, dtype=bool)
        done, count, b = 0, 0, a
        while b < cap:
            t, r = divmod(b, self.out)
            if r == 0 and b > a:
                done += count
                union[:] = False
                count = 0
            new = union | self.mask[r]
            c = int(new.sum())
            if done + c > limit:
                break
            union, count = new, c
            b += 1
        return b

    def needs(self, a: int, b: int, dest_cum: np.ndarray) -> Dict[str, int]:
        return {"neurons": b - a,
                "synaptic_memory": int(self.row_syn[a:b].sum()) * self.bits,
                "input_axons": self._fan_in(a, b),
                "output_axons": int(dest_cum[b] - dest_cum[a])}

    def single_neuron(self, dest: np.ndarray) -> Dict[str, Tuple[int, str]]:
        """Per resource: the most one neuron needs, and how that splits."""
        syn = int(self.row_syn.max()) if self.n else 0
        fan_in = syn if self.weight is not None else 0
        return {"neurons": (1, ""),
                "synaptic_memory": (syn * self.bits, f"{syn:,} synapses x {self.bits} bits"),
                "input_axons": (fan_in, ""),
                "output_axons": (int(dest.max()) if dest.size else 0, "")}

    def partition(self, limits: CoreLimits, dest: np.ndarray, strategy: str) -> List[Slice]:
        dest_cum = _cum(dest)
        mem_cum = _cum(self.row_syn * self.bits)
        slices: List[Slice] = []
        a = 0
        while a < self.n:
            cap = min(self.n, a + limits.neurons, _max_end(mem_cum, a, limits.synaptic_memory),
                      _max_end(dest_cum, a, limits.output_axons))
            b = self._fan_in_end(a, cap, limits.input_axons)
            if b <= a:  # cannot happen after the single-neuron check; never loop forever
                raise AssertionError(f"no progress partitioning at neuron {a}")
            slices.append(Slice(((a, b),), self.needs(a, b, dest_cum)))
            a = b
        if strategy == "balance" and len(slices) > 1:
            k = len(slices)
            even = [Slice(((s, e),), self.needs(s, e, dest_cum))
                    for s, e in _segments(self.n, -(-self.n // k), "balance")]
            if len(even) == k and all(_fits(s.needs, limits) for s in even):
                slices = even
        return slices

    # -- what consumers and reports ask
    def input_mask(self, box: Box) -> np.ndarray:
        """Which input elements (flat) have a synapse into the slice."""
        (a, b), = box
        m = np.zeros(self.in_size, dtype=bool)
        if self.weight is None or b <= a:
            return m
        for t in range(a // self.out, (b - 1) // self.out + 1):
            r0 = max(a, t * self.out) - t * self.out
            r1 = min(b, (t + 1) * self.out) - t * self.out
            cols = np.ones(self.inn, bool) if self.full_rows else self.mask[r0:r1].any(0)
            m[t * self.inn:(t + 1) * self.inn] |= cols
        return m

    def region(self, box: Box) -> Tuple[slice, ...]:
        (a, b), = box
        return (slice(a, b),)

    def label(self, slices: Sequence[Slice]) -> np.ndarray:
        """Core id of every neuron (flat, C-order)."""
        lab = np.full(self.n, -1, np.int64)
        for s in slices:
            lab[self.region(s.box)] = s.core
        return lab

    def totals(self, dest: np.ndarray) -> Dict[str, int]:
        """Layer-wide needs used by the lower bound."""
        used_inputs = 0
        if self.weight is not None:
            cols = np.ones(self.inn, bool) if self.full_rows else self.mask.any(0)
            used_inputs = int(cols.sum()) * self.tokens
        return {"neurons": self.n, "synaptic_memory": int(self.row_syn.sum()) * self.bits,
                "input_axons": used_inputs, "output_axons": int((dest > 0).sum())}


class BoxGeometry:
    """Neurons (C, H, W) sliced into boxes on a grid (channels x rows x cols).

    ``conv``: dict with the convolution (weight (C, Cin/g, kH, kW), input
    shape, stride, padding, dilation, groups) or None for a layer without
    synapses (an input layer with a neuron).
    """

    slicing = "box"

    def __init__(self, shape3: Tuple[int, int, int], conv: Optional[dict] = None, *,
                 weight_sharing: bool = True, dense_storage: bool = False,
                 weight_bits: int = 8, bits_per_synapse: int = 0,
                 shared_axons: bool = False) -> None:
        self.C, self.H, self.W = (int(v) for v in shape3)
        self.axes_shape = (self.C, self.H, self.W)
        self.n = self.C * self.H * self.W
        self.conv = conv
        self.shared = bool(weight_sharing)
        #: one input axon per slice for the whole connection (Loihi 2 conv encoding)
        self.shared_axons = bool(shared_axons) and conv is not None
        self.wbits = int(weight_bits)
        self.bits = int(bits_per_synapse)
        if conv is None:
            self.in_size = 0
            return
        w = np.asarray(conv["weight"])
        self.cin_g, self.kh, self.kw = int(w.shape[1]), int(w.shape[2]), int(w.shape[3])
        self.Cin, self.Hin, self.Win = conv["in_shape"]
        self.in_size = self.Cin * self.Hin * self.Win
        self.groups = int(conv["groups"])
        self.out_per_group = self.C // self.groups
        (self.sh, self.sw), (self.ph, self.pw), (self.dh, self.dw) = \
            conv["stride"], conv["padding"], conv["dilation"]
        #: per output channel and tap: stored synapses over input channels
        per_tap = np.full(w.shape, 1, np.int64) if dense_storage else (w != 0).astype(np.int64)
        self.m = per_tap.sum(1)                                   # (C, kH, kW)
        self.vh = _valid_taps(self.H, self.Hin, self.kh, self.sh, self.ph, self.dh)
        self.vw = _valid_taps(self.W, self.Win, self.kw, self.sw, self.pw, self.dw)
        self.kernel_bits_per_channel = self.cin_g * self.kh * self.kw * self.wbits

    # -- per-axis pieces
    def _chan_in(self, c0: int, c1: int) -> int:
        if self.conv is None:
            return 0
        g0, g1 = c0 // self.out_per_group, (c1 - 1) // self.out_per_group
        return (g1 - g0 + 1) * self.cin_g

    def _rows(self, h0: int, h1: int) -> int:
        return int(_cover(h0, h1, self.Hin, self.kh, self.sh, self.ph, self.dh).sum())

    def _cols(self, w0: int, w1: int) -> int:
        return int(_cover(w0, w1, self.Win, self.kw, self.sw, self.pw, self.dw).sum())

    def _mem_channels(self, segs_c) -> np.ndarray:
        """Shared-kernel bits per channel segment."""
        return np.array([(c1 - c0) * self.kernel_bits_per_channel for c0, c1 in segs_c],
                        dtype=np.int64)

    def axis_values(self, axis: int, segs) -> np.ndarray:
        """Per segment of one axis: input channels (axis 0), input rows (1) or
        input columns (2) its receptive field covers."""
        if self.conv is None:
            return np.zeros(len(segs), np.int64)
        stat = (self._chan_in, self._rows, self._cols)[axis]
        return np.array([stat(s, e) for s, e in segs], np.int64)

    def evaluate(self, segs_c, segs_h, segs_w, dest3_cum: np.ndarray,
                 axis_vals=None) -> Dict[str, np.ndarray]:
        """Needs of every tile of a grid, as (nc, nh, nw) arrays."""
        lc = np.array([e - s for s, e in segs_c], np.int64)
        lh = np.array([e - s for s, e in segs_h], np.int64)
        lw = np.array([e - s for s, e in segs_w], np.int64)
        out = {"neurons": lc[:, None, None] * lh[None, :, None] * lw[None, None, :]}
        shape = out["neurons"].shape
        if self.conv is None:
            out["synaptic_memory"] = np.zeros(shape, np.int64)
            out["input_axons"] = np.zeros(shape, np.int64)
        else:
            if self.shared:
                mem = self._mem_channels(segs_c)[:, None, None]
                out["synaptic_memory"] = np.broadcast_to(mem, shape).astype(np.int64)
            else:
                mc = np.stack([self.m[s:e].sum(0) for s, e in segs_c])        # (nc, kH, kW)
                rh = np.stack([self.vh[s:e].sum(0) for s, e in segs_h])       # (nh, kH)
                rw = np.stack([self.vw[s:e].sum(0) for s, e in segs_w])       # (nw, kW)
                out["synaptic_memory"] = np.einsum("iab,ja,kb->ijk", mc, rh, rw) * self.bits
            if self.shared_axons:
                out["input_axons"] = np.ones(shape, np.int64)
            else:
                ci, ri, wi = axis_vals if axis_vals is not None else \
                    (self.axis_values(a, sg) for a, sg in enumerate((segs_c, segs_h, segs_w)))
                out["input_axons"] = ci[:, None, None] * ri[None, :, None] * wi[None, None, :]
        c = np.array([[s, e] for s, e in segs_c])
        h = np.array([[s, e] for s, e in segs_h])
        w = np.array([[s, e] for s, e in segs_w])
        C0, C1 = c[:, 0][:, None, None], c[:, 1][:, None, None]
        H0, H1 = h[:, 0][None, :, None], h[:, 1][None, :, None]
        W0, W1 = w[:, 0][None, None, :], w[:, 1][None, None, :]
        S = dest3_cum
        out["output_axons"] = (S[C1, H1, W1] - S[C0, H1, W1] - S[C1, H0, W1] - S[C1, H1, W0]
                               + S[C0, H0, W1] + S[C0, H1, W0] + S[C1, H0, W0]
                               - S[C0, H0, W0]).astype(np.int64)
        return out

    def single_neuron(self, dest: np.ndarray) -> Dict[str, Tuple[int, str]]:
        if self.conv is None:
            mem, detail, fan_in = 0, "", 0
        elif self.shared:
            mem = self.kernel_bits_per_channel
            detail = f"its kernel: {self.cin_g * self.kh * self.kw:,} weights x {self.wbits} bits"
            fan_in = 1 if self.shared_axons else \
                self.cin_g * max(self._rows(h, h + 1) for h in range(self.H)) * \
                max(self._cols(w, w + 1) for w in range(self.W))
        else:
            syn = np.einsum("cab,ha,wb->chw", self.m, self.vh, self.vw)
            top = int(syn.max())
            mem, detail = top * self.bits, f"{top:,} synapses x {self.bits} bits"
            fan_in = self.cin_g * max(self._rows(h, h + 1) for h in range(self.H)) * \
                max(self._cols(w, w + 1) for w in range(self.W))
        return {"neurons": (1, ""), "synaptic_memory": (mem, detail),
                "input_axons": (fan_in, ""),
                "output_axons": (int(dest.max()) if dest.size else 0, "")}

    def partition(self, limits: CoreLimits, dest: np.ndarray, strategy: str) -> List[Slice]:
        """The grid with the fewest tiles where every tile fits; ties go to the
        grid feeding fewer input axons in total (less traffic), then to the
        most even tiles, then to whole channels."""
        d3 = dest.reshape(self.C, self.H, self.W).astype(np.int64)
        S = np.zeros((self.C + 1, self.H + 1, self.W + 1), np.int64)
        S[1:, 1:, 1:] = d3.cumsum(0).cumsum(1).cumsum(2)
        axes = []
        for axis, n in enumerate((self.C, self.H, self.W)):
            per_t = {}
            for t in _tile_sizes(n):
                segs = _segments(n, t, strategy)
                vals = self.axis_values(axis, segs)
                per_t[t] = (segs, max(e - s for s, e in segs), int(vals.max()), int(vals.sum()),
                            vals)
            axes.append(per_t)
        cands = []
        for tc, (sc, mc, fc, tcsum, _) in axes[0].items():
            mem_c = int(self._mem_channels(sc).max()) if (self.conv is not None and self.shared) \
                else 0
            if mem_c > limits.synaptic_memory:
                continue
            for th, (sh, mh, fh, thsum, _) in axes[1].items():
                if mc * mh > limits.neurons:
                    continue
                for tw, (sw, mw, fw, twsum, _) in axes[2].items():
                    fan_in = 1 if self.shared_axons else fc * fh * fw
                    if mc * mh * mw > limits.neurons or fan_in > limits.input_axons:
                        continue
                    cands.append((len(sc) * len(sh) * len(sw), tcsum * thsum * twsum,
                                  mc * mh * mw, -tc, tc, th, tw))
        cands.sort()
        best = None
        for cand in cands:
            _, _, _, _, tc, th, tw = cand
            sc, sh, sw = axes[0][tc][0], axes[1][th][0], axes[2][tw][0]
            ev = self.evaluate(sc, sh, sw, S, (axes[0][tc][4], axes[1][th][4], axes[2][tw][4]))
            if all(int(ev[r].max()) <= limits.capacity(r) for r in RESOURCES):
                best = (cand, sc, sh, sw, ev)
                break  # candidates are sorted by (cores, tie-breaks): the first fit is best
        if best is None:  # the single-neuron check passed, so 1x1x1 tiles fit
            raise AssertionError("no tiling fits although one neuron does")
        _, sc, sh, sw, ev = best
        slices = []
        for i, (c0, c1) in enumerate(sc):
            for j, (h0, h1) in enumerate(sh):
                for k, (w0, w1) in enumerate(sw):
                    slices.append(Slice(((c0, c1), (h0, h1), (w0, w1)),
                                        {r: int(ev[r][i, j, k]) for r in RESOURCES}))
        return slices

    def input_mask(self, box: Box) -> np.ndarray:
        (c0, c1), (h0, h1), (w0, w1) = box
        if self.conv is None:
            return np.zeros(0, bool)
        ch = np.zeros(self.Cin, bool)
        g0, g1 = c0 // self.out_per_group, (c1 - 1) // self.out_per_group
        ch[g0 * self.cin_g:(g1 + 1) * self.cin_g] = True
        rows = _cover(h0, h1, self.Hin, self.kh, self.sh, self.ph, self.dh)
        cols = _cover(w0, w1, self.Win, self.kw, self.sw, self.pw, self.dw)
        return (ch[:, None, None] & rows[None, :, None] & cols[None, None, :]).ravel()

    def region(self, box: Box) -> Tuple[slice, ...]:
        return tuple(slice(s, e) for s, e in box)

    def label(self, slices: Sequence[Slice]) -> np.ndarray:
        """Core id of every neuron (flat, C-order)."""
        lab = np.full(self.axes_shape, -1, np.int64)
        for s in slices:
            lab[self.region(s.box)] = s.core
        return lab.ravel()

    def totals(self, dest: np.ndarray) -> Dict[str, int]:
        if self.conv is None:
            mem, used = 0, 0
        else:
            if self.shared:
                mem = self.C * self.kernel_bits_per_channel
            else:
                mem = int(np.einsum("cab,ha,wb->", self.m, self.vh, self.vw)) * self.bits
            used = 1 if self.shared_axons else \
                int(self.input_mask(((0, self.C), (0, self.H), (0, self.W))).sum())
        return {"neurons": self.n, "synaptic_memory": mem, "input_axons": used,
                "output_axons": int((dest > 0).sum())}


def _fits(needs: Dict[str, int], limits: CoreLimits) -> bool:
    return all(needs[r] <= limits.capacity(r) for r in RESOURCES)


# ------------------------------------------------------------------ layers
@dataclass
class Layer:
    """A neuron node, the synapse feeding it, and how it is sliced."""

    name: str                     # synapse node name (the layer with weights), else neuron
    neuron: str                   # neuron node: placement is annotated here
    synapse: Optional[str]
    kind: str                     # "input", "dense" or "conv"
    shape: Tuple[int, ...]        # neuron node shape
    pre: Optional[str]            # pre-synaptic neuron node; None: host (graph Input)
    geom: object                  # FlatGeometry or BoxGeometry
    weight_bits: int = 0          # bits per stored weight (0: no synapses)
    weight_bits_note: str = ""
    bits_per_synapse: int = 0     # weight bits + overhead (dense / non-shared conv)
    quantized: bool = True        # integer Loihi weights (False: float, bits assumed)
    consumers: List[str] = field(default_factory=list)   # neuron nodes this layer feeds
    slices: List[Slice] = field(default_factory=list)
    recurrent: Optional[str] = None   # recurrent synapse node (its columns follow the input's)
    recurrent_sum: Optional[str] = None  # the Add summing the two synapses

    @property
    def n(self) -> int:
        return self.geom.n

    @property
    def nodes(self) -> Tuple[str, ...]:
        """Every node whose work runs on this layer's cores: synapses, sum, neuron."""
        return tuple(n for n in (self.synapse, self.recurrent, self.recurrent_sum, self.neuron)
                     if n)

    def sources(self) -> List[Tuple[str, slice]]:
        """(pre-synaptic neuron node, the columns of the layer's synapse matrix it
        drives): the previous layer, and for a recurrent layer the layer itself."""
        out: List[Tuple[str, slice]] = []
        n_in = self.geom.in_size - (self.n if self.recurrent else 0)
        if self.pre is not None:
            out.append((self.pre, slice(0, n_in)))
        if self.recurrent:
            out.append((self.neuron, slice(n_in, n_in + self.n)))
        return out

    def box_in_node_axes(self, box: Box) -> List[List[int]]:
        """A slice's box in the neuron node's own axes (flat for dense layers)."""
        if self.geom.slicing == "flat":
            return [list(box[0])]
        if len(self.shape) == 2:       # (C, L) stored as (C, 1, L)
            return [list(box[0]), list(box[2])]
        return [list(b) for b in box]

    def check_single_neuron(self, dest: np.ndarray, limits: CoreLimits) -> None:
        """DoesNotFitError when not even one neuron fits a core."""
        one = self.geom.single_neuron(dest)
        core = f"a {limits.profile_id} core"
        need, detail = one["input_axons"]
        if need > limits.input_axons:
            raise DoesNotFitError(f"layer '{self.name}' does not fit {core}: one neuron needs "
                                  f"{need:,} input axons, a core has {limits.input_axons:,}")
        need, detail = one["synaptic_memory"]
        if need > limits.synaptic_memory:
            raise DoesNotFitError(f"layer '{self.name}' does not fit {core}: one neuron needs "
                                  f"{need:,} bits of synaptic memory ({detail}), a core has "
                                  f"{limits.synaptic_memory:,}")
        need, _ = one["output_axons"]
        if need > limits.output_axons:
            raise DoesNotFitError(f"layer '{self.name}' does not fit {core}: one neuron needs "
                                  f"{need:,} output axons (one per destination core), a core "
                                  f"has {limits.output_axons:,}")


def _unsupported(graph: Graph, name: str, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"mapping: node '{name}' (op {graph[name].op_name}) {why}; the mapping places neuron "
        f"layers fed by {', '.join(SYNAPSE_OPS)} (through Flatten/Reshape) or by a graph Input")


def _trace_source(graph: Graph, name: str) -> Tuple[Optional[str], str]:
    """Follow views back from a synapse input to a neuron or a graph Input."""
    cur = name
    seen = set()
    while True:
        node = graph[cur]
        if node.op.is_neuron:
            return cur, "neuron"
        if node.op_name == "Input":
            return None, "input"
        if node.op_name in VIEW_OPS and cur not in seen:
            seen.add(cur)
            cur = node.inputs[0]
            continue
        raise _unsupported(graph, cur, "stands between a neuron layer and a synapse")


def extract_layers(graph: Graph, limits: CoreLimits) -> List[Layer]:
    """The graph's neuron layers in topological order; UnsupportedOpError names
    the first node the mapping cannot place. The graph must have its shapes
    inferred (it is only read)."""
    order, back = graph.order()
    sums = {_recurrent_sum(graph, src, dst): (src, dst) for src, dst in sorted(back)}
    rec_syns = {dst for _, dst in back}
    allowed = set(VIEW_OPS) | {"Input", "Output"}
    readers = graph.users_index()  # once: a scan per node is quadratic in the layers
    for name in order:
        node = graph[name]
        if (not node.op.is_neuron and not node.op.is_synapse and node.op_name not in allowed
                and name not in sums):
            raise _unsupported(graph, name, "cannot be placed on cores")
        if node.op.is_synapse:
            users = readers[name]
            if len(users) == 1 and users[0].name in sums:
                continue
            if len(users) != 1 or not users[0].op.is_neuron:
                what = ", ".join(f"'{u.name}' ({u.op_name})" for u in users) or "nothing"
                raise _unsupported(graph, name, f"feeds {what}, not one neuron layer (on Loihi "
                                   f"every synapse ends in a neuron; add a readout neuron)")
    layers: List[Layer] = []
    by_neuron: Dict[str, Layer] = {}
    for name in order:
        node = graph[name]
        if not node.op.is_neuron:
            continue
        src = graph[node.inputs[0]]
        shape = tuple(int(v) for v in node.shape)
        if src.op_name == "Input":
            if len(shape) in (2, 3):
                s3 = shape if len(shape) == 3 else (shape[0], 1, shape[1])
                geom = BoxGeometry(s3, None)
            else:
                geom = FlatGeometry(int(np.prod(shape)))
            layer = Layer(name, name, None, "input", shape, None, geom,
                          weight_bits_note="no synapses (driven through its bias)")
        elif src.name in sums:
            rec = sums[src.name][1]
            syn = graph[src.inputs[0] if src.inputs[1] == rec else src.inputs[1]]
            pre, _ = _trace_source(graph, syn.inputs[0])
            layer = _synaptic_layer(graph, syn.name, name, shape, pre, limits, rec=rec)
            layer.recurrent_sum = src.name
        elif src.op.is_synapse and src.name not in rec_syns:
            pre, _ = _trace_source(graph, src.inputs[0])
            layer = _synaptic_layer(graph, src.name, name, shape, pre, limits)
        else:
            raise _unsupported(graph, src.name, f"feeds neuron '{name}' directly")
        layers.append(layer)
        by_neuron[name] = layer
    for layer in layers:
        if layer.pre is not None:
            by_neuron[layer.pre].consumers.append(layer.neuron)
    return layers


def _recurrent_sum(graph: Graph, src: str, dst: str) -> str:
    """The Add of the recurrent layer a back edge ``src -> dst`` closes (netx's
    dense_rec: neuron -> dense recurrent synapse -> Add <- dense input synapse,
    Add -> the same neuron); UnsupportedOpError for any other loop."""
    neu, rec = graph[src], graph[dst]
    adds = graph.users(dst)
    add = adds[0] if len(adds) == 1 else None
    dense = ("Affine", "Linear")
    ok = (neu.op.is_neuron and rec.op_name in dense and add is not None
          and add.op_name == "Add" and len(add.inputs) == 2 and neu.inputs == (add.name,)
          and [u.name for u in graph.users(add.name)] == [src])
    if ok:
        other = graph[add.inputs[0] if add.inputs[1] == dst else add.inputs[1]]
        ok = (other.op_name in dense and other.name != dst
              and len(graph[other.inputs[0]].shape or ()) == 1
              and [u.name for u in graph.users(other.name)] == [add.name])
    if not ok:
        raise UnsupportedOpError(
            f"mapping: recurrent connection '{src}' -> '{dst}' is not a recurrent dense layer "
            "(the mapping places netx's dense_rec: a dense input synapse and a dense recurrent "
            "synapse from the layer's own neurons, summed by one Add into them)")
    return add.name


def _synaptic_layer(graph: Graph, syn: str, neuron: str, shape: Tuple[int, ...],
                    pre: Optional[str], limits: CoreLimits, rec: Optional[str] = None) -> Layer:
    op = graph[syn].op
    weight = np.asarray(op.weight)
    if rec is not None:  # one matrix [W_in | W_rec], as netx sizes its weight bits
        weight = np.hstack((weight, np.asarray(graph[rec].op.weight)))
    quantized = is_loihi_integer(weight)
    in_shape = tuple(int(v) for v in graph[graph[syn].inputs[0]].shape)
    overhead = limits.synapse_overhead_bits
    if graph[syn].op_name in ("Affine", "Linear"):
        if quantized:
            wbits, mode = netx_weight_bits(weight)
            note = f"netx num_weight_bits of the integer weights ({mode} sign)"
        else:
            wbits, note = limits.default_weight_bits, "assumed: float weights, profile weight_bits"
        tokens = int(np.prod(in_shape[:-1])) if len(in_shape) > 1 else 1
        bps = wbits + overhead
        geom = FlatGeometry(int(np.prod(shape)), weight, tokens, limits.dense_storage, bps)
        return Layer(syn, neuron, syn, "dense", shape, pre, geom, wbits, note, bps, quantized,
                     recurrent=rec)
    # convolution
    if quantized:
        wbits, note = 8, "netx builds Lava Conv with its default num_weight_bits = 8"
    else:
        wbits, note = limits.default_weight_bits, "assumed: float weights, profile weight_bits"
    if graph[syn].op_name == "Conv1d":
        s3, in3 = (shape[0], 1, shape[1]), (in_shape[0], 1, in_shape[1])
        w4 = weight[:, :, None, :]
        stride, padding, dilation = ((1,) + tuple(op.stride), (0,) + tuple(op.padding),
                                     (1,) + tuple(op.dilation))
    else:
        s3, in3, w4 = shape, in_shape, weight
        stride, padding, dilation = tuple(op.stride), tuple(op.padding), tuple(op.dilation)
    conv = {"weight": w4, "in_shape": in3, "stride": stride, "padding": padding,
            "dilation": dilation, "groups": int(op.groups)}
    bps = wbits if limits.weight_sharing else wbits + overhead
    geom = BoxGeometry(s3, conv, weight_sharing=limits.weight_sharing,
                       dense_storage=limits.dense_storage, weight_bits=wbits,
                       bits_per_synapse=bps,
                       shared_axons=limits.conv_shared_axons and limits.weight_sharing)
    return Layer(syn, neuron, syn, "conv", shape, pre, geom, wbits, note, bps, quantized)
