"""Read NIR (Neuromorphic Intermediate Representation) graphs into the IR.

Every NIR 1.0.x primitive becomes the IR op of the same name (``Op.nir_type``),
field for field. The file is read with h5py, not with ``nir.read``: nir 1.0.4
(the version sinabs pins) cannot read files written by nir >= 1.0.6 (their
neurons carry ``v_reset``) nor know CubaLI (1.0.5+), and the IR is built from
the stored fields directly, so one code path serves every NIR version.

What a file means depends on the nir version that wrote it (dataset
``version`` at the root):

* nir <= 1.0.5 (and the 0.x files of the NIR paper): IF, LIF and CubaLIF reset
  by subtraction, v <- v - v_threshold. IR: ``reset='subtract'``.
* nir >= 1.0.6: they reset to ``v_reset`` (0 when absent). IR:
  ``reset='to_reset'`` with that ``v_reset``.

``graph.metadata`` records ``nir_version`` and ``reset_semantics``. A file
without a version dataset is judged by its contents (a ``v_reset`` field
anywhere means reset-to-v_reset) and recorded as version ``'unknown'``.

NIR says nothing about the IR's extra neuron fields, so neurons get NIR's own
meaning: spike when v > v_threshold (``compare='>'``), at most one spike per
step, no lower clamp, v starts at 0. sinabs fires at v >= threshold and clamps
at ``min_v_mem``; sinabs' NIR export drops both and writes no marker, so a file
from sinabs is read with NIR semantics like any other (the difference shows only
when v lands exactly on the threshold).

An Input of shape (1, N) feeding only Affine/Linear nodes (norse and
rockpool write the batch axis into the input type) is read as (N,); the
metadata ``nir_input_squeezed`` records the file's shape, and the Output's
declared (1, M) is kept as an annotation (``nir_declared_shape``).

Graph structure: NIR sums the inputs of a node with several incoming edges;
the IR makes that sum explicit with an ``Add`` node (annotation
``nir_fan_in``), which the NIR exporter turns back into fan-in. Nested
NIRGraph nodes are flattened into ``<subgraph>.<node>`` names (the names
nirtorch gives flattened graphs); their inner Input/Output nodes disappear.
Node names written by nmtc's exporter are percent-encoded where HDF5 forbids
a character (``/``); graph metadata ``nmtc_name_encoding='percent'`` says so
and the names are decoded on import, so IR names survive a round trip.

Time step: NIR's equations are continuous; snnTorch, norse, rockpool and
the NIR paper write time constants in seconds for a simulation step of 1e-4
or 1e-3, while the IR counts time in steps. ``dt`` (the CLI's ``--dt``) is
the producer's step in the file's time unit: the loader divides every time
constant (``tau``, ``tau_syn``, ``tau_mem``) and Delay's ``delay`` by it and
multiplies I's and IF's ``r`` by it (one Euler step of dv/dt = r x adds
dt r x), so the IR is in steps (``metadata['dt'] = 1.0``) and
``metadata['nir_dt']`` records the step the file was read with (the NIR
exporter turns it back). Without ``dt`` the file's own ``nmtc_dt`` metadata
(written by nmtc) is used, else 1 (taus already in steps, as sinabs writes);
a file whose smallest time constant is below one step is then refused: its
taus are in seconds and the step must be given. norse 1.1.0 writes
``tau = dt / tau_mem_inv`` (dt times its time constant) where NIR means
``1 / tau_mem_inv``; its files simulate as norse ran them with ``dt`` = the
square of norse's step (1e-6 for its default 1e-3).

Every problem with a file raises an :class:`~nmtoolchain.errors.NmtcError`
whose one-line message starts with the file name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, NmtcError, UnsupportedOpError
from nmtoolchain.ir import (
    IF, LI, LIF, Add, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten,
    Graph, I, Input, Linear, Op, Output, Scale, SumPool2d, Threshold)
# the version and naming rules live with the NIR conventions (shared with the exporter)
from nmtoolchain.ir.nir_conventions import (
    DT_KEY, INTEGRATING_OPS, NAME_ENCODING, NAME_ENCODING_KEY, SECONDS_BELOW, TAU_FIELDS,
    check_dt, cuba_from_nir, decode_name, parse_nir_version, reset_semantics_for_version)
from nmtoolchain.ir.op import OpCheckError
#: Fields NIR stores that are derived from shapes (the IR re-infers them).
_DERIVED_FIELDS = {"input_shape", "input_type", "output_type", "metadata"}


class _Reject(Exception):
    """A problem found while building; the caller prefixes the origin."""

    def __init__(self, message: str, kind: type = BadInputError) -> None:
        super().__init__(message)
        self.kind = kind


# -------------------------------------------------------------- file access
def load_nir(path: Union[str, Path], *, dt: Optional[float] = None) -> Graph:
    """Read a NIR HDF5 file (any nir version, 0.x to 1.0.8) into an IR graph.

    ``dt``: the simulation step the file's time constants assume, in their
    unit (e.g. 1e-4 for snnTorch's files; module docstring); None: the file's
    ``nmtc_dt`` metadata, else 1, refused when the taus look like seconds.
    The graph has shapes inferred and ``metadata`` holding ``source``,
    ``nir_version``, ``reset_semantics``, ``dt`` (1: the IR is in steps) and
    ``nir_dt``. Raises BadInputError (missing,
    empty, truncated or non-NIR file, malformed graph) or UnsupportedOpError
    (a node type nmtc does not know), each message naming the file.
    """
    from nmtoolchain.fileio import probe_hdf5, require_regular_file

    path = require_regular_file(path, "NIR file")
    _valid_dt(dt, str(path))
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: file is empty")
    probe_hdf5(path)
    tree, version = _read_file(path)
    graph = _graph_from_tree(tree, version, str(path), dt)
    graph.metadata["source"] = {"path": str(path), "format": "nir"}
    return graph


def _valid_dt(dt: Optional[float], origin: str) -> Optional[float]:
    if dt is None:
        return None
    try:
        return check_dt(dt)
    except ValueError as e:
        raise BadInputError(f"{origin}: {e}") from None


def _read_file(path: Path) -> Tuple[Dict[str, Any], Optional[str]]:
    """The ``node`` group as nested dicts, and the version string (or None)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BadInputError(f"{path}: not a readable HDF5 file, truncated or corrupt "
                            f"({_one_line(e)})") from None
    try:
        with f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise BadInputError(
                    f"{path}: HDF5 file is not NIR (no 'node' group; top-level keys: "
                    f"{sorted(f.keys())})")
            version = None
            if "version" in f:
                version = _plain(f["version"][()])
                if not isinstance(version, str):
                    raise BadInputError(f"{path}: 'version' is not a string ({version!r})")
            tree = _read_group(f["node"])
    except NmtcError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: truncated or corrupt NIR file ({_one_line(e)})") from None
    return tree, version


def _read_group(group: Any) -> Dict[str, Any]:
    import h5py

    out: Dict[str, Any] = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item)
        else:
            out[key] = _plain(item[()])
    return out


