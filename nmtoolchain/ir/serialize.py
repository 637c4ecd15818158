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

from nmtoolchain.errors import BadInputError, IRValidationError
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
    """Parse the bytes of a ``.nmir`` file; errors name ``origin``."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        doc = json.loads(zf.read("graph.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise BadInputError(f"{origin}: not a readable nmtc IR file ({e})") from None
    if doc.get("format") != FORMAT:
        raise BadInputError(f"{origin}: not an nmtc IR file (format {doc.get('format')!r})")
    if doc.get("version", 0) > FORMAT_VERSION:
        raise BadInputError(f"{origin}: IR format version {doc['version']} is newer than this "
                            f"nmtc supports ({FORMAT_VERSION}); upgrade nmtc")
    version = doc.get("version", 0)
    graph = Graph(_from_json(doc.get("metadata", {})))
    for rec in doc["nodes"]:
        cls = OP_REGISTRY.get(rec["op"])
        if cls is None:
            raise BadInputError(f"{origin}: node '{rec['name']}' has unknown op {rec['op']!r}")
        kwargs = {}
        for k, v in rec["fields"].items():
            if isinstance(v, dict) and "__npy__" in v:
                try:
                    kwargs[k] = np.load(io.BytesIO(zf.read(v["__npy__"])), allow_pickle=False)
                except (KeyError, ValueError, zipfile.BadZipFile) as e:
                    raise BadInputError(f"{origin}: array {v['__npy__']} unreadable ({e})") from None
            else:
                kwargs[k] = _from_json(v)
        annotations = _from_json(rec.get("annotations", {}))
        try:
            if version < 2:
                numerics = _upgrade_v1_node(cls, kwargs, annotations)
            else:
                numerics = (numerics_from_dict(_from_json(rec["numerics"]))
                            if rec.get("numerics") is not None else None)
        except IRValidationError as e:
            raise BadInputError(f"{origin}: node '{rec['name']}' ({rec['op']}): {e}") from None
        try:
            op = cls(**kwargs)
        except TypeError as e:
            raise BadInputError(f"{origin}: node '{rec['name']}' ({rec['op']}): {e}") from None
        try:
            graph.add(rec["name"], op, rec["inputs"], annotations, numerics=numerics)
        except IRValidationError as e:
            raise BadInputError(f"{origin}: {e}") from None
    return graph


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
    path = Path(path)
    return graph_from_bytes(path.read_bytes(), str(path))
