"""Run a lava-dl netx network in Lava (``fixed_pt``) and record every layer.

This is the referee of the Loihi path (DESIGN.md, decision 5): Lava, loading a
netx HDF5 file, with Loihi's bit-accurate process models
(``Loihi2SimCfg(select_tag='fixed_pt')``; plain ``Loihi2SimCfg()`` silently
picks floating-point models). It records each neuron layer's output at every
step, keyed by the IR node name the netx loader gives it
(``layer{i}_neuron``, i = the layer's index in the file), as integer arrays
``(T, *shape)`` in C,H,W (or (N,)) order, ready to compare with the cycle
simulator's recordings (:mod:`simulators.compare`).

How the input is driven depends on the file's input layer (``drive``):

``'spikes'``  the input layer has no ``neuron`` group (or there is no input
    layer): ``drive`` holds the input values, ``(T, *shape)`` in C,H,W order
    (or ``(T, N)``), binary spikes or, with ``input_message_bits > 0``,
    graded integers. A ``RingBuffer`` source feeds ``net.inp``; it sends row
    t-1 at time step t, and the first synapse adds one step, so input row t-1
    reaches the first neuron layer at step t+1. A 3-D input feeding a dense
    layer directly is flattened in C,H,W order (as the netx loader does).
``'bias'``  the input layer has a CUBA neuron (netx never wires ``net.inp``
    then; connecting anything to it fails to compile): ``drive`` is the
    integer ``bias_mant`` of the input neurons (Lava shifts it by
    ``bias_exp = 6``; its Var is int16, so values must fit), either
    ``(*shape)`` held constant, or ``(T, *shape)`` per step: row t-1 is the
    bias during step t (a small feeder process writes the next row into the
    Var after each step, so the run still goes in one piece).
    :func:`input_drive_from_image` turns an image into this drive with the
    file's input transform.
``'a_in'``  the input layer is an SDNN ``Delta`` neuron: ``drive`` is what is
    sent into the neuron's ``a_in`` port, ``(T, *shape)`` integers (row t-1
    at step t, no synapse in between), as Intel's PilotNet-SDNN test does.

For ``'spikes'`` and ``'a_in'`` a ``drive`` with a single row is repeated at
every step (a ring buffer of length one, as in Intel's SDNN test).

Time: row t-1 of every recorded array is Lava time step t (t = 1..T). Each
synapse adds one step, so layer k (counting neuron layers from 0) first sees
the input of step t at step t+k.

``reset_interval``/``reset_offset`` go to ``netx.hdf5.Network``, which then
builds ``LIFReset`` neurons: neuron layer j resets u and v at the start of
step t when ``t % reset_interval == (reset_offset + 1 + j) % reset_interval``.

Recording: every recorded layer's ``out`` port (also those of intermediate
blocks, which keep feeding the next block) gets its own sink process that
writes each step into a memory-mapped file, and ``record_state`` adds a probe
that reads u and v through RefPorts after every step. Lava's RingBuffer sink
and ``Var.get()`` move data one element per message (about 50 µs per value
here: ~10 s for one PilotNet layer over 5 steps), too slow for real networks.

Lava and lava-dl are imported inside the functions only; importing them costs
several seconds (torch). Lava's CPU runtime starts one OS process per leaf
process (each recorder is one more) and a step costs tens of milliseconds
(tiny.net, mnist.net) to a few hundred (PilotNet-LIF). This module never
changes the network it loads.
"""
from __future__ import annotations

import functools
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, UnsupportedOpError
# netx's default input transform (``Input`` block) when the file has none
from nmtoolchain.numerics.loihi import DEFAULT_INPUT_BIAS, DEFAULT_INPUT_WEIGHT, input_transform_of
from nmtoolchain.vendors import require

#: Layer types that become a netx block (a synapse + neuron, or the input neuron).
_BLOCK_TYPES = ("conv", "dense", "dense_rec")
DRIVE_KINDS = ("spikes", "bias", "a_in")