def _plain(value: Any) -> Any:
    """HDF5 bytes -> str; object arrays of bytes (edges) -> arrays of str."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.vectorize(lambda v: v.decode("utf8") if isinstance(v, bytes) else v,
                            otypes=[object])(value) if value.size else value
    return value


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --------------------------------------------------------- in-memory graphs
def graph_from_nir(nir_graph: Any, *, version: str, origin: str,
                   dt: Optional[float] = None) -> Graph:
    """Convert a ``nir.NIRGraph`` object (e.g. from ``sinabs.to_nir``) into an IR graph.

    ``version`` is the nir version whose semantics the graph follows (for an
    object built in this process: ``nir.version``); ``origin`` names where it
    came from and starts every error message. Fields may be numpy arrays or
    torch tensors; Conv ``input_shape`` and Flatten ``input_type`` may be None.
    ``dt``: as for :func:`load_nir`.
    """
    _valid_dt(dt, origin)
    try:
        tree = nir_graph.to_dict()
    except Exception as e:  # a foreign object or a broken node
        raise BadInputError(f"{origin}: not a NIR graph ({_one_line(e)})") from None
    graph = _graph_from_tree(tree, version, origin, dt)
    graph.metadata["source"] = {"path": origin, "format": "nir"}
    return graph


# ------------------------------------------------------------- the builder
def _graph_from_tree(tree: Dict[str, Any], version: Optional[str], origin: str,
                     dt: Optional[float] = None) -> Graph:
    try:
        return _build(tree, version, dt)
    except _Reject as r:
        raise r.kind(f"{origin}: {r}") from None
    except NmtcError as e:  # IRValidationError from the graph: add the origin
        raise type(e)(f"{origin}: {e}") from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        raise BadInputError(f"{origin}: malformed NIR graph ({_one_line(e)})") from None


def _build(tree: Dict[str, Any], version: Optional[str], dt: Optional[float] = None) -> Graph:
    kind = _text(tree.get("type")) if isinstance(tree, dict) else type(tree).__name__
    if kind != "NIRGraph":
        raise _Reject(f"top-level node is not a NIRGraph (type {kind!r})")
    meta = tree.get("metadata")
    meta = _jsonable(meta) if isinstance(meta, dict) else {}
    decode = meta.get(NAME_ENCODING_KEY) == NAME_ENCODING

    nodes, edges = _flatten(tree, prefix="")
    _check_values(nodes, edges)
    dt, dt_source = _time_step(nodes, meta, dt)
    nodes = {n: _to_steps(f, dt) for n, f in nodes.items()}
    if version is None:
        has_v_reset = any("v_reset" in f for f in nodes.values())
        nir_version, semantics = "unknown", ("to_reset" if has_v_reset else "subtract")
    else:
        try:
            semantics = reset_semantics_for_version(version)
        except ValueError:
            raise _Reject(f"unreadable nir version {version!r}") from None
        nir_version = version

    ir_name = {n: (decode_name(n) if decode else n) for n in nodes}
    if len(set(ir_name.values())) != len(ir_name):
        raise _Reject("node names collide after decoding percent-encoded names")

    preds: Dict[str, List[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        preds[dst].append(src)

    graph = Graph({"nir_version": nir_version, "reset_semantics": semantics, "dt": 1.0,
                   "nir_dt": dt, "nir_dt_source": dt_source})
    if meta:
        graph.metadata["nir_metadata"] = meta
    declared_out: Dict[str, Tuple[int, ...]] = {}
    taken = set(ir_name.values())  # names a fan-in Add must not take
    for name in _insertion_order(nodes, edges):
        fields = nodes[name]
        ntype = _text(fields.get("type"))
        srcs = [ir_name[s] for s in preds[name]]
        if ntype == "Input":
            if srcs:
                raise _Reject(f"Input node '{name}' has incoming edges from {srcs}")
        elif not srcs:
            raise _Reject(f"node '{name}' ({ntype}) has no incoming edge")
        op = _make_op(name, ntype, fields, semantics)
        if isinstance(op, Input) and _batch_axis_in_input(name, op.shape, nodes, edges):
            graph.metadata["nir_input_squeezed"] = {ir_name[name]: list(op.shape)}
            op = Input(shape=op.shape[1:])
        if isinstance(op, Output) and op.shape is not None:
            declared_out[ir_name[name]] = op.shape
            op.shape = None  # checked after inference, leniently (see below)
        annotations = {}
        if isinstance(fields.get("metadata"), dict) and fields["metadata"]:
            annotations["nir_metadata"] = _jsonable(fields["metadata"])
        inputs = srcs
        fan_in = None
        if len(srcs) > 1:
            fan_in = f"{ir_name[name]}_sum"
            while fan_in in taken:
                fan_in += "_"
            taken.add(fan_in)
            inputs = [fan_in]
        try:
            graph.add(ir_name[name], op, inputs, annotations)
            if fan_in is not None:  # after its consumer: see _insertion_order
                graph.add(fan_in, Add(), srcs, {"nir_fan_in": True})
        except OpCheckError as e:
            raise _Reject(f"node '{name}' ({ntype}): {e}") from None

    graph.infer_shapes()
    for name, shape in declared_out.items():
        got = graph[name].shape
        if tuple(got) == shape:
            graph[name].op.shape = shape
        elif int(np.prod(shape)) == int(np.prod(got)):
            # NIR writers are loose about Output shapes (rockpool writes (1, 1, 1)
            # for 1 neuron); keep what the file said without reshaping.
            graph[name].annotations["nir_declared_shape"] = list(shape)
        else:
            raise _Reject(f"Output node '{name}' is declared {shape} but receives {got}")
    return graph


#: fields holding weights: they must be finite (other fields may hold +-inf,
#: e.g. a threshold that never fires)
_FINITE_FIELDS = ("weight", "bias", "w_in", "tau", "tau_mem", "tau_syn", "r", "delay")


def _check_values(nodes: Dict[str, Dict[str, Any]], edges: Sequence[Tuple[str, str]]) -> None:
    """Refuse complex, NaN or (in weights) infinite values and self-loops, naming the node."""
    for src, dst in edges:
        if src == dst:
            raise _Reject(f"node '{src}' has an edge to itself (a self-loop); NIR recurrence "
                          "goes through an explicit Affine/Linear node")
    for name, fields in nodes.items():
        for key, value in fields.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "cf":
                continue
            if value.dtype.kind == "c":
                raise _Reject(f"node '{name}' field '{key}' is complex ({value.dtype}); NIR "
                              "parameters must be real")
            if np.isnan(value).any():
                raise _Reject(f"node '{name}' field '{key}' holds NaN values")
            if key.startswith("tau") and (value <= 0).any():
                raise _Reject(f"node '{name}' field '{key}' holds time constants <= 0; they "
                              "must be positive")
            if key in _FINITE_FIELDS and np.isinf(value).any():
                raise _Reject(f"node '{name}' field '{key}' holds infinite values")


#: NIR types that act on the last axis of a vector (a unit axis before it is a batch axis)
_VECTOR_OPS = ("Affine", "Linear")


def _batch_axis_in_input(name: str, shape: Tuple[int, ...], nodes: Dict[str, Dict[str, Any]],
                         edges: Sequence[Tuple[str, str]]) -> bool:
    """True for an Input of shape (1, N) that feeds only Affine/Linear nodes: norse
    and rockpool write the batch axis into the input type; the unit axis is
    squeezed so the graph takes vectors as NIR's Affine does."""
    if len(shape) != 2 or shape[0] != 1:
        return False
    succ = [_text(nodes[d].get("type")) for s, d in edges if s == name]
    return bool(succ) and all(t in _VECTOR_OPS for t in succ)


