"""Random Spike Masking pass (nmtoolchain.methods.rsm) and its effect on counted work."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nmtoolchain import ir
from nmtoolchain.errors import BadInputError
from nmtoolchain.methods import apply_rsm, masked_path
from nmtoolchain.methods.rsm import select_masks
from simulators.cycle import simulate

N, D = 4, 8


def _attention_graph() -> ir.Graph:
    """x -> q/k/v Linear -> IF; q, k masked; score = IF(q k^T) masked; o = score v;
    an MLP Linear whose input spikes are masked ('mlp_in')."""
    rng = np.random.default_rng(0)
    w = lambda: rng.normal(size=(D, D)).astype(np.float32)  # noqa: E731
    g = ir.Graph()
    g.add("x", ir.Input((N, D)))
    for r in ("q", "k", "v"):
        g.add(f"{r}_lin", ir.Linear(w()), ["x"])
        g.add(f"{r}_if", ir.IF(), [f"{r}_lin"])
    g.add("q_mask", ir.SpikeMask(p=0.0), ["q_if"], {"rsm_role": "q"})
    g.add("k_mask", ir.SpikeMask(p=0.0), ["k_if"], {"rsm_role": "k"})
    g.add("kT", ir.Transpose((1, 0)), ["k_mask"])
    g.add("qk", ir.MatMul(), ["q_mask", "kT"])
    g.add("score_if", ir.IF(), ["qk"])
    g.add("score_mask", ir.SpikeMask(p=0.0), ["score_if"], {"rsm_role": "score"})
    g.add("sv", ir.MatMul(), ["score_mask", "v_if"])
    g.add("attn_if", ir.IF(), ["sv"])
    g.add("mlp_mask", ir.SpikeMask(p=0.0), ["attn_if"], {"rsm_role": "mlp_in"})
    g.add("fc1", ir.Linear(w()), ["mlp_mask"])
    g.add("y", ir.Output(), ["fc1"])
    return g.infer_shapes()


def _mask_ps(g: ir.Graph) -> dict:
    return {n.annotations["rsm_role"]: n.op.p for n in g if n.op_name == "SpikeMask"}


def test_preset_mst_sets_p_on_q_k_score_only():
    g = apply_rsm(_attention_graph(), 0.75, preset="mst")
    assert _mask_ps(g) == {"q": 0.75, "k": 0.75, "score": 0.75, "mlp_in": 0.0}


def test_preset_mst_plus_mlp_also_masks_mlp_input_and_flags_it_paper_only():
    g = apply_rsm(_attention_graph(), 0.5, preset="mst+mlp")
    assert _mask_ps(g) == {"q": 0.5, "k": 0.5, "score": 0.5, "mlp_in": 0.5}
    assert g.metadata["rsm"]["paper_only_roles"] == ["mlp_in"]


def _masked_edges(g: ir.Graph) -> list:
    """(source, consumer) of every edge that passes through a SpikeMask with p > 0."""
    return sorted((m.inputs[0], u.name) for m in g if m.op_name == "SpikeMask" and m.op.p > 0
                  for u in g.users(m.name))


# the attention graph's edges, listed by hand from _attention_graph
_MST_EDGES = [("k_if", "kT"), ("q_if", "qk"), ("score_if", "sv")]


@pytest.mark.parametrize("request_, expected", [
    ({"preset": "mst"}, _MST_EDGES),
    ({"preset": "mst+mlp"}, _MST_EDGES + [("attn_if", "fc1")]),
    ({"roles": ["score"]}, [("score_if", "sv")]),
    ({"preset": "mst", "roles": ["mlp_in", "q"]}, _MST_EDGES + [("attn_if", "fc1")]),
    ({"nodes": ["v_if"]}, [("v_if", "sv")]),
    ({"roles": ["k"], "nodes": ["x"]}, [("k_if", "kT"), ("x", "k_lin"), ("x", "q_lin"),
                                        ("x", "v_lin")]),
])
def test_each_request_masks_exactly_the_hand_listed_edges(request_, expected):
    assert _masked_edges(apply_rsm(_attention_graph(), 0.5, **request_)) == sorted(expected)


def test_select_masks_names_the_masks_by_role_and_the_insertion_points():
    g = _attention_graph()
    sel = select_masks(g, preset="mst", roles=["mlp_in"], nodes=["v_if"])
    assert sel.roles == ("q", "k", "score", "mlp_in")
    assert sel.role_masks == {"q": ("q_mask",), "k": ("k_mask",), "score": ("score_mask",),
                              "mlp_in": ("mlp_mask",)}
    assert sel.insert_after == ("v_if",)
    assert sel.existing_masks == {"q_mask", "k_mask", "score_mask", "mlp_mask"}
    assert [n.name for n in g] == [n.name for n in _attention_graph()]  # only read


def test_a_role_carried_by_several_masks_selects_all_of_them_in_graph_order():
    g = ir.Graph()
    g.add("x", ir.Input((3,)))
    g.add("m2", ir.SpikeMask(p=0.0), ["x"], {"rsm_role": "conv_out"})
    g.add("a", ir.IF(), ["m2"])
    g.add("m1", ir.SpikeMask(p=0.0), ["a"], {"rsm_role": "conv_out"})
    g.add("b", ir.IF(), ["m1"])
    g.add("y", ir.Output(), ["b"])
    assert select_masks(g, roles=["conv_out"]).role_masks == {"conv_out": ("m2", "m1")}
    out = apply_rsm(g, 0.5, roles=["conv_out"], seed=3)
    assert _masked_edges(out) == [("a", "b"), ("x", "a")]
    assert (out["m2"].op.seed, out["m1"].op.seed) == (3, 4)


def test_apply_rsm_leaves_the_input_graph_unchanged():
    g0 = _attention_graph()
    apply_rsm(g0, 0.75, preset="mst+mlp")
    assert set(_mask_ps(g0).values()) == {0.0}


def test_masks_get_distinct_seeds():
    g = apply_rsm(_attention_graph(), 0.5, preset="mst+mlp", seed=7)
    seeds = [n.op.seed for n in g if n.op_name == "SpikeMask"]
    assert sorted(seeds) == [7, 8, 9, 10]


def test_nodes_inserts_a_mask_on_every_edge_leaving_the_node():
    g = apply_rsm(_attention_graph(), 0.25, nodes=["x"])
    masks = [n for n in g if n.annotations.get("rsm_after") == "x"]
    assert len(masks) == 1 and masks[0].op.p == 0.25 and masks[0].inputs == ("x",)
    readers = sorted(n.name for n in g if masks[0].name in n.inputs)
    assert readers == ["k_lin", "q_lin", "v_lin"]
    assert not [n.name for n in g if "x" in n.inputs and n.name != masks[0].name]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"roles": ["value"]}, "unknown role"),
    ({"preset": "vgg"}, "unknown preset"),
    ({"nodes": ["nope"]}, "no node named 'nope'"),
    ({"nodes": ["y"]}, "'y' (Output)"),
    ({}, "nothing to mask"),
])
def test_apply_rsm_refuses_bad_requests(kwargs, fragment):
    with pytest.raises(BadInputError) as e:
        apply_rsm(_attention_graph(), 0.5, **kwargs)
    assert fragment in str(e.value)


def test_apply_rsm_refuses_a_role_no_mask_carries():
    g = ir.Graph()
    g.add("x", ir.Input((3,)))
    g.add("m", ir.SpikeMask(p=0.0), ["x"], {"rsm_role": "q"})
    g.add("y", ir.Output(), ["m"])
    with pytest.raises(BadInputError, match="role"):
        apply_rsm(g, 0.5, preset="mst")  # k and score are absent


def test_apply_rsm_refuses_p_outside_unit_interval():
    with pytest.raises(BadInputError, match="p must be in"):
        apply_rsm(_attention_graph(), 1.5, preset="mst")


def _linear_graph(n_in: int = 1000, n_out: int = 10) -> ir.Graph:
    g = ir.Graph()
    g.add("x", ir.Input((n_in,)))
    g.add("fc", ir.Linear(np.ones((n_out, n_in), dtype=np.float32)), ["x"])
    g.add("y", ir.Output(), ["fc"])
    return g.infer_shapes()


def test_masking_linear_input_at_half_halves_its_counted_synops():
    b, t, n_in, n_out = 4, 10, 1000, 10
    ones = torch.ones(b, n_in)
    full = simulate(_linear_graph(), ones, t).counts.total("synops", ["fc"])
    assert full == b * t * n_in * n_out  # every spike reaches all n_out synapses
    masked_g = apply_rsm(_linear_graph(), 0.5, nodes=["x"], seed=1)
    masked = simulate(masked_g, ones, t).counts.total("synops", ["fc"])
    # kept events ~ Binomial(b*t*n_in = 40000, 0.5): sd 100 events = 0.25 %; allow 5 sd
    kept = masked / full
    assert abs(kept - 0.5) < 5 * math.sqrt(0.25 / (b * t * n_in))


def test_masking_both_matmul_operands_scales_coincidences_by_keep_squared():
    p, n, d, b, t = 0.75, 16, 16, 16, 20
    g = ir.Graph()
    g.add("x", ir.Input((n, d)))
    g.add("q", ir.SpikeMask(p=0.0), ["x"], {"rsm_role": "q"})
    g.add("k", ir.SpikeMask(p=0.0), ["x"], {"rsm_role": "k"})
    g.add("kT", ir.Transpose((1, 0)), ["k"])
    g.add("qk", ir.MatMul(), ["q", "kT"])
    g.add("y", ir.Output(), ["qk"])
    ones = torch.ones(b, n, d)
    full = simulate(g.infer_shapes(), ones, t).counts.total("synops", ["qk"])
    assert full == b * t * n * n * d  # every (i, j, d) is a coincidence
    masked = simulate(apply_rsm(g, p, roles=["q", "k"]), ones, t).counts.total("synops", ["qk"])
    # per sample-step the count is sum_d Q_d K_d, Q_d, K_d ~ Bin(16, 1/4) independent:
    # mean 16*4*4 = 256, var 16*(19*19 - 16*16) = 1680; over b*t = 320 sample-steps
    mean = n * d * n * (1 - p) ** 2
    sd = math.sqrt(d * ((n * (1 - p) * p + (n * (1 - p)) ** 2) ** 2 - (n * (1 - p)) ** 4))
    ratio, tol = masked / full, 5 * sd * math.sqrt(b * t) / (full)
    assert abs(ratio - (1 - p) ** 2) < tol
    assert mean * b * t / full == pytest.approx((1 - p) ** 2)
    assert abs(ratio - (1 - p)) > 0.1  # not the one-operand factor


def test_same_seed_same_masks_other_seed_other_masks():
    ones = torch.ones(2, 1000)
    a = simulate(apply_rsm(_linear_graph(), 0.5, nodes=["x"], seed=3), ones, 5)
    b = simulate(apply_rsm(_linear_graph(), 0.5, nodes=["x"], seed=3), ones, 5)
    c = simulate(apply_rsm(_linear_graph(), 0.5, nodes=["x"], seed=4), ones, 5)
    assert torch.equal(a.outputs["y"], b.outputs["y"])
    assert a.counts.total("synops") == b.counts.total("synops")
    assert not torch.equal(a.outputs["y"], c.outputs["y"])


def test_masked_path_runs_from_each_mask_to_the_next_neuron():
    g = apply_rsm(_attention_graph(), 0.5, preset="mst")
    assert masked_path(g, roles=("q", "k", "score")) == ["kT", "qk", "score_if", "sv", "attn_if"]
    assert "fc1" in masked_path(g)  # all masks, the p = 0 mlp_in one included


# ------------------------------------------------- spiking view of P·V (seeds.md §2.4)
H, NT, DV = 2, 4, 5  # heads, tokens, V's last dimension


def _pv_graph(bias: bool = True, p: float = 0.0, seed: int = 0) -> ir.Graph:
    """score spikes (H, NT, NT) -> SpikeMask -> [Bias] -> Softmax -> @ V (H, NT, DV)."""
    g = ir.Graph()
    g.add("s", ir.Input((H, NT, NT)))
    g.add("v", ir.Input((H, NT, DV)))
    g.add("mask", ir.SpikeMask(p=p, seed=seed), ["s"], {"rsm_role": "score"})
    last = "mask"
    if bias:
        g.add("bias", ir.Bias(np.linspace(-1, 1, NT * NT, dtype=np.float32).reshape(NT, NT)),
              ["mask"])
        last = "bias"
    g.add("soft", ir.Softmax(-1), [last])
    g.add("pv", ir.MatMul(), ["soft", "v"])
    g.add("y", ir.Output(), ["pv"])
    return g.infer_shapes()


def _score_spikes(counts_per_step) -> np.ndarray:
    """(1, T, H, NT, NT) binary spikes with the given number of ones per step."""
    s = np.zeros((1, len(counts_per_step), H * NT * NT), dtype=np.float32)
    for t, c in enumerate(counts_per_step):
        s[0, t, (np.arange(c) * 3) % (H * NT * NT)] = 1.0  # 3 is coprime to 32: c distinct
    return s.reshape(1, len(counts_per_step), H, NT, NT)


@pytest.mark.parametrize("bias", [True, False])
def test_spiking_view_books_pv_as_passed_score_spikes_times_d(bias):
    from nmtoolchain.methods.rsm import score_value_matmuls, spiking_view_counts

    g = _pv_graph(bias)
    (m,) = score_value_matmuls(g)
    assert (m["matmul"], m["mask"], m["d"]) == ("pv", "mask", DV)
    s = _score_spikes([3, 7, 0])
    v = np.ones((1, 3, H, NT, DV), dtype=np.float32)
    counts = simulate(g, {"s": s, "v": v}, 3).counts
    # graph view, by hand: softmax is never 0, V is all ones -> H*NT*NT*DV = 160 MACs a step
    assert counts.counter("pv", "macs").tolist() == [160.0] * 3
    view = spiking_view_counts(g, counts)
    assert view.counter("pv", "synops").tolist() == [3 * DV, 7 * DV, 0.0]  # 15, 35, 0
    assert view.counter("pv", "macs").tolist() == [0.0] * 3
    # the run's own counts are untouched
    assert counts.counter("pv", "macs").tolist() == [160.0] * 3
    assert not counts.counter("pv", "synops").any()
    assert "spiking_view" not in counts.static["pv"]
    assert view.static["pv"]["spiking_view"]["replaced"] == {"synops": 0.0, "macs": 480.0}


def test_spiking_view_counts_only_the_spikes_the_mask_passed():
    from nmtoolchain.methods.rsm import spiking_view_counts

    g = _pv_graph(True, p=0.5, seed=11)
    rng = np.random.default_rng(5)
    s = (rng.random((4, 6, H, NT, NT)) < 0.4).astype(np.float32)
    v = (rng.random((4, 6, H, NT, DV)) < 0.5).astype(np.float32)
    res = simulate(g, {"s": s, "v": v}, 6, record=["mask"])
    passed = res.recorded["mask"].numpy()  # (B, T, H, NT, NT)
    want = np.count_nonzero(passed, axis=(0, 2, 3, 4)) * DV  # per step, summed over the batch
    assert 0 < want.sum() < np.count_nonzero(s) * DV  # the mask dropped some, kept some
    got = spiking_view_counts(g, res.counts).counter("pv", "synops")
    np.testing.assert_array_equal(got, want)


def test_spiking_view_leaves_a_softmax_over_unmasked_values_alone():
    from nmtoolchain.methods.rsm import score_value_matmuls, spiking_view_counts

    g = ir.Graph()
    g.add("s", ir.Input((NT, NT)))
    g.add("v", ir.Input((NT, DV)))
    g.add("soft", ir.Softmax(-1), ["s"])
    g.add("pv", ir.MatMul(), ["soft", "v"])
    g.add("y", ir.Output(), ["pv"])
    g.infer_shapes()
    assert score_value_matmuls(g) == []
    counts = simulate(g, {"s": np.ones((1, NT, NT), np.float32),
                          "v": np.ones((1, NT, DV), np.float32)}, 2).counts
    view = spiking_view_counts(g, counts)
    assert view.counter("pv", "macs").tolist() == [NT * NT * DV] * 2
    assert not view.counter("pv", "synops").any()
