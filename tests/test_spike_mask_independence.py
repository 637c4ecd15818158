"""Spike masks are drawn as MST draws them (issue 18, seeds.md §2.4): a fresh
Bernoulli keep (1 - p) for every element, independent per mask (tensor), per
step, per sample and per batch, all from one run seed that replays them.

Expected values are probability, not nmtc: for two independent masks of drop
ratio p the fraction of elements where they agree is p² + (1 - p)², and the
fraction both keep (a Q·Kᵀ coincidence) is (1 - p)²; identical masks would
agree everywhere. With n draws the standard error is below 0.5/√n."""
from __future__ import annotations

import numpy as np
import pytest

from nmtoolchain.ir import Graph, Input, Output, SpikeMask
from simulators.cycle import Simulator
from simulators.cycle.kernels_float import seed_spike_masks

N, B, T = 5000, 2, 3
TOL = 0.02  # > 5 standard errors for n >= 5000 draws


def _two_masks(p: float, seeds=(None, None)) -> Graph:
    g = Graph()
    g.add("x", Input(shape=(N,)))
    for name, seed in zip(("mask_q", "mask_k"), seeds):
        g.add(name, SpikeMask(p=p, seed=seed), ["x"])
        g.add(f"out_{name}", Output(), [name])
    return g.infer_shapes()


def _run(sim: Simulator):
    out = sim.run(np.ones((B, N), np.float32), T).outputs
    return out["out_mask_q"].numpy() > 0, out["out_mask_k"].numpy() > 0  # (B, T, N)


def _agree(a, b) -> float:
    return float((a == b).mean())


@pytest.mark.parametrize("p", [0.5, 0.75])
def test_q_and_k_masks_are_independent_without_the_rsm_pass(p):
    q, k = _run(Simulator(_two_masks(p), "float", count=False))
    assert abs(q.mean() - (1 - p)) < TOL and abs(k.mean() - (1 - p)) < TOL
    assert abs(_agree(q, k) - (p * p + (1 - p) ** 2)) < TOL
    assert abs(float((q & k).mean()) - (1 - p) ** 2) < TOL


def test_masks_are_independent_per_step_per_sample_and_per_batch():
    p = 0.5
    sim = Simulator(_two_masks(p), "float", count=False)
    q1, _ = _run(sim)
    q2, _ = _run(sim)  # the next batch through the same simulator
    assert abs(_agree(q1[:, 0], q1[:, 1]) - 0.5) < TOL  # step
    assert abs(_agree(q1[0], q1[1]) - 0.5) < TOL  # sample
    assert abs(_agree(q1, q2) - 0.5) < TOL  # batch


def test_masks_the_rsm_pass_seeds_stay_independent():
    from nmtoolchain.methods.rsm import apply_rsm

    g = _two_masks(0.0)
    for n in g:
        if n.op_name == "SpikeMask":
            n.annotations["rsm_role"] = "q" if n.name == "mask_q" else "k"
    masked = apply_rsm(g, 0.75, roles=["q", "k"], seed=3)
    q, k = _run(Simulator(masked, "float", count=False))
    assert abs(float((q & k).mean()) - 0.0625) < TOL


def test_one_run_seed_replays_the_masks_and_another_seed_draws_new_ones():
    def draw(seed):
        sim = Simulator(_two_masks(0.5), "float", count=False)
        assert seed_spike_masks(sim.kernels, seed) == 2
        return _run(sim)

    a, b, c = draw(11), draw(11), draw(12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert abs(_agree(a[0], c[0]) - 0.5) < TOL


def test_the_accuracy_helper_draws_fresh_masks_for_every_batch():
    """accuracy_vs_timesteps runs batch after batch: identical x in two batches
    must not see identical masks (a single-output graph of one mask, summed)."""
    from nmtoolchain.accuracy import accuracy_vs_timesteps

    g = Graph()
    g.add("x", Input(shape=(2,)))
    g.add("mask", SpikeMask(p=0.5), ["x"])
    g.add("out", Output(), ["mask"])
    g.infer_shapes()
    x = np.tile(np.array([[1.0, 1.0]], np.float32), (4000, 1))
    # label 0 is right when mask keeps x0 and drops x1, or keeps both/neither
    # (argmax tie -> 0): P = 3/4 per sample; replayed masks across batches of
    # 1 would make every sample alike (accuracy 0 or 1)
    ((_, acc),) = accuracy_vs_timesteps(g, x, np.zeros(4000, np.int64), [1], batch_size=1,
                                        seed=5)
    assert abs(acc - 0.75) < TOL