def _time_step(nodes: Dict[str, Dict[str, Any]], meta: Dict[str, Any],
               dt: Optional[float]) -> Tuple[float, str]:
    """(the file's step in its time unit, where that came from); refuses a file
    whose time constants look like seconds when no step is known."""
    if dt is not None:
        return float(dt), "--dt"
    stored = meta.get(DT_KEY)
    if stored is not None:
        try:
            return check_dt(stored), f"file metadata {DT_KEY}"
        except ValueError:
            raise _Reject(f"graph metadata {DT_KEY}={stored!r} is not a positive time step; "
                          "give the step with --dt") from None
    smallest: Optional[Tuple[float, str, str]] = None
    for name, fields in nodes.items():
        for key in TAU_FIELDS:
            value = fields.get(key)
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.size:
                low = float(np.min(value))
                if smallest is None or low < smallest[0]:
                    smallest = (low, key, name)
    if smallest is not None and smallest[0] < SECONDS_BELOW:
        low, key, name = smallest
        raise _Reject(f"time constants look like seconds, not time steps ({key} = {low:.3g} in "
                      f"node '{name}'); give the producer's simulation step with --dt, e.g. "
                      "--dt 1e-4 for snnTorch's files (norse 1.1.0's: --dt 1e-6, the square of "
                      "its 1e-3 step), or --dt 1 to read them as steps")
    return 1.0, "default (time constants in steps)"


