"""Save and load an IR graph as one deterministic file (``.nmir``).

The file is a zip archive with fixed timestamps holding ``graph.json`` (format
version, metadata, nodes in order with their op, inputs, scalar fields,
target numerics and annotations) and one ``.npy`` per array field. Saving the
same graph twice gives the same bytes. Loading never unpickles
(``allow_pickle=False``).

Format versions: 2 writes a node's typed target numerics as ``numerics``
(``{'kind': 'loihi.cuba', ...}``, see :mod:`nmtoolchain.numerics`) and the
LIF/LI ``discretization`` as an op field. Version 1 files carried both in
annotations (``loihi``, ``discretization``); they are still read, converted
on load (:func:`_upgrade_v1_node`).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from nmtoolchain.errors import BadInputError, NmtcError
from nmtoolchain.ir.graph import Graph
from nmtoolchain.ir.op import OP_REGISTRY
from nmtoolchain.numerics import numerics_from_dict
from nmtoolchain.numerics.loihi import from_legacy_annotation

FORMAT = "nmtc-ir"
FORMAT_VERSION = 2
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"__tuple__": [_jsonable(v) for v in value]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if "__array__" in value:
            return np.asarray(value["__array__"], dtype=value["dtype"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def graph_to_bytes(graph: Graph) -> bytes:
    """Serialize ``graph`` to the bytes of a ``.nmir`` file."""
    arrays: Dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.nodes.values():
        fields: Dict[str, Any] = {}
        for k, v in node.op.field_values().items():
            if isinstance(v, np.ndarray):
                key = f"arrays/{len(arrays):05d}.npy"
                arrays[key] = v
                fields[k] = {"__npy__": key}
            else:
                fields[k] = _jsonable(v)
        rec = {"name": node.name, "op": node.op_name, "inputs": list(node.inputs),
               "fields": fields, "annotations": _jsonable(node.annotations)}
        if node.numerics is not None:
            rec["numerics"] = _jsonable(node.numerics.to_dict())
        nodes.append(rec)
    doc = {"format": FORMAT, "version": FORMAT_VERSION,
           "metadata": _jsonable(graph.metadata), "nodes": nodes}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        def put(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
        put("graph.json", json.dumps(doc, indent=1, sort_keys=True, allow_nan=True).encode())
        for key, arr in arrays.items():
            b = io.BytesIO()
            np.save(b, np.ascontiguousarray(arr), allow_pickle=False)
            put(key, b.getvalue())
    return buf.getvalue()


def save_graph(graph: Graph, path: Union[str, Path]) -> Path:
    """Write ``graph`` to ``path`` atomically (temporary file, then rename)."""
    from nmtoolchain.fileio import atomic_output

    path = Path(path)
    data = graph_to_bytes(graph)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def graph_from_bytes(data: bytes, origin: str = "<bytes>") -> Graph:
    """Parse the bytes of a ``.nmir`` file; errors name ``origin``.

    Every malformed part (a member missing or truncated, a JSON value of the
    wrong type, an array that is not real and finite) is a BadInputError
    naming ``origin``, the node and the member or field.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        doc = json.loads(zf.read("graph.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, RuntimeError, OSError) as e:
        raise BadInputError(f"{origin}: not a readable nmtc IR file ({e})") from None
    except Exception as e:  # zlib.error and other decompression failures
        raise BadInputError(f"{origin}: not a readable nmtc IR file ({type(e).__name__}: "
                            f"{e})") from None
    if not isinstance(doc, dict):
        raise BadInputError(f"{origin}: graph.json holds a {type(doc).__name__}, not an object")
    if doc.get("format") != FORMAT:
        raise BadInputError(f"{origin}: not an nmtc IR file (format {doc.get('format')!r})")
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BadInputError(f"{origin}: graph.json 'version' is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise BadInputError(f"{origin}: IR format version {version} is newer than this "
                            f"nmtc supports ({FORMAT_VERSION}); upgrade nmtc")
    nodes = doc.get("nodes")
    if not isinstance(nodes, list):
        raise BadInputError(f"{origin}: graph.json 'nodes' is {type(nodes).__name__}, "
                            "expected a list of node records")
    try:
        metadata = _from_json(doc.get("metadata", {}))
    except (TypeError, ValueError) as e:
        raise BadInputError(f"{origin}: graph.json 'metadata' is malformed ({e})") from None
    if not isinstance(metadata, dict):
        raise BadInputError(f"{origin}: graph.json 'metadata' is a {type(metadata).__name__}, "
                            "expected an object")
    graph = Graph(metadata)
    for i, rec in enumerate(nodes):
        _add_node(graph, zf, rec, i, version, origin)
    return graph


def _record(rec: Any, i: int, origin: str) -> Dict[str, Any]:
    """Check a node record's keys and their JSON types."""
    if not isinstance(rec, dict):
        raise BadInputError(f"{origin}: node #{i} is a {type(rec).__name__}, expected an object")
    name = rec.get("name")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{origin}: node #{i} has no name (got {name!r})")
    expect = {"op": str, "inputs": list, "fields": dict}
    for key, typ in expect.items():
        if not isinstance(rec.get(key), typ):
            raise BadInputError(f"{origin}: node '{name}' '{key}' is "
                                f"{type(rec.get(key)).__name__}, expected {typ.__name__}")
    if not all(isinstance(x, str) for x in rec["inputs"]):
        raise BadInputError(f"{origin}: node '{name}' 'inputs' must be node names (strings), "
                            f"got {rec['inputs']!r}")
    if not isinstance(rec.get("annotations", {}), dict):
        raise BadInputError(f"{origin}: node '{name}' 'annotations' is not an object")
    if rec.get("numerics") is not None and not isinstance(rec["numerics"], dict):
        raise BadInputError(f"{origin}: node '{name}' 'numerics' is not an object")
    return rec


def _array(zf: zipfile.ZipFile, ref: Any, where: str) -> np.ndarray:
    if not isinstance(ref, str):
        raise BadInputError(f"{where}: array reference {ref!r} is not a member name")
    try:
        arr = np.load(io.BytesIO(zf.read(ref)), allow_pickle=False)
    except KeyError:
        raise BadInputError(f"{where}: array member {ref} is missing") from None
    except Exception as e:  # ValueError (pickled/garbled), EOFError, zlib.error, ...
        raise BadInputError(f"{where}: array {ref} unreadable ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:120]})") from None
    if arr.dtype.kind not in "biuf":
        raise BadInputError(f"{where}: array {ref} has dtype {arr.dtype}; expected real numbers")
    if arr.dtype.kind == "f" and arr.size:
        if np.isnan(arr).any():
            raise BadInputError(f"{where}: array {ref} holds NaN values")
        if where.endswith(_FINITE_FIELDS) and np.isinf(arr).any():
            raise BadInputError(f"{where}: array {ref} holds infinite values")
    return arr


#: fields that must be finite (a time constant may be inf: no decay)
_FINITE_FIELDS = ("field weight", "field bias")


def _check_field_types(cls: type, kwargs: Dict[str, Any], where: str) -> None:
    """A field whose default is a number must not hold text or a nested list (the op
    would store it and fail later, inside a pass)."""
    import dataclasses

    for f in dataclasses.fields(cls):
        if f.name not in kwargs:
            continue
        if isinstance(kwargs[f.name], str) and "str" not in str(f.type) \
                and "Any" not in str(f.type):
            raise BadInputError(f"{where}: field {f.name} is {kwargs[f.name]!r}; expected "
                                f"{f.type}")
        if f.default is dataclasses.MISSING:
            continue
        default, value = f.default, kwargs[f.name]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            ok = (isinstance(value, (int, float, np.ndarray)) and not isinstance(value, bool)) \
                or value is None
            if isinstance(value, (list, tuple)):
                try:
                    ok = np.asarray(value).dtype.kind in "iuf"
                except (ValueError, TypeError):
                    ok = False
            if not ok:
                raise BadInputError(f"{where}: field {f.name} is {value!r}; expected a number")


def _add_node(graph: Graph, zf: zipfile.ZipFile, rec: Any, i: int, version: int,
              origin: str) -> None:
    rec = _record(rec, i, origin)
    where = f"{origin}: node '{rec['name']}' ({rec['op']})"
    cls = OP_REGISTRY.get(rec["op"])
    if cls is None:
        raise BadInputError(f"{origin}: node '{rec['name']}' has unknown op {rec['op']!r}")
    kwargs = {}
    try:
        for k, v in rec["fields"].items():
            if isinstance(v, dict) and "__npy__" in v:
                kwargs[k] = _array(zf, v["__npy__"], f"{where} field {k}")
            else:
                kwargs[k] = _from_json(v)
        annotations = _from_json(rec.get("annotations", {}))
        if version < 2:
            numerics = _upgrade_v1_node(cls, kwargs, annotations)
        else:
            numerics = (numerics_from_dict(_from_json(rec["numerics"]))
                        if rec.get("numerics") is not None else None)
        _check_field_types(cls, kwargs, where)
        op = cls(**kwargs)
    except NmtcError as e:
        if str(e).startswith(origin):
            raise
        raise BadInputError(f"{where}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as e:
        raise BadInputError(f"{where}: malformed fields ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:160]})") from None
    try:
        graph.add(rec["name"], op, rec["inputs"], annotations, numerics=numerics)
    except NmtcError as e:
        raise BadInputError(f"{origin}: {e}") from None


def _upgrade_v1_node(cls: type, fields: Dict[str, Any], annotations: Dict[str, Any]) -> Any:
    """Move a version-1 node's semantic annotations into typed places, in place.

    ``annotations['discretization']`` becomes the op field of that name (when
    the op has one); ``annotations['loihi']`` becomes the returned numerics
    record, its report-only counts going to ``annotations['netx_import']``.
    """
    disc = annotations.pop("discretization", None)
    if disc is not None and "discretization" in getattr(cls, "__dataclass_fields__", {}):
        fields.setdefault("discretization", disc)
    legacy = annotations.pop("loihi", None)
    if not isinstance(legacy, dict):
        return None
    numerics, info = from_legacy_annotation(legacy)
    if info:
        annotations["netx_import"] = info
    return numerics


def load_graph(path: Union[str, Path]) -> Graph:
    """Read a ``.nmir`` file written by :func:`save_graph`."""
    from nmtoolchain.fileio import require_regular_file

    path = require_regular_file(path, "nmtc IR file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None
    return graph_from_bytes(data, str(path))
