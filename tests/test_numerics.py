"""Typed target numerics (``Node.numerics``) and the LIF/LI ``discretization`` field.

Expected values come from Lava's documented bit widths (lava.proc.lif.models:
du/dv 12-bit, bias_mant 13-bit signed, bias_exp 3-bit, vth 17-bit), from
the CUBA update written out in numpy here, and from the one-step LIF updates
written out in numpy here; old-format files are written by hand as the
version-1 serializer wrote them.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from nmtoolchain.errors import BadInputError, IRValidationError
from nmtoolchain.ir import (
    LI, LIF, Affine, CubaLIF, Graph, Input, Output, SigmaDelta, graph_from_bytes, graph_to_bytes)
from nmtoolchain.numerics import NUMERICS_REGISTRY, numerics_from_dict
from nmtoolchain.numerics.loihi import (
    InputTransform, LoihiCubaNeuron, LoihiSigmaDeltaNeuron, from_legacy_annotation,
    is_loihi_cuba)
from simulators.cycle import Simulator


# ------------------------------------------------------------ validation
@pytest.mark.parametrize("field,value", [
    ("i_decay", 4097), ("i_decay", -1), ("v_decay", 5000), ("v_th_mant", (1 << 17) + 1),
    ("v_th_mant", -3), ("bias_mant", 4096), ("bias_mant", [0, -4097]), ("bias_exp", 8),
    ("bias_exp", -1), ("ref_delay", -1), ("i_decay", 2.5), ("i_decay", "4096"),
    ("readout", "yes"), ("bias_mant", [0.5, 1.0])])
def test_cuba_record_refuses_a_value_outside_lavas_bit_widths_naming_the_field(field, value):
    ok = dict(i_decay=4096, v_decay=1024, v_th_mant=80, bias_mant=0, bias_exp=6)
    ok[field] = value
    with pytest.raises(IRValidationError, match=field) as e:
        LoihiCubaNeuron(**ok)
    shown = str(value[-1] if isinstance(value, list) else value)
    assert shown.replace("'", "") in str(e.value).replace("'", "") \
        or "integer" in str(e.value), str(e.value)


def test_cuba_record_accepts_the_edges_of_lavas_bit_widths():
    q = LoihiCubaNeuron(i_decay=0, v_decay=4096, v_th_mant=1 << 17, bias_mant=[-4096, 4095],
                        bias_exp=7, ref_delay=0, readout=True,
                        input_transform={"weight": 36, "bias": 34})
    assert q.bias_mant.tolist() == [-4096, 4095]
    assert q.input_transform == InputTransform(36, 34)
    assert q.lava_du == -1  # netx passes iDecay - 1
    assert not q.bias_mant.flags.writeable  # a frozen record holds a read-only array


@pytest.mark.parametrize("field,value", [("spike_exp", 8), ("state_exp", -1),
                                         ("num_message_bits", 25)])
def test_sdnn_record_refuses_values_lava_cannot_hold(field, value):
    with pytest.raises(IRValidationError, match=f"{field} = {value}"):
        LoihiSigmaDeltaNeuron(**{field: value})


def test_graph_refuses_numerics_that_do_not_fit_the_op_or_the_shape():
    g = Graph()
    g.add("x", Input((3,)))
    with pytest.raises(IRValidationError, match=r"'n' \(LIF\).*loihi.cuba"):
        g.add("n", LIF(), ["x"], numerics=LoihiCubaNeuron(4096, 0, 10))
    g.add("m", CubaLIF(), ["x"], numerics=LoihiCubaNeuron(4096, 0, 10, bias_mant=[1, 2]))
    with pytest.raises(IRValidationError, match=r"'m'.*bias_mant of shape \[2\].*\[3\]"):
        g.infer_shapes()


def test_graph_refuses_the_retired_untyped_loihi_annotation():
    g = Graph()
    g.add("x", Input((1,)))
    with pytest.raises(IRValidationError, match=r"annotations\['loihi'\].*numerics"):
        g.add("n", CubaLIF(), ["x"], {"loihi": {"neuron": "CUBA", "iDecay": 4096}})
    with pytest.raises(IRValidationError, match="discretization"):
        g.add("l", LIF(), ["x"], {"discretization": "exponential"})


def test_is_loihi_cuba_tells_a_quantized_cuba_neuron_from_a_float_one():
    g = Graph()
    g.add("x", Input((1,)))
    g.add("q", CubaLIF(), ["x"], numerics=LoihiCubaNeuron(4096, 0, 10))
    g.add("f", CubaLIF(), ["x"])
    assert is_loihi_cuba(g["q"]) and not is_loihi_cuba(g["f"])


# ------------------------------------------------------------ serialization
def _typed_graph() -> Graph:
    g = Graph({"dt": 1.0})
    g.add("x", Input((3,)))
    g.add("in", CubaLIF(reset="to_reset"), ["x"],
          numerics=LoihiCubaNeuron(4096, 1024, 25, input_transform=InputTransform(36, 34),
                                   ref_delay=1))
    g.add("fc", Affine(np.eye(3, dtype=np.float32)), ["in"])
    g.add("n", CubaLIF(reset="to_reset"), ["fc"],
          numerics=LoihiCubaNeuron(2048, 512, 40, bias_mant=[3, -7, 0]))
    g.add("fc2", Affine(np.eye(3, dtype=np.float32)), ["n"])
    g.add("sd", SigmaDelta(threshold=2.0), ["fc2"], numerics=LoihiSigmaDeltaNeuron())
    g.add("y", Output(), ["sd"])
    return g.infer_shapes()


def test_numerics_round_trip_through_nmir_field_for_field():
    g = _typed_graph()
    data = graph_to_bytes(g)
    doc = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("graph.json"))
    assert doc["version"] == 2
    rec = {n["name"]: n for n in doc["nodes"]}
    assert rec["n"]["numerics"] == {"kind": "loihi.cuba", "i_decay": 2048, "v_decay": 512,
                                    "v_th_mant": 40, "bias_mant": [3, -7, 0], "bias_exp": 6,
                                    "ref_delay": None, "readout": False,
                                    "input_transform": None}
    assert rec["in"]["numerics"]["input_transform"] == {"bias": 34, "weight": 36}
    assert "numerics" not in rec["fc"] and "loihi" not in rec["n"]["annotations"]
    back = graph_from_bytes(data)
    for name in ("in", "n", "sd"):
        assert back[name].numerics == g[name].numerics, name
        assert type(back[name].numerics) is type(g[name].numerics)
    assert back["fc"].numerics is None
    assert graph_to_bytes(back) == data


def test_unknown_numerics_kind_in_a_file_is_one_clear_error():
    data = graph_to_bytes(_typed_graph())
    zin = zipfile.ZipFile(io.BytesIO(data))
    doc = json.loads(zin.read("graph.json"))
    doc["nodes"][1]["numerics"]["kind"] = "speck.int8"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for item in zin.namelist():
            z.writestr(item, json.dumps(doc) if item == "graph.json" else zin.read(item))
    with pytest.raises(BadInputError, match=r"node 'in'.*unknown numerics kind 'speck.int8'"):
        graph_from_bytes(buf.getvalue(), "x.nmir")
    assert {"loihi.cuba", "loihi.sdnn"} <= set(NUMERICS_REGISTRY)
    assert numerics_from_dict(LoihiSigmaDeltaNeuron(spike_exp=5).to_dict()).spike_exp == 5


# --------------------------------------------------- version-1 .nmir files
def _npy(a) -> bytes:
    b = io.BytesIO()
    np.save(b, np.asarray(a, np.float32), allow_pickle=False)
    return b.getvalue()


def _v1_file(nodes, arrays) -> bytes:
    """A .nmir as the version-1 serializer wrote it (annotations carried the semantics)."""
    doc = {"format": "nmtc-ir", "version": 1, "metadata": {"dt": 1.0}, "nodes": nodes}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("graph.json", json.dumps(doc))
        for k, v in arrays.items():
            z.writestr(k, _npy(v))
    return buf.getvalue()


W = [[3.0, -1.0], [2.0, 2.0]]
I_DECAY, V_DECAY, VTH, BIAS = 2048, 1024, 3, [1, -2]


def _old_cuba_file() -> bytes:
    arrays, fields = {"arrays/00000.npy": W}, {}
    for i, (k, v) in enumerate([("tau_syn", 1.4427), ("tau_mem", 3.476), ("r", 1.0),
                                ("v_leak", 0.0), ("v_threshold", float(VTH)), ("w_in", 1.0),
                                ("v_reset", 0.0), ("v_init", 0.0), ("v_bias", BIAS)], start=1):
        key = f"arrays/{i:05d}.npy"
        arrays[key] = v
        fields[k] = {"__npy__": key}
    fields.update(reset="to_reset", v_min=None, spike="single", compare=">")
    nodes = [
        {"name": "x", "op": "Input", "inputs": [], "fields": {"shape": {"__tuple__": [2]}},
         "annotations": {}},
        {"name": "fc", "op": "Affine", "inputs": ["x"],
         "fields": {"weight": {"__npy__": "arrays/00000.npy"}, "bias": None, "delay": None},
         "annotations": {"loihi": {"synapse": "Dense", "input_message_bits": 0,
                                   "weights_truncated": 0}}},
        {"name": "n", "op": "CubaLIF", "inputs": ["fc"], "fields": fields,
         "annotations": {"loihi": {"neuron": "CUBA", "iDecay": I_DECAY, "vDecay": V_DECAY,
                                   "vThMant": VTH, "bias_mant": BIAS, "bias_exp": 6,
                                   "refDelay": 1, "readout": False, "bias_truncated": 0},
                         "source": {"netx_layer": 1}}},
        {"name": "y", "op": "Output", "inputs": ["n"], "fields": {}, "annotations": {}},
    ]
    return _v1_file(nodes, arrays)


def _cuba_by_hand(x: np.ndarray) -> np.ndarray:
    """Loihi's CUBA update in numpy: the Dense synapse delivers step t-1's spikes
    at step t; decays truncate toward zero; input and bias are shifted by 6."""
    steps = x.shape[0]
    w = np.asarray(W, np.int64)
    u = np.zeros(2, np.int64)
    v = np.zeros(2, np.int64)
    out = np.zeros((steps, 2), np.int64)

    def dec(a, d):
        p = a * (4096 - d)
        return np.sign(p) * (np.abs(p) >> 12)

    for t in range(steps):
        a = w @ x[t - 1] if t > 0 else np.zeros(2, np.int64)
        u = dec(u, I_DECAY) + (a << 6)
        v = dec(v, V_DECAY) + u + (np.asarray(BIAS, np.int64) << 6)
        s = v > (VTH << 6)
        v = np.where(s, 0, v)
        out[t] = s
    return out


def test_old_nmir_with_loihi_annotations_loads_typed_and_simulates_as_by_hand():
    g = graph_from_bytes(_old_cuba_file(), "old.nmir")
    q = g["n"].numerics
    assert q == LoihiCubaNeuron(i_decay=I_DECAY, v_decay=V_DECAY, v_th_mant=VTH,
                                bias_mant=BIAS, bias_exp=6, ref_delay=1, readout=False)
    assert "loihi" not in g["n"].annotations and g["n"].annotations["source"] == {"netx_layer": 1}
    assert g["n"].annotations["netx_import"] == {"bias_truncated": 0}
    assert g["fc"].numerics is None
    assert g["fc"].annotations["netx_import"]["synapse"] == "Dense"
    x = (np.random.default_rng(5).random((30, 2)) < 0.6).astype(np.int64)
    res = Simulator(g, "loihi", record=["n"], count=False).run(
        x[None].astype(np.float32), 30)
    got = res.recorded["n"][0].cpu().numpy().astype(np.int64)
    want = _cuba_by_hand(x)
    assert want.sum() > 5  # the trace does spike
    np.testing.assert_array_equal(got, want)
    # written again it is a version-2 file with the same record
    again = graph_from_bytes(graph_to_bytes(g))
    assert again["n"].numerics == q


def test_old_nmir_discretization_annotation_becomes_the_op_field():
    nodes = [
        {"name": "x", "op": "Input", "inputs": [], "fields": {"shape": {"__tuple__": [1]}},
         "annotations": {}},
        {"name": "l", "op": "LI", "inputs": ["x"],
         "fields": {"tau": {"__npy__": "arrays/00000.npy"}, "r": 1.0, "v_leak": 0.0},
         "annotations": {"discretization": "exponential", "sinabs": {"norm_input": True}}},
        {"name": "y", "op": "Output", "inputs": ["l"], "fields": {}, "annotations": {}},
    ]
    g = graph_from_bytes(_v1_file(nodes, {"arrays/00000.npy": 4.0}))
    assert g["l"].op.discretization == "exponential"
    assert g["l"].annotations == {"sinabs": {"norm_input": True}}


def test_legacy_sdnn_annotation_keeps_exponents_typed_and_drops_op_duplicates():
    rec, info = from_legacy_annotation({
        "neuron": "SDNN", "process": "Delta", "vThMant": 0, "bias": 0, "spike_exp": 6,
        "state_exp": 6, "num_message_bits": 16, "compare": ">=", "file_activation": "relu",
        "bias_truncated": 0, "input_transform": {"weight": 64, "bias": 0}})
    assert rec == LoihiSigmaDeltaNeuron(6, 6, 16, InputTransform(64, 0))
    assert info == {"process": "Delta", "compare": ">=", "file_activation": "relu",
                    "bias_truncated": 0}


# ------------------------------------------------------------ discretization
TAU = np.array([2.0, 4.0, 8.0])
R = np.array([1.0, 0.5, 2.0])
LEAK = np.array([0.0, 0.1, -0.2])


def _lif_graph(op) -> Graph:
    g = Graph({"dt": 1.0})
    g.add("x", Input((3,)))
    g.add("n", op, ["x"])
    g.add("y", Output(), ["n"])
    return g.infer_shapes()


def _by_hand(x: np.ndarray, mode: str, threshold: float = np.inf) -> np.ndarray:
    """The one-step updates written out: exponential (x held over the step) or
    forward Euler; a spike subtracts the threshold. Returns v (LI) or spikes."""
    a = np.exp(-1.0 / TAU)
    v = np.zeros(3)
    out = []
    for xt in x:
        if mode == "exponential":
            v = LEAK + a * (v - LEAK) + (1 - a) * R * xt
        else:
            v = v + (1.0 / TAU) * (LEAK - v + R * xt)
        if np.isinf(threshold):
            out.append(v.copy())
        else:
            s = (v > threshold).astype(float)
            v = v - s * threshold
            out.append(s)
    return np.array(out)


@pytest.mark.parametrize("mode", ["euler", "exponential"])
def test_li_discretization_field_gives_the_hand_written_update(mode):
    x = np.random.default_rng(1).normal(1.0, 1.0, (12, 3))
    g = _lif_graph(LI(tau=TAU, r=R, v_leak=LEAK, discretization=mode))
    got = Simulator(g, "float", record=["n"], count=False).run(
        x[None].astype(np.float32), 12).recorded["n"][0].cpu().numpy()
    np.testing.assert_allclose(got, _by_hand(x, mode), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["euler", "exponential"])
def test_lif_discretization_field_gives_the_hand_written_spikes(mode):
    x = np.random.default_rng(2).uniform(0.0, 3.0, (40, 3))
    g = _lif_graph(LIF(tau=TAU, r=R, v_leak=LEAK, v_threshold=0.7, discretization=mode))
    got = Simulator(g, "float", record=["n"], count=False).run(
        x[None].astype(np.float32), 40).recorded["n"][0].cpu().numpy()
    want = _by_hand(x, mode, threshold=0.7)
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(got, want)


def test_equal_lifs_with_different_discretizations_differ_and_bad_one_is_refused():
    x = np.ones((1, 6, 3), np.float32)
    runs = [Simulator(_lif_graph(LI(tau=TAU, r=R, discretization=m)), "float", record=["n"],
                      count=False).run(x, 6).recorded["n"] for m in ("euler", "exponential")]
    assert not np.allclose(runs[0].cpu().numpy(), runs[1].cpu().numpy())
    with pytest.raises(IRValidationError, match="discretization must be one of"):
        _lif_graph(LIF(discretization="rk4"))


def test_discretization_survives_nmir_as_an_op_field():
    g = _lif_graph(LIF(tau=TAU, discretization="exponential"))
    doc = json.loads(zipfile.ZipFile(io.BytesIO(graph_to_bytes(g))).read("graph.json"))
    assert doc["nodes"][1]["fields"]["discretization"] == "exponential"
    assert graph_from_bytes(graph_to_bytes(g))["n"].op.discretization == "exponential"