def _to_steps(fields: Dict[str, Any], dt: float) -> Dict[str, Any]:
    """A node's fields with time in steps of ``dt`` (module docstring)."""
    if dt == 1.0:
        return fields
    out = dict(fields)
    ntype = _text(fields.get("type"))
    for key in TAU_FIELDS + ("delay",):
        if out.get(key) is not None:
            out[key] = _arr(out[key]).astype(np.float64) / dt
    if ntype in INTEGRATING_OPS and out.get("r") is not None:
        out["r"] = _arr(out["r"]).astype(np.float64) * dt
    return out


def _insertion_order(nodes: Dict[str, Dict[str, Any]],
                     edges: Sequence[Tuple[str, str]]) -> List[str]:
    """Reverse post-order of a DFS from the Input nodes along the edges.

    Gives the natural reading order (input first) for feed-forward graphs.
    In a recurrent loop the neuron comes before the rest of the loop and a
    fan-in Add is inserted right after its consumer, so that the IR's cycle
    check, which walks inputs from nodes in insertion order, meets the neuron
    first. Nodes not reachable from an input follow in file order.
    """
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    for s, d in edges:
        succ[s].append(d)
    seen: Set[str] = set()
    post: List[str] = []
    for root in [n for n, f in nodes.items() if _text(f.get("type")) == "Input"]:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                post.append(node)
            elif nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, iter(succ[nxt])))
    order = post[::-1]
    return order + [n for n in nodes if n not in seen]


