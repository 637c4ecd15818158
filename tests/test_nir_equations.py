"""Every NIR neuron simulates as NIR's equations say, at a time step dt != 1 (issue 14).

For each of I, IF, LI, LIF, CubaLI and CubaLIF a file is written with nir's
own API (time constants in seconds, as snnTorch, norse and the NIR paper
write them), read by nmtc with ``--dt 1e-3`` and simulated in floating point;
the reference is NIR's equations integrated by hand in numpy (float64) below,
one forward-Euler step of length dt per time step, the new synaptic current
driving v (snnTorch's Synaptic order), spikes where v > v_threshold and the
NIR >= 1.0.6 reset to v_reset. Nothing of nmtc's is used for the reference.
"""
from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest

DT = 1e-3
T = 40
N = 5  # neurons
B = 3  # samples


def _hand(kind: str, p: dict, x: np.ndarray) -> np.ndarray:
    """NIR's equations, forward Euler with step DT; x (B, T, N) -> (B, T, N)."""
    x = x.astype(np.float64)
    v = np.zeros(x.shape[::2], np.float64)
    i = np.zeros_like(v)
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        xt = x[:, t]
        if kind in ("I", "IF"):  # dv/dt = r x
            v = v + DT * p["r"] * xt
        elif kind in ("LI", "LIF"):  # tau dv/dt = v_leak - v + r x
            v = v + DT / p["tau"] * (p["v_leak"] - v + p["r"] * xt)
        else:  # tau_syn dI/dt = -I + w_in x ; tau_mem dv/dt = v_leak - v + r I
            i = i + DT / p["tau_syn"] * (-i + p["w_in"] * xt)
            v = v + DT / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
        if kind in ("IF", "LIF", "CubaLIF"):
            s = v > p["v_threshold"]
            v = np.where(s, p["v_reset"], v)
            out[:, t] = s
        else:
            out[:, t] = v
    return out


def _params(kind: str) -> dict:
    rng = np.random.default_rng(3)
    f = lambda lo, hi: rng.uniform(lo, hi, N).astype(np.float32)  # noqa: E731
    p = {"r": f(0.5, 2.0)}
    if kind in ("I", "IF"):
        p["r"] = f(50.0, 200.0)  # per second: a few steps to threshold at dt = 1 ms
    if kind in ("LI", "LIF"):
        p.update(tau=f(0.003, 0.02), v_leak=f(-0.2, 0.2))
    if kind in ("CubaLI", "CubaLIF"):
        p.update(tau_syn=f(0.002, 0.01), tau_mem=f(0.004, 0.02), v_leak=f(-0.2, 0.2),
                 w_in=f(0.5, 3.0))
    if kind in ("IF", "LIF", "CubaLIF"):
        p.update(v_threshold=f(0.4, 1.0), v_reset=f(-0.3, 0.1))
    return p


def _write(kind: str, p: dict, path: Path) -> Path:
    node = getattr(nir, kind)(**p)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([N])}), "neuron": node,
               "output": nir.Output(output_type={"output": np.array([N])})},
        edges=[("input", "neuron"), ("neuron", "output")])
    nir.write(str(path), graph)
    return path


@pytest.mark.parametrize("kind", ["I", "IF", "LI", "LIF", "CubaLI", "CubaLIF"])
def test_neuron_follows_nir_equations_at_dt_1ms(kind, tmp_path):
    import nmtoolchain as nmtc

    p = _params(kind)
    x = np.random.default_rng(4).uniform(0.0, 1.5, (B, T, N)).astype(np.float32)
    want = _hand(kind, {k: v.astype(np.float64) for k, v in p.items()}, x)
    path = _write(kind, p, tmp_path / f"{kind}.nir")

    sim = nmtc.simulate(str(path), x, timesteps=T, dt=DT, samples=B)
    (got,) = sim.outputs.values()
    got = np.asarray(got).reshape(want.shape)

    if kind in ("IF", "LIF", "CubaLIF"):
        assert want.sum() >= 20 and (want.sum(1) < T).all()  # fires, and not every step
        np.testing.assert_array_equal(got, want)
    else:  # float32 against float64
        assert np.abs(want).max() > 0.1
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_nir_cubalif_is_refused_when_a_time_constant_is_below_the_step(tmp_path):
    from nmtoolchain.errors import BadInputError
    from nmtoolchain.frontends.nir_loader import load_nir

    p = _params("CubaLIF")
    path = _write("CubaLIF", p, tmp_path / "c.nir")
    with pytest.raises(BadInputError, match=r"node 'neuron' \(CubaLIF\).*tau_syn .* shorter "
                                            r"than one time step"):
        load_nir(path, dt=0.005)
