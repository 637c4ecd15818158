"""The counting reductions (byte sums of event masks, the float test for
values outside {-1, 0, 1}, masks in reused buffers) against numpy's own
definitions, on values chosen to catch their edges: -0.0, NaN, ±inf,
denormals, ±1 and neighbours of 1."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nmtoolchain import ir
from simulators.cycle import Simulator, fused
from simulators.cycle.counting import _count, _event_mask, _outside_unit_set

EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, np.nan, np.inf, -np.inf, 1e-45,
         1 + 2 ** -23, 1 - 2 ** -24, -1 - 2 ** -23, 3e38, 1e-20]


def _edge_matrix(rows: int = 64, cols: int = 333, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array(EDGES, dtype=np.float32), size=(rows, cols),
                   p=[0.5] + [0.5 / (len(EDGES) - 1)] * (len(EDGES) - 1))
    a[:8] = rng.choice([0.0, 1.0, -1.0], size=(8, cols))  # rows inside {-1, 0, 1}
    a[8] = 0.0
    return a.astype(np.float32)


def test_event_counts_equal_numpys_count_nonzero():
    a = _edge_matrix()
    want = np.count_nonzero(a, axis=1)  # NaN counts, -0.0 does not
    got = _count(_event_mask(torch.from_numpy(a)))
    np.testing.assert_array_equal(got.numpy(), want)
    buf = torch.empty(a.shape, dtype=torch.bool).fill_(True)  # a reused buffer's old contents
    np.testing.assert_array_equal(_count(_event_mask(torch.from_numpy(a), buf)).numpy(), want)


def test_outside_unit_set_equals_numpys_isin():
    a = _edge_matrix(seed=1)
    want = (~np.isin(a, [-1.0, 0.0, 1.0])).any(axis=1)  # NaN is in no set
    assert want[:9].sum() == 0 and want[9:].all()  # both answers occur
    np.testing.assert_array_equal(_outside_unit_set(torch.from_numpy(a)).numpy(), want)


@pytest.mark.skipif(fused.numba_module() is None, reason="numba is not installed")
def test_compiled_counting_passes_equal_numpys_definitions():
    a = _edge_matrix(seed=2)
    b = _edge_matrix(seed=4)
    events, active = fused.event_counts(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_array_equal(events.numpy(), np.count_nonzero(a, axis=1))
    np.testing.assert_array_equal(active.numpy(), ((a != 0) | (b != 0)).sum(axis=1))
    rng = np.random.default_rng(5)
    f_full, f_nz = rng.integers(0, 10, a.shape[1]), rng.integers(0, 10, a.shape[1])
    for x in (a, a.astype(np.float64) * 1e-50):  # float64 values that float32 rounds to 0
        events, full, nz, outside = fused.weighted_event_counts(
            torch.from_numpy(x), torch.from_numpy(f_full), torch.from_numpy(f_nz))
        np.testing.assert_array_equal(events.numpy(), np.count_nonzero(x, axis=1))
        np.testing.assert_array_equal(full.numpy(), ((x != 0) * f_full).sum(axis=1))
        np.testing.assert_array_equal(nz.numpy(), ((x != 0) * f_nz).sum(axis=1))
        x32 = x.astype(np.float32)
        np.testing.assert_array_equal(outside.numpy(),
                                      (~np.isin(x32, [-1.0, 0.0, 1.0])).any(axis=1))


@pytest.mark.parametrize("compiled", ["1", "0"])
def test_counters_of_an_analog_layer_equal_numpy_counts_of_its_tensors(compiled, monkeypatch):
    monkeypatch.setenv("NMTC_FUSED", compiled)
    # Input -> Linear -> LIF with analog input holding -0.0, denormals and ±1:
    # events_in, active_neurons, macs and NeuroBench's MAC decision recomputed
    # with numpy from the recorded tensors and the weights
    rng = np.random.default_rng(3)
    w = rng.choice([0.0, 0.5, -1.0], size=(7, 40)).astype(np.float32)
    g = ir.Graph()
    g.add("x", ir.Input((40,)))
    g.add("fc", ir.Linear(w), ["x"])
    g.add("lif", ir.LIF(tau=2.0, v_threshold=0.4), ["fc"])
    g.add("y", ir.Output(), ["lif"])
    steps, batch = 6, 5
    x = rng.choice(np.array([0.0, -0.0, 1.0, -1.0, 1e-42, 0.75], dtype=np.float32),
                   size=(batch, steps, 40))
    x[:, 2] = rng.choice([0.0, 1.0, -1.0], size=(batch, 40))  # a step with only ±1 and 0
    for schedule in ("layer", "step"):
        res = Simulator(g, "float", record="all", schedule=schedule).run(torch.from_numpy(x), steps)
        c = res.counts
        xt = x.transpose(1, 0, 2)  # (T, B, 40)
        fc = res.recorded["fc"].numpy().transpose(1, 0, 2)
        lif = res.recorded["lif"].numpy().transpose(1, 0, 2)
        np.testing.assert_array_equal(c.counter("fc", "events_in"),
                                      np.count_nonzero(xt.reshape(steps, -1), axis=1))
        np.testing.assert_array_equal(c.counter("fc", "macs"),
                                      ((xt != 0) * np.full(40, 7.0)).sum(axis=(1, 2)))
        outside = (~np.isin(xt, [-1.0, 0.0, 1.0])).any(axis=2)  # (T, B)
        np.testing.assert_array_equal(c.counter("fc", "nb_is_mac"), outside.any(axis=1))
        nz_fanout = (w != 0).sum(axis=0)
        ops = ((xt != 0) * nz_fanout).sum(axis=2)  # (T, B)
        np.testing.assert_array_equal(c.counter("fc", "nb_mac_ops"), (ops * outside).sum(axis=1))
        active = (fc != 0) | (lif != 0)
        np.testing.assert_array_equal(c.counter("lif", "active_neurons"),
                                      active.reshape(steps, -1).sum(axis=1))
        assert 0 < c.counter("lif", "spikes_out").sum() < lif.size  # neither silent nor saturated
        assert c.counter("fc", "nb_is_mac")[2] == 0 and c.counter("fc", "nb_is_mac").sum() > 0