def _flatten(tree: Dict[str, Any], prefix: str
             ) -> Tuple[Dict[str, Dict[str, Any]], List[Tuple[str, str]]]:
    """Flatten nested NIRGraphs: ``(nodes, edges)`` of primitives only.

    An inner graph ``sub``'s nodes become ``sub.<name>``; its Input and Output
    nodes are pass-throughs and are contracted away. An edge into ``sub``
    enters its single Input, an edge out of ``sub`` leaves its single Output;
    ``sub.<name>`` in an edge addresses an inner node directly.
    """
    label = prefix.rstrip(".") or "(top)"
    raw_nodes = tree.get("nodes")
    if not isinstance(raw_nodes, dict):
        raise _Reject(f"graph {label} has no 'nodes' group")
    nodes: Dict[str, Dict[str, Any]] = {}
    edges: List[Tuple[str, str]] = []
    passthrough: List[str] = []
    ports: Dict[Tuple[str, str], List[str]] = {}  # (subgraph, 'Input'|'Output') -> flat names

    def put(flat: str, fields: Dict[str, Any]) -> None:
        if flat in nodes:
            raise _Reject(f"two nodes are both named '{flat}' once nested graphs are flattened")
        nodes[flat] = fields

    for local, fields in raw_nodes.items():
        if not isinstance(fields, dict) or "type" not in fields:
            raise _Reject(f"node '{prefix}{local}' has no 'type'")
        if _text(fields["type"]) != "NIRGraph":
            put(f"{prefix}{local}", fields)
            continue
        sub = f"{prefix}{local}."
        inner, inner_edges = _flatten(fields, sub)
        for typ in ("Input", "Output"):
            own = [f"{sub}{k}" for k, f in fields["nodes"].items()
                   if isinstance(f, dict) and _text(f.get("type")) == typ]
            ports[(local, typ)] = own
            passthrough.extend(own)
        for flat, f in inner.items():
            put(flat, f)
        edges.extend(inner_edges)

    def resolve(end: str, typ: str) -> str:
        if end in raw_nodes and _text(raw_nodes[end].get("type")) == "NIRGraph":
            own = ports[(end, typ)]
            if len(own) != 1:
                raise _Reject(f"an edge names subgraph '{prefix}{end}', which has "
                              f"{len(own)} {typ} nodes (expected one)")
            return own[0]
        if f"{prefix}{end}" in nodes:
            return f"{prefix}{end}"
        raise _Reject(f"an edge names unknown node '{prefix}{end}'")

    for src, dst in _edge_list(tree.get("edges"), label):
        edges.append((resolve(src, "Output"), resolve(dst, "Input")))

    for p in passthrough:  # connect every predecessor to every successor
        ins = [s for s, d in edges if d == p]
        outs = [d for s, d in edges if s == p]
        edges = [(s, d) for s, d in edges if p not in (s, d)]
        edges.extend((s, d) for s in ins for d in outs)
        del nodes[p]
    return nodes, edges


