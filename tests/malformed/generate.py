"""Build a corpus of malformed inputs for every nmtc command (issue 16).

Each case is a directory holding the files it needs and an argv for ``nmtc``;
it is built from nmtc's bundled model files by truncation, byte flips, wrong
suffixes and structural edits (mistyped ``.nmir`` members, checkpoint configs
of the wrong type, ONNX attributes out of range, NaN/Inf/complex weights, NIR
self-loops), plus bad data, profiles, CLI values, FIFOs and read-only output
directories. The expected outcome of every case is a failure: exit 2 with
exactly one line on stderr and no file left behind.

Deterministic: the same seed builds the same cases.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "nmtoolchain" / "data"
SEEDS = {
    "cnn.onnx": DATA / "digits_cnn.onnx",
    "ckpt.pt": DATA / "digits_qcfs_cnn.pt",
    "ts.pt": DATA / "digits_cnn.pt",
    "snn.nmir": DATA / "digits_cnn_snn.nmir",
    "net.nir": ROOT / "tests" / "data" / "cubali_nir108.nir",
}


@dataclass
class Case:
    """One malformed invocation: files to create in a fresh directory, then argv."""

    name: str
    argv: List[str]
    files: Dict[str, bytes] = field(default_factory=dict)
    setup: Optional[Callable[[Path], None]] = None  # e.g. make a FIFO or a read-only dir
    expect: int = 2
    #: an edge input that may be valid: loading it (exit 0) is also right
    may_load: bool = False


def _trunc_flip_cases(rng: random.Random) -> List[Case]:
    cases: List[Case] = []
    for fname, src in SEEDS.items():
        data = src.read_bytes()
        for frac in (0.0005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
            cut = max(1, int(len(data) * frac))
            cases.append(Case(f"trunc-{fname}-{frac}", ["inspect", fname], {fname: data[:cut]}))
        for i in range(12):
            b = bytearray(data)
            for _ in range(1 + i % 4):
                pos = rng.randrange(len(b))
                b[pos] ^= 1 << rng.randrange(8)
            cases.append(Case(f"flip-{fname}-{i}", ["inspect", fname], {fname: bytes(b)}))
        for suffix in (".onnx", ".nir", ".nmir", ".pt", ".npz", ".txt"):
            wrong = f"model{suffix}"
            if Path(fname).suffix != suffix:
                # a renamed valid file must load; a renamed truncated file must fail
                cases.append(Case(f"suffix-{fname}-{suffix}", ["inspect", wrong],
                                  {wrong: data[: len(data) // 3]}))
        cases.append(Case(f"empty-{fname}", ["inspect", fname], {fname: b""}))
    return cases


def _zip_rewrite(data: bytes, edit: Callable[[Dict[str, bytes]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    edit(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return out.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=True)
    return b.getvalue()


def _nmir_cases() -> List[Case]:
    data = SEEDS["snn.nmir"].read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        doc = json.loads(zf.read("graph.json"))
        arrays = [n for n in zf.namelist() if n.endswith(".npy")]

    def doc_edit(fn: Callable[[dict], None]) -> bytes:
        d = json.loads(json.dumps(doc))
        fn(d)
        return _zip_rewrite(data, lambda m: m.__setitem__("graph.json", json.dumps(d).encode()))

    edits: Dict[str, Callable[[dict], None]] = {
        "nodes-dict": lambda d: d.__setitem__("nodes", {}),
        "nodes-str": lambda d: d.__setitem__("nodes", "x"),
        "nodes-missing": lambda d: d.pop("nodes"),
        "node-list": lambda d: d["nodes"].__setitem__(0, [1, 2]),
        "node-no-name": lambda d: d["nodes"][1].pop("name"),
        "node-no-op": lambda d: d["nodes"][1].pop("op"),
        "node-op-int": lambda d: d["nodes"][1].__setitem__("op", 5),
        "fields-list": lambda d: d["nodes"][1].__setitem__("fields", [1]),
        "fields-missing": lambda d: d["nodes"][1].pop("fields"),
        "inputs-str": lambda d: d["nodes"][1].__setitem__("inputs", "abc"),
        "inputs-unknown": lambda d: d["nodes"][1].__setitem__("inputs", ["nope"]),
        "inputs-self": lambda d: d["nodes"][1].__setitem__("inputs", [d["nodes"][1]["name"]]),
        "inputs-int": lambda d: d["nodes"][1].__setitem__("inputs", [3]),
        "dup-name": lambda d: d["nodes"][2].__setitem__("name", d["nodes"][1]["name"]),
        "metadata-list": lambda d: d.__setitem__("metadata", [1]),
        "version-str": lambda d: d.__setitem__("version", "2"),
        "version-big": lambda d: d.__setitem__("version", 99),
        "format-bad": lambda d: d.__setitem__("format", "x"),
        "annotations-list": lambda d: d["nodes"][1].__setitem__("annotations", [1]),
        "numerics-str": lambda d: d["nodes"][-1].__setitem__("numerics", "loihi"),
        "numerics-kind": lambda d: d["nodes"][-1].__setitem__("numerics", {"kind": "nope"}),
        "npy-ref-int": lambda d: [f.__setitem__(k, {"__npy__": 7}) for n in d["nodes"][1:2]
                                  for k, f in [(k, n["fields"]) for k in list(n["fields"])[:1]]],
        "array-json-bad": lambda d: d["metadata"].__setitem__("x", {"__array__": "a",
                                                                    "dtype": "nonsense"}),
        "tuple-bad": lambda d: d["metadata"].__setitem__("x", {"__tuple__": 5}),
    }
    for node in doc["nodes"]:
        for k, v in node["fields"].items():
            if not isinstance(v, dict):
                edits.setdefault(f"field-{node['op']}-{k}-str",
                                 (lambda n, kk: lambda d: _set_field(d, n, kk, "x"))(node["name"], k))
                edits.setdefault(f"field-{node['op']}-{k}-list",
                                 (lambda n, kk: lambda d: _set_field(d, n, kk, [[1], 2]))(node["name"], k))
                edits.setdefault(f"field-{node['op']}-{k}-neg",
                                 (lambda n, kk: lambda d: _set_field(d, n, kk, -7))(node["name"], k))
    cases = [Case(f"nmir-{k}", ["inspect", "m.nmir"], {"m.nmir": doc_edit(fn)},
                  may_load=k.endswith("-neg") or k.startswith("numerics-"))
             for k, fn in edits.items()]
    cases.append(Case("nmir-not-json", ["inspect", "m.nmir"],
                      {"m.nmir": _zip_rewrite(data, lambda m: m.__setitem__("graph.json", b"{x"))}))
    cases.append(Case("nmir-json-list", ["inspect", "m.nmir"],
                      {"m.nmir": _zip_rewrite(data, lambda m: m.__setitem__("graph.json", b"[]"))}))
    cases.append(Case("nmir-json-binary", ["inspect", "m.nmir"],
                      {"m.nmir": _zip_rewrite(data, lambda m: m.__setitem__("graph.json",
                                                                             b"\xff\xfe\x00"))}))
    bad_arrays = {
        "missing": None, "truncated": b"\x93NUMPY\x01\x00", "text": b"hello",
        "nan": _npy(np.full((4, 4), np.nan, np.float32)),
        "inf": _npy(np.full((4, 4), np.inf, np.float32)),
        "complex": _npy(np.ones((4, 4), np.complex64)),
        "object": _npy(np.array([object()], dtype=object)),
        "strings": _npy(np.array(["a", "b"])),
        "scalar": _npy(np.float32(1.0)),
        "5d": _npy(np.ones((1, 1, 1, 1, 1), np.float32)),
        "empty": _npy(np.zeros((0,), np.float32)),
        "wrong-shape": _npy(np.ones((3, 5), np.float32)),
        "int-huge": _npy(np.full((4, 4), 2**62, np.int64)),
        "bool": _npy(np.ones((4, 4), bool)),
    }
    for i, member in enumerate(arrays[:4]):
        for tag, blob in bad_arrays.items():
            def edit(m: Dict[str, bytes], member=member, blob=blob) -> None:
                if blob is None:
                    m.pop(member)
                else:
                    m[member] = blob
            cases.append(Case(f"nmir-array{i}-{tag}", ["inspect", "m.nmir"],
                              {"m.nmir": _zip_rewrite(data, edit)},
                              may_load=tag in ("scalar", "inf", "int-huge", "bool")))
    return cases


def _set_field(d: dict, node: str, key: str, value) -> None:
    for n in d["nodes"]:
        if n["name"] == node:
            n["fields"][key] = value


def _checkpoint_cases() -> List[Case]:
    import torch

    base = torch.load(SEEDS["ckpt.pt"], weights_only=True)

    def save(obj) -> bytes:
        b = io.BytesIO()
        torch.save(obj, b)
        return b.getvalue()

    def variant(fn: Callable[[dict], None]) -> bytes:
        c = dict(base)
        c["config"] = dict(base["config"])
        c["state_dict"] = dict(base["state_dict"])
        fn(c)
        return save(c)

    first = next(iter(base["state_dict"]))
    edits: Dict[str, Callable[[dict], None]] = {
        "config-list": lambda c: c.__setitem__("config", [1, 2]),
        "config-str": lambda c: c.__setitem__("config", "cnn"),
        "config-none": lambda c: c.__setitem__("config", None),
        "arch-unknown": lambda c: c.__setitem__("architecture", "resnet9000"),
        "arch-int": lambda c: c.__setitem__("architecture", 3),
        "arch-missing": lambda c: c.pop("architecture"),
        "shape-str": lambda c: c.__setitem__("input_shape", "1,8,8"),
        "shape-neg": lambda c: c.__setitem__("input_shape", [1, -8, 8]),
        "shape-huge": lambda c: c.__setitem__("input_shape", [1, 10**6, 10**6]),
        "shape-dict": lambda c: c.__setitem__("input_shape", {"a": 1}),
        "shape-float": lambda c: c.__setitem__("input_shape", [1.5, 8, 8]),
        "state-list": lambda c: c.__setitem__("state_dict", [1]),
        "state-missing": lambda c: c.pop("state_dict"),
        "state-key-missing": lambda c: c["state_dict"].pop(first),
        "state-extra-key": lambda c: c["state_dict"].__setitem__("bogus", torch.ones(2)),
        "state-wrong-shape": lambda c: c["state_dict"].__setitem__(first, torch.ones(3, 3)),
        "state-nan": lambda c: c["state_dict"].__setitem__(
            first, torch.full_like(base["state_dict"][first], float("nan"))),
        "state-inf": lambda c: c["state_dict"].__setitem__(
            first, torch.full_like(base["state_dict"][first], float("inf"))),
        "state-complex": lambda c: c["state_dict"].__setitem__(
            first, base["state_dict"][first].to(torch.complex64)),
        "state-int": lambda c: c["state_dict"].__setitem__(
            first, base["state_dict"][first].to(torch.int64)),
        "state-not-tensor": lambda c: c["state_dict"].__setitem__(first, 3),
        "version-99": lambda c: c.__setitem__("nmtc_checkpoint", 99),
        "version-str": lambda c: c.__setitem__("nmtc_checkpoint", "1"),
        "channels-str": lambda c: c["config"].__setitem__("channels", "816"),
        "channels-zero": lambda c: c["config"].__setitem__("channels", [0, 16]),
        "channels-neg": lambda c: c["config"].__setitem__("channels", [-8, 16]),
        "channels-huge": lambda c: c["config"].__setitem__("channels", [10**7, 10**7]),
        "kernel-zero": lambda c: c["config"].__setitem__("kernel_size", 0),
        "kernel-str": lambda c: c["config"].__setitem__("kernel_size", "3"),
        "levels-zero": lambda c: c["config"].__setitem__("levels", 0),
        "levels-float": lambda c: c["config"].__setitem__("levels", 2.5),
        "threshold-str": lambda c: c["config"].__setitem__("threshold", "high"),
        "pool-bad": lambda c: c["config"].__setitem__("pool", "median"),
        "activation-list": lambda c: c["config"].__setitem__("activation", ["relu"]),
        "unknown-key": lambda c: c["config"].__setitem__("depth", 9),
        "config-key-int": lambda c: c["config"].__setitem__(1, 2),
        "bn-str": lambda c: c["config"].__setitem__("batch_norm", "yes"),
        "classes-zero": lambda c: c["config"].__setitem__("num_classes", 0),
    }
    cases = [Case(f"ckpt-{k}", ["inspect", "c.pt"], {"c.pt": variant(fn)}) for k, fn in edits.items()]
    cases.append(Case("ckpt-protocol5-pickle", ["inspect", "c.pt", "--allow-code"],
                      {"c.pt": _pickle_bytes(5)}))
    cases.append(Case("ckpt-protocol4-pickle", ["inspect", "c.pt", "--allow-code"],
                      {"c.pt": _pickle_bytes(4)}))
    cases.append(Case("ckpt-list", ["inspect", "c.pt"], {"c.pt": save([1, 2, 3])}))
    cases.append(Case("ckpt-tensor", ["inspect", "c.pt"], {"c.pt": save(torch.ones(3))}))
    return cases


def _pickle_bytes(protocol: int) -> bytes:
    import pickle

    return pickle.dumps({"a": 1}, protocol=protocol)


def _onnx_cases() -> List[Case]:
    import onnx
    from onnx import helper, numpy_helper

    base = onnx.load_from_string(SEEDS["cnn.onnx"].read_bytes())

    def variant(fn: Callable[["onnx.ModelProto"], None]) -> bytes:
        m = onnx.ModelProto()
        m.CopyFrom(base)
        fn(m)
        return m.SerializeToString()

    def set_attr(op: str, name: str, value) -> Callable:
        def fn(m) -> None:
            for node in m.graph.node:
                if node.op_type == op:
                    for a in list(node.attribute):
                        if a.name == name:
                            node.attribute.remove(a)
                    node.attribute.append(helper.make_attribute(name, value))
                    return
        return fn

    def init_edit(kind: str) -> Callable:
        def fn(m) -> None:
            t = m.graph.initializer[0]
            arr = numpy_helper.to_array(t).copy()
            if kind == "nan":
                arr = np.full_like(arr, np.nan)
            elif kind == "inf":
                arr = np.full_like(arr, -np.inf)
            elif kind == "complex":
                arr = arr.astype(np.complex64)
            elif kind == "shape":
                arr = arr.reshape(-1)[:3]
            elif kind == "int":
                arr = arr.astype(np.int32)
            elif kind == "empty":
                arr = arr.reshape(-1)[:0]
            new = numpy_helper.from_array(arr, t.name)
            t.CopyFrom(new)
        return fn

    def drop_node(i: int) -> Callable:
        return lambda m: m.graph.node.remove(m.graph.node[i])

    def cycle(m) -> None:
        first, last = m.graph.node[0], m.graph.node[len(m.graph.node) - 1]
        first.input[0] = last.output[0]

    def ext_data(m) -> None:
        t = m.graph.initializer[0]
        t.data_location = onnx.TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "../../../../etc/passwd"
        t.ClearField("raw_data")

    def input_dim(v) -> Callable:
        def fn(m) -> None:
            d = m.graph.input[0].type.tensor_type.shape.dim
            d[len(d) - 1].dim_value = v
        return fn

    edits = {
        "stride0": set_attr("Conv", "strides", [0, 0]),
        "stride-neg": set_attr("Conv", "strides", [-1, -1]),
        "stride-huge": set_attr("Conv", "strides", [2**40, 2**40]),
        "dilation0": set_attr("Conv", "dilations", [0, 0]),
        "pads-neg": set_attr("Conv", "pads", [-5, -5, -5, -5]),
        "pads-huge": set_attr("Conv", "pads", [10**6] * 4),
        "pads-short": set_attr("Conv", "pads", [1]),
        "group0": set_attr("Conv", "group", 0),
        "group-bad": set_attr("Conv", "group", 3),
        "kernel-bad": set_attr("Conv", "kernel_shape", [9, 9]),
        "kernel0": set_attr("Conv", "kernel_shape", [0, 0]),
        "autopad-bad": set_attr("Conv", "auto_pad", b"WHATEVER"),
        "pool-stride0": set_attr("MaxPool", "strides", [0, 0]),
        "pool-kernel0": set_attr("MaxPool", "kernel_shape", [0, 0]),
        "avgpool-stride0": set_attr("AveragePool", "strides", [0, 0]),
        "avgpool-kernel0": set_attr("AveragePool", "kernel_shape", [0, 0]),
        "gemm-transB-str": set_attr("Gemm", "transB", 7),
        "gemm-alpha-nan": set_attr("Gemm", "alpha", float("nan")),
        "flatten-axis-big": set_attr("Flatten", "axis", 99),
        "init-nan": init_edit("nan"), "init-inf": init_edit("inf"),
        "init-complex": init_edit("complex"), "init-shape": init_edit("shape"),
        "init-int": init_edit("int"), "init-empty": init_edit("empty"),
        "drop-first": drop_node(0), "drop-mid": drop_node(2), "cycle": cycle,
        "external-data": ext_data,
        "input-dim0": input_dim(0), "input-dim-huge": input_dim(10**9),
        "no-inputs": lambda m: m.graph.ClearField("input"),
        "no-outputs": lambda m: m.graph.ClearField("output"),
        "no-nodes": lambda m: m.graph.ClearField("node"),
        "opset-99": lambda m: m.opset_import[0].__setattr__("version", 99),
        "unknown-op": lambda m: m.graph.node[0].__setattr__("op_type", "FancyOp"),
        "domain-custom": lambda m: m.graph.node[0].__setattr__("domain", "evil.ops"),
    }
    base_bytes = base.SerializeToString()
    cases = []
    for k, fn in edits.items():
        blob = variant(fn)
        if blob != base_bytes:  # an edit of an op the model lacks changes nothing
            cases.append(Case(f"onnx-{k}", ["inspect", "m.onnx"], {"m.onnx": blob},
                              may_load=k in ("init-int", "no-outputs", "opset-99",
                                             "gemm-transB-str")))
    return cases


def _nir_cases() -> List[Case]:
    import h5py

    src = SEEDS["net.nir"]

    def variant(fn: Callable[["h5py.File"], None]) -> Callable[[Path], None]:
        def setup(d: Path) -> None:
            dst = d / "m.nir"
            shutil.copy(src, dst)
            with h5py.File(dst, "r+") as f:
                fn(f)
        return setup

    def first_with(f, key: str):
        found = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and key in obj and not found:
                found.append(obj)
        f["node"].visititems(visit)
        if not found:
            raise KeyError(key)
        return found[0]

    def replace(key: str, value) -> Callable:
        def fn(f) -> None:
            g = first_with(f, key)
            del g[key]
            g[key] = value
        return fn

    def edges(value) -> Callable:
        def fn(f) -> None:
            g = f["node"]
            del g["edges"]
            g["edges"] = value
        return fn

    def self_loop(f) -> None:
        e = f["node"]["edges"][()]
        name = [n for n in f["node"]["nodes"] if n not in ("input", "output")][0]
        new = np.concatenate([e, np.array([[name.encode(), name.encode()]], dtype=e.dtype)])
        del f["node"]["edges"]
        f["node"]["edges"] = new

    edits = {
        "weight-nan": replace("w_in", np.full((3, 3), np.nan, np.float32)),
        "weight-inf": replace("w_in", np.full((3, 3), np.inf, np.float32)),
        "weight-complex": replace("w_in", np.ones((3, 3), np.complex64)),
        "weight-str": replace("w_in", np.array([b"a", b"b"])),
        "weight-scalar": replace("w_in", np.float32(1)),
        "weight-5d": replace("w_in", np.ones((1, 1, 1, 1, 1), np.float32)),
        "weight-empty": replace("w_in", np.zeros((0, 3), np.float32)),
        "tau-neg": replace("tau_mem", np.full((3,), -1.0, np.float32)),
        "tau-zero": replace("tau_mem", np.zeros((3,), np.float32)),
        "tau-nan": replace("tau_mem", np.full((3,), np.nan, np.float32)),
        "vth-complex": replace("v_leak", np.ones((3,), np.complex64)),
        "edges-empty": edges(np.zeros((0, 2), dtype="S8")),
        "edges-unknown": edges(np.array([[b"input", b"nowhere"]])),
        "edges-1d": edges(np.array([b"input"])),
        "edges-int": edges(np.array([[1, 2]])),
        "self-loop": self_loop,
        "no-nodes": lambda f: f["node"].__delitem__("nodes"),
        "no-edges": lambda f: f["node"].__delitem__("edges"),
        "type-unknown": lambda f: _set_type(f, b"Quantum"),
        "type-int": lambda f: _set_type(f, 5),
        "input-shape-neg": lambda f: _set_input_shape(f, np.array([-1, 3])),
        "input-shape-huge": lambda f: _set_input_shape(f, np.array([10**9, 10**9])),
        "input-shape-float": lambda f: _set_input_shape(f, np.array([1.5])),
        "input-shape-empty": lambda f: _set_input_shape(f, np.zeros((0,), np.int64)),
    }
    return [Case(f"nir-{k}", ["inspect", "m.nir"], setup=variant(fn), may_load=k == "weight-scalar")
            for k, fn in edits.items()]


def _set_type(f, value) -> None:
    for name in f["node"]["nodes"]:
        g = f["node"]["nodes"][name]
        if name not in ("input", "output") and "type" in g:
            del g["type"]
            g["type"] = value
            return


def _set_input_shape(f, value) -> None:
    g = f["node"]["nodes"]["input"]
    for key in ("shape", "input_type"):
        if key in g:
            if isinstance(g[key], type(g)):
                for k in list(g[key]):
                    del g[key][k]
                g[key]["input"] = value
            else:
                del g[key]
                g[key] = value
            return


def _data_cases() -> List[Case]:
    model = ["simulate", "snn.nmir", "-T", "2", "--samples", "2"]
    snn = SEEDS["snn.nmir"].read_bytes()

    def npz(**arrays) -> bytes:
        b = io.BytesIO()
        np.savez(b, **arrays)
        return b.getvalue()

    datas = {
        "npz-x-empty": npz(x=np.zeros((0, 1, 8, 8), np.float32)),
        "npz-no-x": npz(y=np.zeros(3)),
        "npz-x-nan": npz(x=np.full((2, 1, 8, 8), np.nan, np.float32)),
        "npz-x-inf": npz(x=np.full((2, 1, 8, 8), np.inf, np.float32)),
        "npz-x-complex": npz(x=np.ones((2, 1, 8, 8), np.complex64)),
        "npz-x-str": npz(x=np.array(["a", "b"])),
        "npz-x-shape": npz(x=np.ones((2, 3, 5), np.float32)),
        "npz-x-scalar": npz(x=np.float32(1)),
        "npz-y-mismatch": npz(x=np.ones((2, 1, 8, 8), np.float32), y=np.zeros(5)),
        "npz-y-float": npz(x=np.ones((2, 1, 8, 8), np.float32), y=np.array([0.5, 1.5])),
        "npz-y-neg": npz(x=np.ones((2, 1, 8, 8), np.float32), y=np.array([-1, 99])),
        "npy-empty": _npy(np.zeros((0,), np.float32)),
        "npy-object": _npy(np.array([1, "a"], dtype=object)),
        "npy-bytes": b"\x93NUMPY garbage",
        "txt": b"1,2,3\n",
        "npz-truncated": npz(x=np.ones((2, 1, 8, 8), np.float32))[:100],
    }
    cases = []
    for k, blob in datas.items():
        name = "d.npy" if k.startswith("npy") else ("d.txt" if k == "txt" else "d.npz")
        cases.append(Case(f"data-{k}", model + ["--data", name], {"snn.nmir": snn, name: blob},
                          may_load=k in ("npz-y-float", "npz-y-neg", "npz-y-mismatch")))
    cases.append(Case("data-fifo", model + ["--data", "d.npz"], {"snn.nmir": snn},
                      setup=lambda d: os.mkfifo(d / "d.npz")))
    cases.append(Case("data-dir", model + ["--data", "dd"], {"snn.nmir": snn},
                      setup=lambda d: (d / "dd").mkdir()))
    cases.append(Case("data-missing", model + ["--data", "nope.npz"], {"snn.nmir": snn}))
    return cases


def _profile_cases() -> List[Case]:
    snn = SEEDS["snn.nmir"].read_bytes()
    base = ["simulate", "snn.nmir", "--dataset", "digits", "-T", "2", "--samples", "2"]
    profiles = {
        "not-toml": b"[[[",
        "empty": b"",
        "binary": b"\x00\xff\x00",
        "neg-energy": b'name = "x"\n[energy]\nsynop_pj = -5\n',
        "wrong-type": b'name = 5\nenergy = "a"\n',
        "nan": b'name = "x"\n[energy]\nsynop_pj = nan\n',
        "huge": b'name = "x"\n[energy]\nsynop_pj = 1e400\n',
        "list": b"x = [1, 2]\n",
    }
    cases = [Case(f"profile-{k}", base + ["-p", "p.toml"], {"snn.nmir": snn, "p.toml": v})
             for k, v in profiles.items()]
    cases.append(Case("profile-unknown-name", base + ["-p", "nosuchchip"], {"snn.nmir": snn}))
    cases.append(Case("profile-fifo", base + ["-p", "p.toml"], {"snn.nmir": snn},
                      setup=lambda d: os.mkfifo(d / "p.toml")))
    return cases


def _cli_cases() -> List[Case]:
    snn = SEEDS["snn.nmir"].read_bytes()
    ckpt = SEEDS["ckpt.pt"].read_bytes()
    f = {"snn.nmir": snn}
    sim = ["simulate", "snn.nmir", "--dataset", "digits"]
    cases = [
        Case("cli-T0", sim + ["-T", "0"], f), Case("cli-T-neg", sim + ["-T", "-3"], f),
        Case("cli-T-str", sim + ["-T", "many"], f),
        Case("cli-T-huge", sim + ["-T", "100000000"], f),
        Case("cli-samples0", sim + ["--samples", "0"], f),
        Case("cli-samples-neg", sim + ["--samples", "-1"], f),
        Case("cli-numerics-bad", sim + ["--numerics", "quantum"], f),
        Case("cli-dataset-bad", ["simulate", "snn.nmir", "--dataset", "imagenet"], f),
        Case("cli-no-data", ["simulate", "snn.nmir", "-T", "2"], f, may_load=True),
        Case("cli-unknown-option", ["inspect", "snn.nmir", "--frobnicate"], f),
        Case("cli-missing-arg", ["inspect"], f),
        Case("cli-unknown-command", ["frobnicate"], f),
        Case("cli-target-bad", ["export", "snn.nmir", "--target", "tpu"], f),
        Case("cli-target-missing", ["export", "snn.nmir"], f),
        Case("cli-input-shape-bad", ["inspect", "snn.nmir", "--input-shape", "a,b"], f),
        Case("cli-input-shape-zero", ["inspect", "snn.nmir", "--input-shape", "0,8"], f),
        Case("cli-reset-neg", sim + ["-T", "2", "--reset-interval", "-1"], f, may_load=True),
        Case("cli-check-T-huge", ["check-accuracy", "c.pt", "--dataset", "digits", "-T",
                                  "100000000"], {"c.pt": ckpt}),
        Case("cli-check-min-acc-bad", ["check-accuracy", "c.pt", "--dataset", "digits",
                                       "--min-accuracy", "7"], {"c.pt": ckpt}),
        Case("cli-check-samples0", ["check-accuracy", "c.pt", "--dataset", "digits",
                                    "--samples", "0"], {"c.pt": ckpt}),
        Case("cli-report-ref-bad", ["report", "snn.nmir", "--dataset", "digits", "-T", "2",
                                    "--samples", "2", "--reference", "nope"], f),
        Case("cli-report-empty-profile", ["report", "snn.nmir", "--dataset", "digits",
                                          "--profile", ","], f),
        Case("cli-convert-method-bad", ["convert", "c.pt", "--method", "magic", "-o", "o.nmir"],
             {"c.pt": ckpt}),
        Case("cli-convert-not-qcfs", ["convert", "snn.nmir", "--method", "mst", "-o", "o.nmir"], f),
        Case("cli-verify-file", ["verify", "snn.nmir", "--dataset", "digits"], f),
        Case("cli-verify-missing", ["verify", "nodir", "--dataset", "digits"], f),
        Case("cli-verify-empty-dir", ["verify", "d", "--dataset", "digits"], f,
             setup=lambda d: (d / "d").mkdir()),
        Case("model-fifo", ["inspect", "m.pt"], {}, setup=lambda d: os.mkfifo(d / "m.pt")),
        Case("model-dir", ["inspect", "m.pt"], {}, setup=lambda d: (d / "m.pt").mkdir()),
        Case("model-missing", ["inspect", "m.pt"], {}),
        Case("model-devnull", ["inspect", "/dev/null"], {}),
        Case("model-random", ["inspect", "m.bin"], {"m.bin": bytes(range(256)) * 4}),
        Case("model-text", ["inspect", "m.onnx"], {"m.onnx": b"hello world\n" * 10}),
        Case("model-zip-empty", ["inspect", "m.pt"], {"m.pt": _empty_zip()}),
        Case("model-zip-bomb", ["inspect", "m.pt"], {"m.pt": _zip_bomb()}),
        Case("export-readonly-dir", ["export", "snn.nmir", "--target", "nmir", "-o",
                                     "ro/out.nmir"], f, setup=_readonly_dir, may_load=_ROOT_USER),
        Case("export-nir-readonly-dir", ["export", "snn.nmir", "--target", "nir", "-o",
                                         "ro/out.nir"], f, setup=_readonly_dir, may_load=_ROOT_USER),
        Case("convert-readonly-dir", ["convert", "c.pt", "--method", "mst", "-o", "ro/o.nmir"],
             {"c.pt": ckpt}, setup=_readonly_dir, may_load=_ROOT_USER),
        Case("export-missing-dir", ["export", "snn.nmir", "--target", "nmir", "-o",
                                    "nodir/out.nmir"], f),
        Case("report-html-missing-dir", ["report", "snn.nmir", "--dataset", "digits", "-T", "2",
                                         "--samples", "2", "--html", "nodir/r.html"], f),
    ]
    return cases


#: root ignores directory permissions: a read-only directory is then writable
_ROOT_USER = os.geteuid() == 0


def _readonly_dir(d: Path) -> None:
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)


def _empty_zip() -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w"):
        pass
    return b.getvalue()


def _zip_bomb() -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/data.pkl", b"\x00" * (80 << 20))
    return b.getvalue()


WITNESS = "pwned"  # a file that exists only if code from a model file ran


def _code_cases() -> List[Case]:
    """TorchScript archives whose code writes WITNESS (relative: into the case's
    directory) when loaded or run; every command must refuse them."""
    import torch
    from typing import Tuple

    class OnLoad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)
            self.target = WITNESS

        def forward(self, x):
            return self.lin(x.flatten(1))

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, bool]:
            return (self.target, self.training)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, bool]) -> None:
            self.target = state[0]
            self.training = state[1]
            t = torch.from_file(self.target, shared=True, size=8, dtype=torch.uint8)
            t.fill_(65)
            self.target = str(int(t.sum()))

    class InForward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)
            self.target = WITNESS

        def forward(self, x):
            t = torch.from_file(self.target, shared=True, size=8, dtype=torch.uint8)
            return self.lin(x.flatten(1)) + t.sum()

    cases = []
    for tag, cls in (("setstate", OnLoad), ("forward", InForward)):
        b = io.BytesIO()
        torch.jit.save(torch.jit.script(cls()), b)
        blob = b.getvalue()
        for cmd in (["inspect", "m.pt"], ["simulate", "m.pt", "--dataset", "digits", "-T", "2",
                                          "--samples", "2", "--input-shape", "1,8,8"],
                    ["export", "m.pt", "--target", "nir", "-o", "o.nir", "--input-shape",
                     "1,8,8"],
                    ["convert", "m.pt", "--method", "mst", "-o", "o.nmir", "--input-shape",
                     "1,8,8"],
                    ["check-accuracy", "m.pt", "--dataset", "digits", "-T", "2",
                     "--samples", "2", "--input-shape", "1,8,8"]):
            cases.append(Case(f"code-{tag}-{cmd[0]}", cmd, {"m.pt": blob}))
    return cases


def build_cases(seed: int = 16) -> List[Case]:
    """All cases, in a fixed order."""
    rng = random.Random(seed)
    cases = (_trunc_flip_cases(rng) + _nmir_cases() + _checkpoint_cases() + _onnx_cases()
             + _nir_cases() + _data_cases() + _profile_cases() + _cli_cases() + _code_cases())
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def materialize(case: Case, directory: Path) -> None:
    """Create the case's files in ``directory`` (which exists and is empty)."""
    for name, blob in case.files.items():
        (directory / name).write_bytes(blob)
    if case.setup is not None:
        case.setup(directory)
