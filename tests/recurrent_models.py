"""Recurrent networks as other tools write them (issue 14, item 4), shared by
tests/test_interop_recurrent.py and the inspect/export parity corpus.

* :func:`write_braille_rnn`: a braille-style RNN written with nir's own API
  after the NIR paper's Loihi 2 network (12 inputs -> 38 recurrent CubaLIF
  neurons with an Affine recurrent weight -> 7 CubaLIF readout neurons; random
  weights; time constants in seconds for a 1e-4 s step), and
  :func:`braille_by_hand`, NIR's equations for it integrated in numpy;
* :func:`snn_rnn` / :func:`run_snntorch` / :func:`write_snntorch`: snnTorch's
  RLeaky / RSynaptic in a small network, its own simulation and its own NIR
  export.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DT = 1e-4
N_IN, N_HID, N_OUT = 12, 38, 7


def braille_params(seed: int = 0) -> dict:
    """Braille-style RNN parameters as snnTorch's RSynaptic writes them for a
    1e-4 s step (w_in = tau_syn/dt, r = tau_mem/dt: I' = a I + x, v' = b v + I)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    tau_syn, tau_mem = 5e-4, 1e-3  # a = 0.8, b = 0.9 per step
    return {
        "w1": f32(rng.normal(0.0, 0.45, (N_HID, N_IN))), "b1": f32(rng.normal(0, 0.02, N_HID)),
        "w_rec": f32(rng.normal(0.0, 0.12, (N_HID, N_HID))),
        "w2": f32(rng.normal(0.0, 0.35, (N_OUT, N_HID))), "b2": f32(np.zeros(N_OUT)),
        "tau_syn": tau_syn, "tau_mem": tau_mem, "v_th": 1.0,
    }


def cuba_layer(n: int, p: dict):
    import nir

    full = lambda v: np.full(n, v, np.float32)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(p["tau_syn"]), tau_mem=full(p["tau_mem"]),
                       r=full(p["tau_mem"] / DT), v_leak=full(0.0), v_threshold=full(p["v_th"]),
                       w_in=full(p["tau_syn"] / DT), v_reset=full(0.0))


def write_braille_rnn(path: Path, seed: int = 0) -> Path:
    """The braille-style recurrent network, written with nir's own API."""
    import nir

    p = braille_params(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc1": nir.Affine(p["w1"], p["b1"]),
        "lif1": cuba_layer(N_HID, p),
        "w_rec": nir.Affine(p["w_rec"], np.zeros(N_HID, np.float32)),
        "fc2": nir.Affine(p["w2"], p["b2"]),
        "lif2": cuba_layer(N_OUT, p),
        "output": nir.Output(output_type={"output": np.array([N_OUT])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"),
             ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges))
    return path


def braille_by_hand(x: np.ndarray, p: dict) -> tuple:
    """NIR's equations, forward Euler with step DT, in float64: (hidden, output)
    spikes. Edges into a node are summed; the recurrent edge carries the hidden
    layer's spikes of the previous step (zeros at step 0)."""
    x = x.astype(np.float64)
    a_syn, a_mem = DT / p["tau_syn"], DT / p["tau_mem"]
    w_in, r = p["tau_syn"] / DT, p["tau_mem"] / DT

    def layer(i, v, inp):
        i = i + a_syn * (-i + w_in * inp)
        v = v + a_mem * (0.0 - v + r * i)
        s = v > p["v_th"]
        return i, np.where(s, 0.0, v), s.astype(np.float64)

    b = x.shape[0]
    i1, v1, s1 = np.zeros((b, N_HID)), np.zeros((b, N_HID)), np.zeros((b, N_HID))
    i2, v2 = np.zeros((b, N_OUT)), np.zeros((b, N_OUT))
    hid, out = [], []
    for t in range(x.shape[1]):
        rec = s1 @ p["w_rec"].T.astype(np.float64)  # last step's spikes
        i1, v1, s1 = layer(i1, v1, x[:, t] @ p["w1"].T + p["b1"] + rec)
        i2, v2, s2 = layer(i2, v2, s1 @ p["w2"].T + p["b2"])
        hid.append(s1)
        out.append(s2)
    return np.stack(hid, 1), np.stack(out, 1)



def snntorch_or_skip():
    return pytest.importorskip("snntorch", reason="snnTorch is not installed: no snnTorch "
                                                  "RLeaky/RSynaptic file to read")


def snn_rnn(kind: str):
    """Linear -> RLeaky/RSynaptic (all-to-all recurrent Linear) -> Linear -> Leaky.
    One beta per layer (netx holds one decay per layer), reset to zero."""
    snn = snntorch_or_skip()
    import torch
    from torch import nn

    torch.manual_seed(0)
    n = N_HID
    if kind == "RLeaky":
        rec = snn.RLeaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), linear_features=n,
                         init_hidden=True, reset_mechanism="zero", reset_delay=False)
    else:  # snnTorch 1.0.0's RSynaptic forward fails with reset_delay=False: its default
        rec = snn.RSynaptic(alpha=torch.full((n,), 0.8), beta=torch.full((n,), 0.9),
                            threshold=torch.ones(n), linear_features=n, init_hidden=True,
                            reset_mechanism="zero")
    net = nn.Sequential(nn.Linear(N_IN, n), rec, nn.Linear(n, N_OUT),
                        snn.Leaky(beta=torch.full((N_OUT,), 0.9), threshold=torch.ones(N_OUT),
                                  init_hidden=True, output=True, reset_mechanism="zero",
                                  reset_delay=False))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    return net


def run_snntorch(net, x: np.ndarray) -> tuple:
    """snnTorch's own simulation, one call per step: (hidden, output) spikes."""
    import torch

    for m in net.modules():
        if hasattr(m, "reset_hidden"):
            m.reset_hidden()
    hid, out = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            o = net(torch.from_numpy(x[:, t]))
            out.append((o[0] if isinstance(o, tuple) else o).numpy())
            hid.append(net[1].spk.numpy().copy())
    return np.stack(hid, 1), np.stack(out, 1)


def write_snntorch(net, path: Path) -> Path:
    import nir
    import torch
    from snntorch.export_nir import export_to_nir

    nir.write(str(path), export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0]))
    return path