def _edge_list(raw: Any, label: str) -> List[Tuple[str, str]]:
    if raw is None:
        return []
    arr = np.asarray(raw, dtype=object)
    if arr.size == 0:
        return []
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise _Reject(f"graph {label}: 'edges' has shape {arr.shape}, "
                      "expected (N, 2)")
    return [(_text(a), _text(b)) for a, b in arr]


# ---------------------------------------------------------------- the table
def _make_op(name: str, ntype: str, f: Dict[str, Any], semantics: str) -> Op:
    builder = _BUILDERS.get(ntype)
    if builder is None:
        raise _Reject(f"node '{name}' has NIR type {ntype!r}, which nmtc does not support; "
                      f"supported: {', '.join(sorted(_BUILDERS))}", UnsupportedOpError)
    known = set(_FIELDS[ntype]) | set(_OPTIONAL.get(ntype, ())) | _DERIVED_FIELDS | {"type"}
    extra = sorted(set(f) - known)
    if extra:
        raise _Reject(f"node '{name}' ({ntype}) has fields {extra} unknown to nmtc; their "
                      "meaning cannot be kept", UnsupportedOpError)
    missing = [k for k in _FIELDS[ntype] if f.get(k) is None]
    if missing:
        raise _Reject(f"node '{name}' ({ntype}) lacks field(s) {missing}")
    try:
        return builder(f, semantics)
    except (OpCheckError, ValueError, TypeError) as e:
        raise _Reject(f"node '{name}' ({ntype}): bad field ({_one_line(e)})") from None