@dataclass
class LavaRun:
    """What one Lava run produced.

    ``outputs[name]``: ``(T, *shape)`` int64, the layer's output at each step
    (0/1 spikes, or graded values for SDNN layers), C,H,W order, row t-1 =
    step t; names ``layer{i}_neuron`` in network order. ``u``/``v``: the same
    for the CUBA state of each CUBA layer (after the step), when
    ``record_state`` was asked. Timings in wall-clock seconds: ``build_s``
    (building the netx network, sources and sinks), ``first_step_s`` (compile,
    runtime start and the first step), ``run_s`` (all steps including the
    first), ``ms_per_step`` (steady state: the steps after the first, divided
    by their number; NaN for a 1-step run), ``stop_s`` (stopping the runtime).
    """

    outputs: Dict[str, np.ndarray]
    steps: int
    drive_kind: str
    u: Optional[Dict[str, np.ndarray]] = None
    v: Optional[Dict[str, np.ndarray]] = None
    layer_types: Dict[str, str] = field(default_factory=dict)
    build_s: float = 0.0
    first_step_s: float = 0.0
    run_s: float = 0.0
    ms_per_step: float = math.nan
    stop_s: float = 0.0

    @property
    def layers(self) -> List[str]:
        """Recorded layer names in network order."""
        return list(self.outputs)

    def timing_line(self) -> str:
        """One line for logs: build, first step, steady per-step time."""
        return (f"build {self.build_s:.2f} s, first step (compile + start) "
                f"{self.first_step_s:.2f} s, steady {self.ms_per_step:.1f} ms/step over "
                f"{max(self.steps - 1, 0)} steps, stop {self.stop_s:.2f} s")


@dataclass
class _Block:
    """One netx block as the file describes it."""

    name: str  # IR node name, layer{i}_neuron
    index: int  # layer index in the file
    type: str  # input / conv / dense / dense_rec
    shape: Tuple[int, ...]  # C,H,W or (N,), as the IR holds it
    neuron: str  # CUBA / SDNN / ... ('CUBA' for netx's default readout neuron)


@dataclass
class _FileInfo:
    blocks: List[_Block]
    drive_kind: str
    input_shape: Tuple[int, ...]  # shape drive rows must have (C,H,W or (N,))
    transform: Dict[str, int]


