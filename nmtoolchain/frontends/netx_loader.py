"""Read a lava-dl netx HDF5 network (``*.net``) into an IR graph.

The file is read with h5py only, following what
``lava.lib.dl.netx.hdf5.Network`` does with it (lava is never imported here),
so the graph holds exactly the network netx would build:

* ``input``: an IR ``Input`` of the layer shape (C,H,W or (N,)). With a
  ``neuron`` group the input layer is itself a neuron population, driven in
  netx through its bias (``bias_mant = round(weight * x + bias)``, which the
  application sets; netx never applies the transform). The neuron node follows
  the ``Input`` and its numerics record the ``input_transform``
  (``weight``/``bias``, defaults 64 and 0 as in netx); its own bias is 0.
* ``dense`` -> ``Affine`` + neuron, ``conv`` -> ``Conv2d`` + neuron,
  ``flatten`` -> ``Flatten`` (PyTorch order, as netx's transpose+flatten).
* ``dense_rec`` -> an ``Affine`` on the input and a recurrent ``Affine`` fed
  by the layer's own neuron, summed by ``Add`` before the neuron (the cycle
  passes through the neuron; on Loihi each of the two synapses adds one step).
* ``pool``, ``convT``, ``unpool``, ``average``, ``concat``, ``dense_comp``,
  complex dense layers and RF neurons raise :class:`UnsupportedOpError`
  (netx cannot build the first six either; ``num_layers=`` cuts the network).

Values are those netx would use: ``weight``, ``weight_rec`` and ``bias`` are
truncated toward zero (NetDict's ``astype(int)``); mixed-sign dense matrices
are clipped to [-256, 254] as ``optimize_weight_bits`` does; delays are
clipped to [0, 62] and truncated, then stored in a broadcastable shape
oriented as netx broadcasts them ((out, 1) per neuron, (1, in) per input).
Counts of truncated and clipped values (report only) are in
``annotations['netx_import']``.

The layer bias lives in the neuron (``CubaLIF.v_bias`` / ``SigmaDelta.bias``),
as on Loihi; the synapse ops keep a zero bias so it is not added twice.

Time convention: ``graph.metadata['dt'] = 1.0`` (one Loihi step). A CUBA
neuron's per-step decays ``1 - iDecay/4096`` and ``1 - vDecay/4096`` are
``exp(-dt/tau_syn)`` and ``exp(-dt/tau_mem)``
(:func:`nmtoolchain.numerics.loihi.tau_from_decay`); inputs enter unscaled
(``w_in = r = 1``), biases and thresholds are in file units (Loihi multiplies
all of them by 64). The exact integers (``iDecay``, ``vDecay``, ``vThMant``,
``bias_mant``, ``bias_exp``, ...) are each neuron node's typed ``numerics``
(:class:`~nmtoolchain.numerics.loihi.LoihiCubaNeuron`,
:class:`~nmtoolchain.numerics.loihi.LoihiSigmaDeltaNeuron`) and are what a
bit-exact simulator or the netx exporter must use.

Errors: only :class:`NmtcError` subclasses escape, each one line naming the
file and the layer at fault.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, IRValidationError, NmtcError, UnsupportedOpError
from nmtoolchain.ir import (
    Add, Affine, Conv2d, CubaLIF, Flatten, Graph, Input, Output, SigmaDelta)
from nmtoolchain.ir.op import OpCheckError
from nmtoolchain.numerics.loihi import (
    BIAS_EXP, DECAY_UNIT, DEFAULT_INPUT_BIAS, DEFAULT_INPUT_WEIGHT, MAX_DELAY, READOUT_I_DECAY,
    READOUT_V_DECAY, READOUT_V_TH_MANT, SDNN_MESSAGE_BITS, SDNN_SPIKE_EXP, SDNN_STATE_EXP,
    TIME_CONVENTION, InputTransform, LoihiCubaNeuron, LoihiSigmaDeltaNeuron, tau_from_decay)

#: Layer types this loader translates.
SUPPORTED_LAYERS = ("input", "dense", "dense_rec", "conv", "flatten")
#: Layer types lava-dl netx itself cannot build (NotImplementedError or broken).
NETX_UNBUILDABLE = ("pool", "convT", "unpool", "average", "concat", "dense_comp")
#: The neuron netx gives a dense layer without a ``neuron`` group (the values
#: are :mod:`nmtoolchain.numerics.loihi`'s ``READOUT_*``: it never spikes).
READOUT_NEURON = {"type": "CUBA", "iDecay": READOUT_I_DECAY, "vDecay": READOUT_V_DECAY,
                  "vThMant": READOUT_V_TH_MANT, "refDelay": 1}


def load_netx(path: Union[str, Path], *, num_layers: Optional[int] = None) -> Graph:
    """Load a lava-dl netx HDF5 file into an IR graph with inferred shapes.

    ``num_layers`` keeps only the first N layers of the file, as
    ``netx.hdf5.Network(num_layers=N)`` does (use it to cut off a layer type
    netx cannot build, e.g. ``num_layers=5`` for Intel's ntidigits.net).
    Raises BadInputError for a missing, corrupt or inconsistent file and
    UnsupportedOpError for layer or neuron types nmtc cannot translate.
    """
    import h5py

    path = Path(path)
    name = str(path)
    if num_layers is not None and (isinstance(num_layers, bool)
                                   or not isinstance(num_layers, (int, np.integer))
                                   or num_layers < 1):
        raise BadInputError(f"{name}: num_layers must be a positive integer, got {num_layers!r}")
    from nmtoolchain.fileio import probe_hdf5, require_regular_file

    require_regular_file(path, "netx .net file")
    probe_hdf5(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BadInputError(f"{name}: truncated or corrupt HDF5 file ({_one_line(e)})") from None
    try:
        with f:
            return _NetxReader(name, f, num_layers).read()
    except NmtcError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        # h5py reports unreadable data (a damaged file) lazily, as any of these.
        raise BadInputError(f"{name}: cannot read netx file ({_one_line(e)})") from None


# --------------------------------------------------------------------- helpers
def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


def _decode(value: Any) -> Optional[str]:
    """NetDict's string rule: a 1-element array or a scalar, bytes or str."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("ascii").strip("\x00 ")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        return value.strip("\x00 ")
    return None


class _NetxReader:
    """Walks ``layer/0 .. layer/n-1`` once, adding IR nodes as it goes."""

    def __init__(self, name: str, f: Any, num_layers: Optional[int]) -> None:
        self.name = name
        self.f = f
        self.num_layers = num_layers
        self.graph = Graph()
        self.prev: Optional[str] = None  # node feeding the next layer
        self.prev_shape: Optional[Tuple[int, ...]] = None
        self.prev_is_raw_input = False  # prev is an Input without neuron
        self.msg_bits = 0  # netx's input_message_bits of the next synapse
        self.i = -1
        self.type = ""

    # ------------------------------------------------------------ errors
    def bad(self, msg: str) -> BadInputError:
        return BadInputError(f"{self.name}: layer {self.i} ({self.type}): {msg}")

    def unsupported(self, msg: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.name}: layer {self.i} ({self.type}): {msg}")

    # ------------------------------------------------------------ reading
    def require(self, group: Any, key: str, where: str = "") -> Any:
        if key not in group:
            raise self.bad(f"missing required key '{where}{key}'")
        obj = group[key]
        if not hasattr(obj, "shape") or not hasattr(obj, "dtype"):
            raise self.bad(f"'{where}{key}' is a group, expected a dataset")
        return obj[()]

    def numeric(self, value: Any, key: str) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise self.bad(f"'{key}' is not numeric (dtype {arr.dtype})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise self.bad(f"'{key}' holds NaN or infinite values")
        return arr

    def copy_key(self, group: Any, key: str) -> Tuple[np.ndarray, int]:
        """A NetDict copy key: truncated toward zero; also how many values changed."""
        raw = self.numeric(self.require(group, key), key)
        ints = raw.astype(np.int64)
        changed = int(np.count_nonzero(ints != raw)) if raw.dtype.kind == "f" else 0
        return ints, changed

    def scalar_int(self, group: Any, key: str, where: str = "") -> int:
        arr = self.numeric(self.require(group, key, where), where + key)
        if arr.size != 1:
            raise self.unsupported(
                f"'{where}{key}' has shape {arr.shape}; only a single value per layer is supported")
        v = arr.reshape(-1)[0]
        if float(v) != math.floor(float(v)):
            raise self.bad(f"'{where}{key}' must be an integer, got {float(v)}")
        return int(v)

    def shape_key(self, group: Any) -> Tuple[int, ...]:
        arr = self.numeric(self.require(group, "shape"), "shape")
        shape = tuple(int(s) for s in np.atleast_1d(arr).reshape(-1))
        if not shape or any(s <= 0 for s in shape) or not np.all(np.atleast_1d(arr) == shape):
            raise self.bad(f"'shape' must hold positive integers, got {np.asarray(arr).tolist()}")
        return shape

    def layer_type(self, group: Any) -> str:
        if "type" not in group:
            raise BadInputError(f"{self.name}: layer {self.i}: missing required key 'type'")
        t = _decode(group["type"][()])
        if t is None:
            raise BadInputError(
                f"{self.name}: layer {self.i}: 'type' is not an ASCII string")
        return t

    # ------------------------------------------------------------ top level
    def read(self) -> Graph:
        if "layer" not in self.f or not hasattr(self.f["layer"], "keys"):
            raise BadInputError(
                f"{self.name}: not a netx network: no 'layer' group "
                f"(top-level keys: {sorted(self.f.keys())})")
        layers = self.f["layer"]
        keys = list(layers.keys())
        if not keys:
            raise BadInputError(f"{self.name}: the 'layer' group is empty")
        want = [str(i) for i in range(len(keys))]
        if sorted(keys, key=lambda k: (len(k), k)) != want:
            missing = [k for k in want if k not in keys]
            extra = sorted(k for k in keys if k not in want)
            raise BadInputError(
                f"{self.name}: layers must be numbered 0..{len(keys) - 1} without gaps; "
                f"missing {missing}, unexpected {extra}")
        n_file = len(keys)
        n = n_file if self.num_layers is None else min(n_file, int(self.num_layers))
        types = []
        for i in range(n):
            self.i = i
            group = layers[str(i)]
            if not hasattr(group, "keys"):
                raise BadInputError(f"{self.name}: layer {i} is a dataset, expected a group")
            self.type = self.layer_type(group)
            types.append(self.type)
            try:
                self.read_layer(group)
            except IRValidationError as e:
                raise self.bad(str(e)) from None
            except (OSError, KeyError, ValueError, TypeError) as e:
                # h5py reports damaged data lazily, when a dataset is read.
                raise self.bad(f"cannot read ({_one_line(e)})") from None
        self.graph.add("output", Output(), [self.prev],
                       {"source": {"netx_layer": None, "type": "output"}})
        self.graph.metadata.update({
            "dt": 1.0,
            "time_convention": TIME_CONVENTION,
            "source": {"path": self.name, "format": "netx"},
            "netx": {"layers_in_file": n_file, "layers_loaded": n, "layer_types": types,
                     "simulation": self.simulation()},
        })
        try:
            self.graph.infer_shapes()
        except IRValidationError as e:
            raise BadInputError(f"{self.name}: {e}") from None
        return self.graph

    def simulation(self) -> Dict[str, Any]:
        """slayer's ``simulation/{Ts,tSample}`` (ignored by netx), if present."""
        out: Dict[str, Any] = {}
        sim = self.f.get("simulation")
        if sim is not None and hasattr(sim, "keys"):
            for k in sim.keys():
                v = sim[k]
                if hasattr(v, "dtype") and v.dtype.kind in "biuf" and v.size == 1:
                    out[k] = np.asarray(v[()]).reshape(-1)[0].item()
        return out

    def read_layer(self, group: Any) -> None:
        t = self.type
        if t == "input":
            self.read_input(group)
        elif t in ("dense", "dense_rec"):
            self.read_dense(group, recurrent=(t == "dense_rec"))
        elif t == "conv":
            self.read_conv(group)
        elif t == "flatten":
            self.read_flatten(group)
        elif t in NETX_UNBUILDABLE:
            raise UnsupportedOpError(
                f"{self.name}: layer {self.i} (type '{t}') is not supported, and lava-dl "
                f"netx cannot build it either; load only the layers before it with "
                f"num_layers={self.i}")
        else:
            raise UnsupportedOpError(
                f"{self.name}: layer {self.i} has unknown type '{t}'; supported: "
                f"{', '.join(SUPPORTED_LAYERS)}")

    def source(self, **extra: Any) -> Dict[str, Any]:
        return {"netx_layer": self.i, "type": self.type, **extra}

    # ------------------------------------------------------------ layers
    def read_input(self, group: Any) -> None:
        if self.i != 0:
            raise self.bad("an input layer must be layer 0")
        shape = self.shape_key(group)
        inp = f"layer{self.i}_input"
        self.graph.add(inp, Input(shape), [], {"source": self.source()})
        self.prev, self.prev_shape, self.prev_is_raw_input = inp, shape, True
        if "neuron" not in group:
            return  # netx only records the shape; net.inp feeds the next synapse
        transform = {}
        for key, default in (("weight", DEFAULT_INPUT_WEIGHT), ("bias", DEFAULT_INPUT_BIAS)):
            if key in group:
                vals, _ = self.copy_key(group, key)
                if vals.size != 1:
                    raise self.bad(f"input '{key}' must be a single number, got shape {vals.shape}")
                transform[key] = int(vals.reshape(-1)[0])
            else:
                transform[key] = default
        # netx's Input block gets no bias and never applies the transform: the
        # application drives the neuron (CUBA: bias_mant = round(weight*x + bias)
        # or its a_in; SDNN Delta: its a_in).
        self.add_neuron(group["neuron"], shape, (None, 0), is_input=True,
                        transform=InputTransform(**transform))

    def read_flatten(self, group: Any) -> None:
        if self.prev is None:
            raise self.bad("flatten has no input (no input layer before it)")
        shape = self.shape_key(group)
        n_prev = int(np.prod(self.prev_shape))
        if int(np.prod(shape)) != n_prev:
            raise self.bad(f"declared shape {list(shape)} ({int(np.prod(shape))} values) does not "
                           f"match its input {list(self.prev_shape)} ({n_prev} values)")
        node = f"layer{self.i}_flatten"
        self.graph.add(node, Flatten(0, -1), [self.prev],
                       {"source": self.source(declared_shape=list(shape))})
        self.prev, self.prev_shape, self.prev_is_raw_input = node, (n_prev,), False

    def dense_input(self, n_in: int) -> str:
        """The node a dense layer reads, adding an implicit Input or Flatten if needed."""
        if self.prev is None:
            # netx lets a file start with a dense layer; net.inp then feeds it.
            node = "input"
            self.graph.add(node, Input((n_in,)), [],
                           {"source": {"netx_layer": None, "type": "input", "implicit": True}})
            self.prev, self.prev_shape, self.prev_is_raw_input = node, (n_in,), True
        if len(self.prev_shape) != 1:
            if not self.prev_is_raw_input:
                raise self.bad(f"dense layer follows a layer of shape {list(self.prev_shape)} "
                               "without a flatten layer (netx cannot connect them)")
            # An input layer without neuron feeds the dense synapse directly.
            node = f"layer{self.i}_flatten"
            self.graph.add(node, Flatten(0, -1), [self.prev],
                           {"source": self.source(implicit=True)})
            self.prev, self.prev_shape = node, (int(np.prod(self.prev_shape)),)
        if self.prev_shape[0] != n_in:
            raise self.bad(f"weight expects {n_in} inputs but the layer before gives "
                           f"{self.prev_shape[0]}")
        return self.prev

    def dense_weight(self, group: Any, key: str, n_out: int) -> Tuple[np.ndarray, int]:
        w, truncated = self.copy_key(group, key)
        if w.size == 0:
            raise self.bad(f"'{key}' is empty")
        if w.ndim == 1 and n_out > 0 and w.size % n_out == 0:
            w = w.reshape(n_out, -1)  # netx reshapes a 1-D weight to (out, -1)
        if w.ndim != 2 or w.shape[0] != n_out:
            raise self.bad(f"'{key}' has shape {list(w.shape)} but the layer shape declares "
                           f"{n_out} neurons")
        return w, truncated

    def read_dense(self, group: Any, recurrent: bool) -> None:
        if "weight/imag" in group or "weight/real" in group:
            raise self.unsupported("complex dense layers (weight/real, weight/imag, RF neurons) "
                                   "are not supported")
        shape = self.shape_key(group)
        n_out = int(np.prod(shape))  # netx flattens the declared shape
        w, truncated = self.dense_weight(group, "weight", n_out)
        w_rec, trunc_rec = (self.dense_weight(group, "weight_rec", n_out) if recurrent
                            else (None, 0))
        if w_rec is not None and w_rec.shape != (n_out, n_out):
            raise self.bad(f"'weight_rec' has shape {list(w_rec.shape)}, expected "
                           f"{[n_out, n_out]}")
        # optimize_weight_bits: one exponent for both matrices of a recurrent layer.
        both = w if w_rec is None else np.hstack((w, w_rec))
        both, clipped = _netx_clip(both)
        w = both[:, :w.shape[1]]
        if w_rec is not None:
            w_rec = both[:, w.shape[1]:]
        delay, delays_clamped = self.read_delay(group, w.shape)
        src = self.dense_input(int(w.shape[1]))
        loihi = {"synapse": ("Recurrent" if recurrent else "") + ("DelayDense" if delay is not None
                                                                 else "Dense"),
                 "input_message_bits": self.msg_bits,
                 "weights_truncated": truncated + trunc_rec, "weights_clipped": clipped,
                 "delays_clamped": delays_clamped,
                 "netx_weight_sign_bug": bool(both.max() == 0 and both.min() < 0)}
        syn = f"layer{self.i}_{self.type}"
        self.graph.add(syn, Affine(w.astype(np.float32), None, delay), [src],
                       {"source": self.source(declared_shape=list(shape)), "netx_import": loihi})
        bias = self.layer_bias(group, (n_out,))
        neuron_group = group["neuron"] if "neuron" in group else None
        if not recurrent:
            self.add_neuron(neuron_group, (n_out,), bias, after=syn)
            return
        if delay is not None:
            try:
                np.broadcast_to(delay, w_rec.shape)
            except ValueError:
                raise self.bad(f"delay of shape {list(delay.shape)} cannot apply to the recurrent "
                               "weights (netx applies the same delays to both synapses)") from None
        neuron = f"layer{self.i}_neuron"
        rec = f"layer{self.i}_recurrent"
        total = f"layer{self.i}_sum"
        # The neuron is added before the sum it reads, the recurrent synapse reads the neuron.
        self.add_neuron(neuron_group, (n_out,), bias, after=total)
        self.graph.add(rec, Affine(w_rec.astype(np.float32), None, delay), [neuron],
                       {"source": self.source(role="recurrent"), "netx_import": dict(loihi)})
        self.graph.add(total, Add(), [syn, rec], {"source": self.source(role="sum")})

    def read_delay(self, group: Any, w_shape: Tuple[int, int]) -> Tuple[Optional[np.ndarray], int]:
        """Delays as netx uses them, broadcastable to ``w_shape``; and how many were clamped."""
        if "delay" not in group:
            return None, 0
        d = self.numeric(self.require(group, "delay"), "delay").astype(np.float64)
        clamped = 0
        if d.size and d.max() > MAX_DELAY:
            clamped = int(np.count_nonzero((d > MAX_DELAY) | (d < 0)))
            d = np.clip(d, 0, MAX_DELAY)  # netx clamps (with a warning)
        if d.size and d.min() < 0:
            raise self.bad(f"negative synaptic delay {d.min()}")
        d = d.astype(np.int64)  # the Dense block casts delays with astype(int)
        n_out, n_in = w_shape
        if d.ndim == 0:
            return d, clamped
        if d.ndim == 1 and d.size == n_out:  # netx checks per-neuron (axonal) delays first
            return d.reshape(n_out, 1), clamped
        if d.ndim == 1 and d.size == n_in:
            return d.reshape(1, n_in), clamped
        if d.shape == (n_out, n_in):
            return d, clamped
        raise self.bad(f"delay of shape {list(d.shape)} does not fit weight {[n_out, n_in]}")

    def read_conv(self, group: Any) -> None:
        if self.prev is None:
            raise self.bad("no input shape: a conv layer needs an input layer before it "
                           "(netx fails here too)")
        if len(self.prev_shape) != 3:
            raise self.bad(f"conv needs a (C, H, W) input, the layer before gives "
                           f"{list(self.prev_shape)}")
        shape = self.shape_key(group)
        if len(shape) != 3:
            raise self.bad(f"conv shape must be (C, H, W), got {list(shape)}")
        w, truncated = self.copy_key(group, "weight")
        if w.ndim == 5 and w.shape[4] == 1:
            w = w[..., 0]  # slayer writes (out, in/g, kH, kW, 1)
        if w.ndim != 4:
            raise self.bad(f"conv weight must be (out, in/groups, kH, kW[, 1]), got shape "
                           f"{list(w.shape)}")
        params = {}
        for key in ("stride", "padding", "dilation"):
            v = self.numeric(self.require(group, key), key)
            if v.size not in (1, 2) or not np.all(v == np.round(v)):
                raise self.bad(f"'{key}' must be an integer or an (H, W) pair, got "
                               f"{np.asarray(v).tolist()}")
            v = v.reshape(-1).astype(np.int64)
            params[key] = (int(v[0]),) * 2 if v.size == 1 else (int(v[0]), int(v[1]))
        groups = self.scalar_int(group, "groups")
        if "neuron" not in group:
            raise self.bad("missing required key 'neuron' (netx needs a neuron for conv layers)")
        op = Conv2d(w.astype(np.float32), None, params["stride"], params["padding"],
                    params["dilation"], groups)
        try:
            op.check()
            out = tuple(int(s) for s in op.infer_shape([self.prev_shape]))
        except OpCheckError as e:
            raise self.bad(f"{e} (input shape {list(self.prev_shape)})") from None
        if out != shape:
            raise self.bad(f"declared shape {list(shape)} but weight {list(w.shape)}, stride "
                           f"{params['stride']}, padding {params['padding']}, dilation "
                           f"{params['dilation']} on input {list(self.prev_shape)} give "
                           f"{list(out)}")
        syn = f"layer{self.i}_conv"
        self.graph.add(syn, op, [self.prev],
                       {"source": self.source(),
                        "netx_import": {"synapse": "Conv", "input_message_bits": self.msg_bits,
                                  "weights_truncated": truncated}})
        self.add_neuron(group["neuron"], shape, self.layer_bias(group, shape), after=syn)

    def layer_bias(self, group: Any, shape: Tuple[int, ...]) -> Tuple[Optional[np.ndarray], int]:
        """The layer bias as netx broadcasts it, in IR layout (None: no bias),
        and how many values were truncated.

        Dense: one value or one per neuron. Conv: one per channel, or one per
        neuron given in Lava's W,H,C order (returned as C,H,W).
        """
        if "bias" not in group:
            return None, 0
        b, changed = self.copy_key(group, "bias")
        if len(shape) == 1:
            if b.size == 1:
                return b.reshape(()), changed
            if b.size == shape[0]:
                return b.reshape(shape), changed
        else:
            whc = tuple(reversed(shape))
            if b.shape == whc:
                return b.transpose(2, 1, 0), changed
            if b.ndim == 1 and b.size == shape[0]:
                return b.reshape(shape[0], 1, 1), changed
        raise self.bad(f"bias of shape {list(b.shape)} does not fit the layer shape {list(shape)}")

    # ------------------------------------------------------------ neurons
    def add_neuron(self, group: Any, shape: Tuple[int, ...],
                   bias: Tuple[Optional[np.ndarray], int], after: Optional[str] = None,
                   is_input: bool = False, transform: Optional[InputTransform] = None
                   ) -> None:
        """Add ``layer<i>_neuron`` reading ``after`` (default: the current prev).

        ``group`` is the layer's ``neuron`` group, or None for netx's default
        (readout) neuron; ``bias`` is what :meth:`layer_bias` returns;
        ``transform`` is an input layer's input transform. The exact integers
        become the node's typed numerics; what reading changed (truncated
        biases) and what netx ignores go to ``annotations['netx_import']``.
        """
        src = after if after is not None else self.prev
        node = f"layer{self.i}_neuron"
        bias, truncated = bias
        if group is None:
            params, ntype, readout = dict(READOUT_NEURON), "CUBA", True
        else:
            if not hasattr(group, "keys"):
                raise self.bad("'neuron' must be a group")
            ntype = _decode(group["type"][()]) if "type" in group else None
            if ntype is None:
                raise self.bad("missing required key 'neuron/type'")
            params, readout = None, False
        b = np.zeros((), np.int64) if bias is None else bias
        annotations: Dict[str, Any] = {"source": self.source(neuron_type=ntype)}
        if ntype in ("CUBA", "LOIHI"):
            if params is None:
                params = {k: self.scalar_int(group, k, "neuron/")
                          for k in ("iDecay", "vDecay", "vThMant")}
                params["refDelay"] = (self.scalar_int(group, "refDelay", "neuron/")
                                      if "refDelay" in group else None)
            for k in ("iDecay", "vDecay"):
                if not 0 <= params[k] <= DECAY_UNIT:
                    raise self.bad(f"neuron/{k} = {params[k]} is outside 0..{DECAY_UNIT}")
            op = CubaLIF(tau_syn=tau_from_decay(params["iDecay"]),
                         tau_mem=tau_from_decay(params["vDecay"]),
                         r=1.0, v_leak=0.0, v_threshold=float(params["vThMant"]), w_in=1.0,
                         v_reset=0.0, reset="to_reset", v_bias=b.astype(np.float32),
                         compare=">")
            numerics = LoihiCubaNeuron(
                i_decay=params["iDecay"], v_decay=params["vDecay"], v_th_mant=params["vThMant"],
                bias_mant=b, bias_exp=BIAS_EXP, ref_delay=params["refDelay"], readout=readout,
                input_transform=transform)
            annotations["netx_import"] = {"bias_truncated": truncated}
            self.msg_bits = 0
        elif ntype == "SDNN":
            if is_input:
                role, process = "delta", "Delta"
            elif "sigma_output" in group:
                role, process = "sigma", "Sigma"
            else:
                role, process = "sigma_delta", "SigmaDelta"
            if role == "sigma" and bias is not None:
                raise self.unsupported("an SDNN sigma_output neuron with a bias: Lava's Sigma "
                                       "process takes no bias, so netx cannot build it")
            vth = (self.scalar_int(group, "vThMant", "neuron/")
                   if role != "sigma" or "vThMant" in group else 0)
            act = _decode(group["activation"][()]) if "activation" in group else None
            op = SigmaDelta(threshold=float(vth), bias=b.astype(np.float32), role=role,
                            activation="relu" if role == "sigma_delta" else "identity")
            numerics = LoihiSigmaDeltaNeuron(
                spike_exp=SDNN_SPIKE_EXP, state_exp=SDNN_STATE_EXP,
                num_message_bits=SDNN_MESSAGE_BITS, input_transform=transform)
            annotations["netx_import"] = {"process": process, "compare": ">=",
                                          "file_activation": act, "bias_truncated": truncated}
            self.msg_bits = SDNN_MESSAGE_BITS
        elif "RF" in ntype:
            raise self.unsupported(f"resonate-and-fire neuron '{ntype}' is not supported")
        else:
            raise self.unsupported(f"unknown neuron type '{ntype}'; supported: CUBA, LOIHI, SDNN")
        self.graph.add(node, op, [src], annotations, numerics=numerics)
        self.prev, self.prev_shape, self.prev_is_raw_input = node, tuple(shape), False


def _netx_clip(w: np.ndarray) -> Tuple[np.ndarray, int]:
    """netx's ``optimize_weight_bits`` clipping of mixed-sign dense weights."""
    lo, hi = int(w.min()), int(w.max())
    if (hi > 254 and lo < 0) or (lo < -256 and hi > 0):
        clipped = np.clip(w, -256, 254)
        return clipped, int(np.count_nonzero(clipped != w))
    return w, 0


__all__ = ["load_netx", "SUPPORTED_LAYERS", "NETX_UNBUILDABLE", "READOUT_NEURON"]