def _arr(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # torch tensor from an in-memory graph
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def _ints(v: Any) -> Tuple[int, ...]:
    return tuple(int(x) for x in _arr(v).reshape(-1))


def _conv_padding(f: Dict[str, Any], nd: int) -> Any:
    """NIR padding may be an int, a tuple, or the strings 'valid' / 'same'."""
    pad = f["padding"]
    if isinstance(pad, (str, bytes)) or (isinstance(pad, np.ndarray) and pad.dtype.kind in "SUO"):
        pad = _text(pad.item() if isinstance(pad, np.ndarray) else pad)
        if pad == "valid":
            return (0,) * nd
        if pad == "same":
            k = _arr(f["weight"]).shape[2:]
            dil = _ints(f["dilation"]) * (nd if _arr(f["dilation"]).size == 1 else 1)
            stride = _ints(f["stride"])
            if any(s != 1 for s in stride) or any(d * (kk - 1) % 2 for d, kk in zip(dil, k)):
                raise ValueError("padding='same' needs stride 1 and an odd effective kernel")
            return tuple(d * (kk - 1) // 2 for d, kk in zip(dil, k))
        raise ValueError(f"padding {pad!r}")
    return _ints(pad)


def _delay(v: Any) -> np.ndarray:
    d = _arr(v).astype(np.float64)
    if not np.allclose(d, np.round(d)):
        raise ValueError("delay values must be whole time steps (the IR counts delays in steps)")
    return np.round(d).astype(np.int64)


def _neuron(cls: type, f: Dict[str, Any], names: Sequence[str], semantics: str) -> Op:
    """Neuron op with NIR's meaning for the IR fields NIR does not have."""
    kwargs: Dict[str, Any] = {k: _arr(f[k]) if f.get(k) is not None else _ABSENT[k]
                              for k in names}
    if cls in (CubaLIF, CubaLI):  # NIR's Euler step in the IR's (Loihi) form
        kwargs["tau_syn"], kwargs["tau_mem"], kwargs["r"], kwargs["w_in"] = cuba_from_nir(
            kwargs["tau_syn"], kwargs["tau_mem"], kwargs["r"], kwargs["w_in"])
    if cls in (IF, LIF, CubaLIF):
        v_reset = f.get("v_reset")
        kwargs.update(
            reset=semantics,
            v_reset=_arr(v_reset) if v_reset is not None else np.zeros_like(kwargs["v_threshold"]),
            v_init=0.0, v_min=None, v_bias=0.0, spike="single", compare=">")
    return cls(**kwargs)


#: Value of an optional field a file may lack (w_in: NIR's default).
_ABSENT: Dict[str, Any] = {"w_in": 1.0}

#: NIR fields each type must carry, in NIR's order.
_FIELDS: Dict[str, Tuple[str, ...]] = {
    "Input": ("shape",), "Output": (),
    "Affine": ("weight", "bias"), "Linear": ("weight",), "Scale": ("scale",),
    "Conv1d": ("weight", "stride", "padding", "dilation", "groups", "bias"),
    "Conv2d": ("weight", "stride", "padding", "dilation", "groups", "bias"),
    "SumPool2d": ("kernel_size", "stride", "padding"),
    "AvgPool2d": ("kernel_size", "stride", "padding"),
    "Flatten": ("start_dim", "end_dim"), "Delay": ("delay",),
    "I": ("r",), "IF": ("r", "v_threshold"), "LI": ("tau", "r", "v_leak"),
    "LIF": ("tau", "r", "v_leak", "v_threshold"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold"),
    "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak"),
    "Threshold": ("threshold",),
}
#: Fields that may be absent (older versions) and their meaning when absent.
_OPTIONAL: Dict[str, Tuple[str, ...]] = {
    "Output": ("shape",),
    "IF": ("v_reset",), "LIF": ("v_reset",), "CubaLIF": ("w_in", "v_reset"),
    "CubaLI": ("w_in",),
}

_BUILDERS: Dict[str, Callable[[Dict[str, Any], str], Op]] = {
    "Input": lambda f, s: Input(shape=_ints(f["shape"])),
    "Output": lambda f, s: Output(shape=_ints(f["shape"]) if f.get("shape") is not None
                                  else None),
    "Affine": lambda f, s: Affine(weight=_arr(f["weight"]), bias=_arr(f["bias"])),
    "Linear": lambda f, s: Linear(weight=_arr(f["weight"])),
    "Scale": lambda f, s: Scale(scale=_arr(f["scale"])),
    "Conv1d": lambda f, s: Conv1d(
        weight=_arr(f["weight"]), bias=_arr(f["bias"]), stride=_ints(f["stride"]),
        padding=_conv_padding(f, 1), dilation=_ints(f["dilation"]),
        groups=int(_arr(f["groups"]))),
    "Conv2d": lambda f, s: Conv2d(
        weight=_arr(f["weight"]), bias=_arr(f["bias"]), stride=_ints(f["stride"]),
        padding=_conv_padding(f, 2), dilation=_ints(f["dilation"]),
        groups=int(_arr(f["groups"]))),
    "SumPool2d": lambda f, s: SumPool2d(kernel_size=_ints(f["kernel_size"]),
                                        stride=_ints(f["stride"]), padding=_ints(f["padding"])),
    "AvgPool2d": lambda f, s: AvgPool2d(kernel_size=_ints(f["kernel_size"]),
                                        stride=_ints(f["stride"]), padding=_ints(f["padding"])),
    "Flatten": lambda f, s: Flatten(start_dim=int(_arr(f["start_dim"])),
                                    end_dim=int(_arr(f["end_dim"]))),
    "Delay": lambda f, s: Delay(delay=_delay(f["delay"])),
    "Threshold": lambda f, s: Threshold(threshold=_arr(f["threshold"])),
    "I": lambda f, s: _neuron(I, f, ("r",), s),
    "IF": lambda f, s: _neuron(IF, f, ("r", "v_threshold"), s),
    "LI": lambda f, s: _neuron(LI, f, ("tau", "r", "v_leak"), s),
    "LIF": lambda f, s: _neuron(LIF, f, ("tau", "r", "v_leak", "v_threshold"), s),
    "CubaLIF": lambda f, s: _neuron(
        CubaLIF, f, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in"), s),
    "CubaLI": lambda f, s: _neuron(CubaLI, f, ("tau_syn", "tau_mem", "r", "v_leak", "w_in"), s),
}


# ------------------------------------------------------------------ helpers
def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return _text(v.item())
    return str(v)


def _jsonable(v: Any) -> Any:
    """NIR metadata (h5py values) as JSON-serializable Python values."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf8", "replace")
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist()) if v.ndim else _jsonable(v.item())
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


__all__ = ["load_nir", "graph_from_nir", "reset_semantics_for_version", "parse_nir_version"]