# ----------------------------------------------------------------- file reading
def _decode(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("ascii").strip("\x00 ")
    return str(value)


def _read_file(path: Path, num_layers: Optional[int]) -> _FileInfo:
    """Layer list, input kind and transform, read with h5py as netx reads them."""
    name = str(path)
    if num_layers is not None and (isinstance(num_layers, bool)
                                   or not isinstance(num_layers, (int, np.integer))
                                   or num_layers < 1):
        raise BadInputError(f"{name}: num_layers must be a positive integer, got {num_layers!r}")
    try:
        return _read_layers(path, num_layers)
    except (BadInputError, UnsupportedOpError):
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        raise BadInputError(f"{name}: cannot read netx file ({' '.join(str(e).split())})") \
            from None


def _read_layers(path: Path, num_layers: Optional[int]) -> _FileInfo:
    import h5py

    name = str(path)
    if not path.is_file():
        raise BadInputError(f"{name}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BadInputError(f"{name}: not a readable HDF5 file ({' '.join(str(e).split())})") \
            from None
    with f:
        if "layer" not in f:
            raise BadInputError(f"{name}: not a netx network: no 'layer' group")
        layers = f["layer"]
        n = len(layers) if num_layers is None else min(len(layers), int(num_layers))
        blocks: List[_Block] = []
        drive_kind, input_shape = "spikes", None
        transform = {"weight": DEFAULT_INPUT_WEIGHT, "bias": DEFAULT_INPUT_BIAS}
        for i in range(n):
            g = layers[str(i)]
            ltype = _decode(g["type"][()])
            shape = tuple(int(s) for s in np.atleast_1d(g["shape"][()]).reshape(-1)) \
                if "shape" in g else ()
            has_neuron = "neuron" in g
            ntype = _decode(g["neuron"]["type"][()]) if has_neuron else "CUBA"
            if ltype == "input":
                input_shape = shape
                for key in ("weight", "bias"):
                    if key in g:
                        transform[key] = int(np.asarray(g[key][()]).reshape(-1)[0])
                if has_neuron:
                    drive_kind = "a_in" if ntype == "SDNN" else "bias"
                    if ntype not in ("CUBA", "LOIHI", "SDNN"):
                        raise UnsupportedOpError(
                            f"{name}: layer {i} (input): input neuron '{ntype}' cannot be driven "
                            "by this runner (CUBA/LOIHI through its bias, SDNN through a_in)")
                    blocks.append(_Block(f"layer{i}_neuron", i, ltype, shape, ntype))
            elif ltype in _BLOCK_TYPES:
                if ltype != "conv":
                    shape = (int(np.prod(shape)),)  # netx flattens a dense layer's shape
                    if input_shape is None:
                        w = g["weight"]
                        input_shape = (int(np.prod(w.shape[1:])) if len(w.shape) > 1 else 1,)
                blocks.append(_Block(f"layer{i}_neuron", i, ltype, shape, ntype))
            elif ltype == "flatten":
                continue
            else:
                raise UnsupportedOpError(
                    f"{name}: layer {i} (type '{ltype}'): lava-dl netx cannot build it; "
                    f"run the layers before it with num_layers={i}")
    if input_shape is None:
        raise BadInputError(f"{name}: no input layer and no dense layer to infer the input from")
    if not blocks:
        raise BadInputError(f"{name}: no layer with a neuron in the first {n} layers")
    return _FileInfo(blocks, drive_kind, input_shape, transform)


# ----------------------------------------------------------------- layouts
def _to_lava(a: np.ndarray) -> np.ndarray:
    """(T, *chw) -> Lava's (*whc, T)."""
    nd = a.ndim
    return np.ascontiguousarray(a.transpose(list(range(nd - 1, 0, -1)) + [0]))


def _state_chw(a: np.ndarray) -> np.ndarray:
    """One Lava state snapshot (*whc) -> (*chw)."""
    return np.asarray(a).transpose(list(range(np.ndim(a) - 1, -1, -1)))


def _drive_rows(name: str, drive: np.ndarray, shape: Tuple[int, ...], steps: int,
                what: str) -> np.ndarray:
    """Check a per-step drive: (T, *shape) with T == steps or T == 1."""
    if drive.ndim != len(shape) + 1 or tuple(drive.shape[1:]) != tuple(shape):
        raise BadInputError(
            f"{name}: {what} drive must have shape (T, {', '.join(map(str, shape))}) in C,H,W "
            f"order, got {list(drive.shape)}")
    if drive.shape[0] not in (1, steps):
        raise BadInputError(f"{name}: {what} drive has {drive.shape[0]} rows; expected "
                            f"{steps} (one per step) or 1 (repeated)")
    return drive


def _as_int(name: str, drive: Any, what: str) -> np.ndarray:
    a = np.asarray(drive)
    if a.dtype.kind not in "biuf":
        raise BadInputError(f"{name}: {what} drive is not numeric (dtype {a.dtype})")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.all(a == np.round(a)):
            raise BadInputError(f"{name}: {what} drive must hold integers (Loihi has no "
                                "fractional inputs); quantize it first")
    return a.astype(np.int64)


# ----------------------------------------------------------------- public API
def input_drive_from_image(graph_or_path: Any, x: Any, *, centered: bool = True) -> np.ndarray:
    """The integer ``bias_mant`` that drives a netx CUBA input layer from an image.

    ``x`` is the image scaled to [0, 1] (e.g. pixels / 255), in C,H,W (or
    (N,)) order, optionally with a leading time axis. ``graph_or_path`` is an
    IR graph from the netx loader (its input neuron's
    ``numerics.input_transform``) or the ``.net`` file itself
    (``layer/0/weight`` and ``bias``; netx's defaults 64 and 0).

    Intel's tests load precomputed biases; the code that makes them (the
    ``PilotNetDataset`` of lava-dl's netx tutorials) computes
    ``(2 * weight * x - weight + bias).astype(np.int32)``: the [0, 1] image is
    first mapped to [-1, 1] (``centered=True``), and the result is truncated
    toward zero, not rounded. ``centered=False`` uses ``weight * x + bias``
    with the same truncation. Intel's recorded biases fit the centered form
    only: tinynet's 2..60 (weight 36, bias 34) and PilotNet's 1..76 (weight
    40, bias 36) go below ``bias``. Netx itself never applies the transform.
    """
    w, b = _input_transform(graph_or_path)
    xs = np.asarray(x, dtype=np.float64)
    if centered:
        val = 2.0 * w * xs - w + b
    else:
        val = w * xs + b
    return np.trunc(val).astype(np.int64)


def _input_transform(graph_or_path: Any) -> Tuple[int, int]:
    if isinstance(graph_or_path, (str, Path)):
        info = _read_file(Path(graph_or_path), num_layers=1)
        if info.drive_kind != "bias":
            raise BadInputError(f"{graph_or_path}: the input layer has no CUBA neuron; drive its "
                                "input directly (spikes) instead of through a bias")
        return info.transform["weight"], info.transform["bias"]
    graph = graph_or_path
    for node in graph.nodes.values() if hasattr(graph, "nodes") else []:
        t = input_transform_of(node)
        if t is not None:
            return t.weight, t.bias
    src = getattr(graph, "metadata", {}).get("source", {})
    raise BadInputError(f"{src.get('path', 'graph')}: no input neuron with an input transform "
                        "(only a netx CUBA input layer has one)")


@functools.lru_cache(maxsize=None)
def _recorder_classes() -> Tuple[type, type, type, type, type, type]:
    """Three small Lava processes (and their fixed-point models) the runner adds.

    * ``FileSink``: receives a port's data every step and writes it into a
      memory-mapped file (row t-1 at step t). Lava's own RingBuffer sink keeps
      the data in a Var, and ``Var.get()`` moves it one element per message
      (about 50 µs per value here: 10 s for one PilotNet layer over 5 steps);
      a file costs nothing.
    * ``StateProbe``: reads a neuron's u and v through RefPorts in the
      post-management phase of every step (after the step, as ``Var.get()``
      between one-step runs would) and writes them to files. No stepping one
      step at a time, one message per Var per step.
    * ``BiasFeeder``: writes row t of a per-step bias into the input neuron's
      ``bias_mant`` through a RefPort after step t, so step t+1 uses it (as
      lava's ``io.reset.Reset`` writes u and v); row 0 is the Var's init.

    They are defined here, not at module level, so that importing this module
    never imports lava; Lava's runtime forks its worker processes, which
    inherit these classes. The runner names each instance's model in
    ``exception_proc_model_map``, so Lava's model search (which imports every
    module of a process's package) never runs for them.
    """
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyRefPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, RefPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    def _open(path: str, steps: int, shape: Tuple[int, ...]) -> np.memmap:
        return np.memmap(path, dtype=np.int32, mode="r+", shape=(steps,) + tuple(shape))

    class FileSink(AbstractProcess):
        """Writes what arrives at ``a_in`` at step t into row t-1 of ``path``."""

        def __init__(self, *, shape: Tuple[int, ...], steps: int, path: str) -> None:
            super().__init__(shape=shape, steps=steps, path=path)
            self.a_in = InPort(shape=shape)

    @implements(proc=FileSink, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyFileSinkModel(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

        def run_spk(self) -> None:
            data = self.a_in.recv()
            p = self.proc_params
            if self.time_step <= p["steps"]:
                if getattr(self, "_rows", None) is None:
                    self._rows = _open(p["path"], p["steps"], p["shape"])
                self._rows[self.time_step - 1] = data

    class StateProbe(AbstractProcess):
        """Reads u and v (RefPorts) after every step into ``path_u``/``path_v``."""

        def __init__(self, *, shape: Tuple[int, ...], steps: int, path_u: str,
                     path_v: str) -> None:
            super().__init__(shape=shape, steps=steps, path_u=path_u, path_v=path_v)
            self.u = RefPort(shape=shape)
            self.v = RefPort(shape=shape)

    @implements(proc=StateProbe, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyStateProbeModel(PyLoihiProcessModel):
        u: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)
        v: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

        def post_guard(self) -> bool:
            return self.time_step <= self.proc_params["steps"]

        def run_post_mgmt(self) -> None:
            p = self.proc_params
            if getattr(self, "_u", None) is None:
                self._u = _open(p["path_u"], p["steps"], p["shape"])
                self._v = _open(p["path_v"], p["steps"], p["shape"])
            self._u[self.time_step - 1] = self.u.read()
            self._v[self.time_step - 1] = self.v.read()

    class BiasFeeder(AbstractProcess):
        """Writes ``data[..., t]`` into a RefPort'ed Var after step t."""

        def __init__(self, *, data: np.ndarray) -> None:
            super().__init__()
            self.data = Var(shape=data.shape, init=data)
            self.bias = RefPort(shape=data.shape[:-1])

    @implements(proc=BiasFeeder, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyBiasFeederModel(PyLoihiProcessModel):
        data: np.ndarray = LavaPyType(np.ndarray, np.int32)
        bias: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

        def post_guard(self) -> bool:
            return self.time_step < self.data.shape[-1]

        def run_post_mgmt(self) -> None:
            self.bias.write(self.data[..., self.time_step])
            self.bias.wait()

    return (FileSink, PyFileSinkModel, StateProbe, PyStateProbeModel, BiasFeeder,
            PyBiasFeederModel)


@dataclass
class _Drive:
    """A checked drive, laid out for the file's input kind (module docstring)."""

    kind: str                            # 'spikes', 'bias' or 'a_in'
    bias: Optional[np.ndarray] = None    # 'bias': the input neurons' bias_mant (C,H,W)
    bias_rows: Optional[np.ndarray] = None  # 'bias': (T, *shape) when it changes per step
    values: Optional[np.ndarray] = None  # 'spikes' / 'a_in': (T or 1, *shape) rows


def _layers_to_record(name: str, info: _FileInfo,
                      record_layers: Optional[Sequence[str]]) -> List[str]:
    """The ``layer{i}_neuron`` names to record, in network order (default: all)."""
    by_name = {b.name: b for b in info.blocks}
    if record_layers is None:
        return [b.name for b in info.blocks]
    unknown = [n for n in record_layers if n not in by_name]
    if unknown:
        raise BadInputError(f"{name}: no layer(s) {unknown} to record; layers with a neuron: "
                            f"{list(by_name)}")
    return [b.name for b in info.blocks if b.name in set(record_layers)]


def _check_drive(name: str, info: _FileInfo, drive: Any, steps: int,
                 input_message_bits: int) -> _Drive:
    """Check ``drive`` against the file's input kind and shape (before importing lava)."""
    kind = info.drive_kind
    if kind == "bias":
        bias = _as_int(name, drive, "bias")
        bias_rows: Optional[np.ndarray] = None  # (T, *shape) when the bias changes per step
        shape = info.input_shape
        if tuple(bias.shape) != tuple(shape):
            _drive_rows(name, bias, shape, steps, "bias")
            if bias.shape[0] > 1 and not np.all(bias == bias[:1]):
                bias_rows = bias
            bias = bias[0]
        lo, hi = int(np.min(bias if bias_rows is None else bias_rows)), \
            int(np.max(bias if bias_rows is None else bias_rows))
        if lo < -(1 << 15) or hi >= 1 << 15:
            raise BadInputError(f"{name}: input bias drive spans [{lo}, {hi}]; Lava holds "
                                "bias_mant in int16 and would wrap it (Loihi declares 13 bits)")
        return _Drive(kind, bias=bias, bias_rows=bias_rows)
    values = _as_int(name, drive, "input")
    _drive_rows(name, values, info.input_shape, steps, "input")
    if kind == "spikes" and not input_message_bits and not np.isin(values, (0, 1)).all():
        raise BadInputError(
            f"{name}: a binary spike drive must hold only 0 and 1 (Lava's Dense treats any "
            "non-zero as one spike); pass input_message_bits=N for graded input")
    return _Drive(kind, values=values)


def _connect_drive(name: str, net: Any, drive: _Drive, models: Dict[Any, type]) -> None:
    """Feed the built network: the input neurons' bias (and a per-step feeder),
    or a ring buffer into ``net.inp`` / the Delta neuron's ``a_in``."""
    from lava.proc import io

    if drive.kind == "bias":
        _, _, _, _, BiasFeeder, PyBiasFeeder = _recorder_classes()
        neuron = net.in_layer.neuron
        neuron.bias_mant.init = _state_chw(drive.bias).astype(np.int32)  # C,H,W -> W,H,C
        if drive.bias_rows is not None:
            feeder = BiasFeeder(data=_to_lava(drive.bias_rows).astype(np.int32))
            feeder.bias.connect_var(neuron.bias_mant)
            models[feeder] = PyBiasFeeder
        return
    target = net.in_layer.neuron.a_in if drive.kind == "a_in" else net.inp
    lava_shape = tuple(target.shape)
    rows = drive.values
    if tuple(rows.shape[1:][::-1]) != lava_shape:
        if len(lava_shape) == 1 and int(np.prod(rows.shape[1:])) == lava_shape[0]:
            rows = rows.reshape(rows.shape[0], -1)  # C,H,W flatten, as the netx loader
        else:
            raise BadInputError(
                f"{name}: input drive rows {list(rows.shape[1:])} do not fit Lava's "
                f"input port of shape {list(lava_shape)} (W,H,C)")
    source = io.source.RingBuffer(data=_to_lava(rows).astype(np.int32))
    source.s_out.connect(target)


@dataclass
class _Recorders:
    """The files each recorded layer's output (and u, v) is written to."""

    outputs: Dict[str, Tuple[str, Tuple[int, ...]]] = field(default_factory=dict)
    state: Dict[str, Tuple[str, str, Tuple[int, ...]]] = field(default_factory=dict)


def _attach_recorders(lava_layers: Dict[str, Any], wanted: List[str], info: _FileInfo,
                      steps: int, record_state: Union[bool, Sequence[str]], folder: str,
                      models: Dict[Any, type]) -> _Recorders:
    """A FileSink on every recorded layer's ``out`` port, and with
    ``record_state`` a StateProbe on the u and v of every recorded CUBA layer
    (True) or of the named ones."""
    FileSink, PyFileSink, StateProbe, PyStateProbe, _, _ = _recorder_classes()
    by_name = {b.name: b for b in info.blocks}
    rec = _Recorders()

    def new_file(tag: str, shape: Tuple[int, ...]) -> str:
        p = os.path.join(folder, f"{tag}.i32")
        np.zeros((steps,) + shape, np.int32).tofile(p)
        return p

    for n in wanted:
        port = lava_layers[n].out
        shape = tuple(int(s) for s in port.shape)
        p = new_file(n, shape)
        sink = FileSink(shape=shape, steps=steps, path=p)
        port.connect(sink.a_in)
        models[sink] = PyFileSink
        rec.outputs[n] = (p, shape)
    if record_state:
        for n in wanted:
            if record_state is not True and n not in record_state:
                continue
            if by_name[n].neuron not in ("CUBA", "LOIHI"):
                continue  # SDNN layers have no u, v
            neuron = lava_layers[n].neuron
            shape = tuple(int(s) for s in neuron.u.shape)
            pu, pv = new_file(n + "_u", shape), new_file(n + "_v", shape)
            probe = StateProbe(shape=shape, steps=steps, path_u=pu, path_v=pv)
            probe.u.connect_var(neuron.u)
            probe.v.connect_var(neuron.v)
            models[probe] = PyStateProbe
            rec.state[n] = (pu, pv, shape)
    return rec


def _read_recordings(rec: _Recorders, steps: int, record_state: Union[bool, Sequence[str]]
                     ) -> Tuple[Dict[str, np.ndarray], Optional[Dict[str, np.ndarray]],
                                Optional[Dict[str, np.ndarray]]]:
    """(outputs, u, v) read back from the recorders' files, (T, *chw) int64 each."""
    def read(p: str, shape: Tuple[int, ...]) -> np.ndarray:
        """(T, *whc) int32 file -> (T, *chw) int64."""
        rows = np.fromfile(p, dtype=np.int32).reshape((steps,) + shape).astype(np.int64)
        return np.ascontiguousarray(rows.transpose([0] + list(range(rows.ndim - 1, 0, -1))))

    outputs = {n: read(p, s) for n, (p, s) in rec.outputs.items()}
    u = {n: read(pu, s) for n, (pu, _, s) in rec.state.items()} if record_state else None
    v = {n: read(pv, s) for n, (_, pv, s) in rec.state.items()} if record_state else None
    return outputs, u, v


def run_netx_in_lava(net_path: Union[str, Path], drive: Any, steps: int, *,
                     reset_interval: Optional[int] = None, reset_offset: int = 0,
                     num_layers: Optional[int] = None,
                     record_layers: Optional[Sequence[str]] = None,
                     record_state: Union[bool, Sequence[str]] = False,
                     input_message_bits: int = 0) -> LavaRun:
    """Run ``net_path`` in Lava ``fixed_pt`` for ``steps`` steps and record its layers.

    ``drive`` as in the module docstring (its kind is decided by the file's
    input layer). ``num_layers`` builds only the first N file layers (netx's
    argument). ``record_layers``: names (``layer{i}_neuron``) to record;
    default all. ``record_state``: also record u and v of each recorded CUBA
    layer after every step (True), or of the named layers. ``input_message_bits``: graded width of a
    ``'spikes'`` drive (netx's argument; 0 = binary). ``reset_interval`` and
    ``reset_offset`` go to netx (LIFReset neurons). The runtime is always
    stopped, even on error.
    """
    path = Path(net_path)
    name = str(path)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise BadInputError(f"{name}: steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    info = _read_file(path, num_layers)
    wanted = _layers_to_record(name, info, record_layers)
    # Check and lay out the drive before paying for the lava import.
    checked = _check_drive(name, info, drive, steps, input_message_bits)

    netx = import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    models: Dict[Any, type] = {}  # process instance -> its model, for the run config
    tmp = tempfile.TemporaryDirectory(prefix="nmtc_lava_")
    net = None
    ok = False
    try:
        t0 = time.perf_counter()
        net = netx.hdf5.Network(net_config=str(path), num_layers=num_layers,
                                input_message_bits=input_message_bits,
                                reset_interval=reset_interval, reset_offset=reset_offset)
        if len(net.layers) != len(info.blocks):
            raise BadInputError(f"{name}: netx built {len(net.layers)} blocks but the file lists "
                                f"{len(info.blocks)} layers with a neuron")
        lava_layers = dict(zip((b.name for b in info.blocks), net.layers))
        _connect_drive(name, net, checked, models)
        rec = _attach_recorders(lava_layers, wanted, info, steps, record_state, tmp.name, models)
        run_cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
        build_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        net.run(condition=RunSteps(num_steps=1), run_cfg=run_cfg)
        first_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        if steps > 1:
            net.run(condition=RunSteps(num_steps=steps - 1), run_cfg=run_cfg)
        rest_s = time.perf_counter() - t2
        ok = True
    finally:
        t3 = time.perf_counter()
        try:
            if net is not None:
                net.stop()
        except BaseException:
            tmp.cleanup()
            raise
        stop_s = time.perf_counter() - t3
        if not ok:
            tmp.cleanup()  # the exception from the run goes on

    try:
        outputs, u, v = _read_recordings(rec, steps, record_state)
    finally:
        tmp.cleanup()
    by_name = {b.name: b for b in info.blocks}
    return LavaRun(
        outputs=outputs, steps=steps, drive_kind=checked.kind, u=u, v=v,
        layer_types={n: by_name[n].type for n in wanted},
        build_s=build_s, first_step_s=first_s, run_s=first_s + rest_s,
        ms_per_step=(1000.0 * rest_s / (steps - 1)) if steps > 1 else math.nan,
        stop_s=stop_s)


def import_netx() -> Any:
    """``lava.lib.dl.netx``, imported without its import-time chatter.

    lava-dl's slayer prints a warning about an optional DVS toolbox to
    stdout when first imported; that would corrupt ``--json`` output."""
    import contextlib
    import io as _io
    import sys

    if "lava.lib.dl.netx" in sys.modules:
        return sys.modules["lava.lib.dl.netx"]
    require("lava-dl", "running a netx file in Lava")
    with contextlib.redirect_stdout(_io.StringIO()):
        from lava.lib.dl import netx
    return netx


def netx_layer_names(net_path: Union[str, Path], num_layers: Optional[int] = None) -> List[str]:
    """The ``layer{i}_neuron`` names a run of this file records, in network order."""
    return [b.name for b in _read_file(Path(net_path), num_layers).blocks]


def netx_drive_kind(net_path: Union[str, Path], num_layers: Optional[int] = None) -> str:
    """How the file's input is driven: 'spikes', 'bias' or 'a_in' (module docstring)."""
    return _read_file(Path(net_path), num_layers).drive_kind


__all__ = ["LavaRun", "run_netx_in_lava", "input_drive_from_image", "netx_layer_names",
           "netx_drive_kind", "DRIVE_KINDS"]
