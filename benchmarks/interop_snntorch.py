"""snnTorch MLP on digits: accuracy in snnTorch, in nmtc's float simulation of
snnTorch's own NIR file (with and without --dt), and after Loihi 2 export
(nmtc's bit-exact Loihi numerics), side by side from one run (issue 14).

Trains a 64-64-10 Leaky MLP in snnTorch on the rate-coded digits train split
(nmtc's deterministic rate code, so every simulator sees the same spikes),
writes it with snnTorch's ``export_to_nir`` (time constants in seconds for a
1e-4 s step), and evaluates on the test split. Two neuron settings: snnTorch's
default Leaky (subtract reset, one step late: not what its file says) and
``reset_mechanism='zero', reset_delay=False`` (what its file says: reset to 0).

    PYTHONPATH=. .venv/bin/python benchmarks/interop_snntorch.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

T = 16


def train(reset: str, delay: bool, xs, y, epochs: int = 30):
    import snntorch as snn
    import torch
    from torch import nn

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism=reset, reset_delay=delay)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64),
                        snn.Leaky(beta=torch.full((64,), 0.9), threshold=torch.ones(64), **kw),
                        nn.Linear(64, 10),
                        snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10),
                                  output=True, **kw))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(xs), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            counts = run(net, xt[idx], grad=True)
            loss = nn.functional.cross_entropy(counts, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def run(net, x, grad: bool = False):
    """snnTorch's simulation: summed output spikes (B, 10)."""
    import snntorch as snn
    import torch

    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.reset_hidden()
            m.mem = torch.zeros(1)
    total = 0
    with torch.set_grad_enabled(grad):
        for t in range(x.shape[1]):
            spk, _ = net(x[:, t])
            total = total + spk
    return total


def main() -> int:
    import nir
    import torch
    from snntorch.export_nir import export_to_nir

    import nmtoolchain as nmtc
    from nmtoolchain.convert.encode import rate_encode
    from nmtoolchain.datasets import load_digits_split
    from nmtoolchain.errors import NmtcError
    from nmtoolchain.targets.loihi2 import loihi_accuracy

    d = load_digits_split()
    s_tr, s_te = rate_encode(d.x_train, T), rate_encode(d.x_test, T)
    tmp = Path(tempfile.mkdtemp(prefix="nmtc_interop_"))
    print(f"{'snnTorch Leaky':34s} {'snnTorch':>9s} {'nmtc --dt 1e-4':>15s} "
          f"{'nmtc dt=1 (old)':>16s} {'Loihi 2 export':>15s}")
    for label, reset, delay in (("default (subtract, delayed)", "subtract", True),
                                ("reset to zero, no delay", "zero", False)):
        net = train(reset, delay, s_tr, d.y_train)
        acc_snn = float((run(net, torch.from_numpy(s_te)).argmax(1).numpy() == d.y_test).mean())
        path = tmp / f"mlp_{reset}.nir"
        nir.write(str(path), export_to_nir(net, torch.from_numpy(s_te[:1, 0]), ignore_dims=[0]))
        accs = []
        for dt in (1e-4, 1.0):
            sim = nmtc.simulate(str(path), s_te, timesteps=T, dt=dt, samples=len(s_te))
            (out,) = sim.outputs.values()
            counts = np.asarray(out).reshape(len(s_te), T, -1).sum(1)
            accs.append(float((counts.argmax(1) == d.y_test).mean()))
        try:
            graph = nmtc.load(str(path), dt=1e-4)
            loihi = loihi_accuracy(graph, d.x_test, d.y_test, steps=T, calib="digits")["accuracy"]
            loihi_s = f"{loihi:.3f}"
        except NmtcError as e:
            loihi_s = f"refused ({' '.join(str(e).split())[:60]})"
        print(f"{label:34s} {acc_snn:9.3f} {accs[0]:15.3f} {accs[1]:16.3f} {loihi_s:>15s}")
    cnn_counts(s_te[:32], tmp)
    return 0


def cnn_counts(spikes: np.ndarray, tmp: Path) -> None:
    """A random-weight snnTorch CNN (conv -> avg-pool -> Leaky, snnTorch's order):
    total output spikes over 32 test samples in snnTorch and in nmtc."""
    import nir
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    from torch import nn

    import nmtoolchain as nmtc

    print(f"\n{'snnTorch CNN, random weights':34s} {'snnTorch':>9s} {'nmtc --dt 1e-4':>15s} "
          f"{'nmtc dt=1 (old)':>16s}   (output spikes, 32 samples)")
    for label, reset, delay in (("default (subtract, delayed)", "subtract", True),
                                ("reset to zero, no delay", "zero", False)):
        torch.manual_seed(0)
        kw = dict(init_hidden=True, reset_mechanism=reset, reset_delay=delay)
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.AvgPool2d(2),
            snn.Leaky(beta=torch.full((8, 4, 4), 0.9), threshold=torch.ones(8, 4, 4), **kw),
            nn.Flatten(), nn.Linear(128, 10),
            snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), output=True, **kw))
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.data *= 2.0
        want = float(run(net, torch.from_numpy(spikes)).sum())
        graph = export_to_nir(net, torch.from_numpy(spikes[:1, 0]), ignore_dims=[0])
        for node in graph.nodes.values():
            if isinstance(node, nir.Conv2d) and node.input_shape is None:
                node.input_shape = tuple(int(v) for v in node.input_type["input"][-2:])
        path = tmp / f"cnn_{reset}.nir"
        nir.write(str(path), graph)
        got = [float(np.asarray(next(iter(nmtc.simulate(
            str(path), spikes, timesteps=T, dt=dt, samples=len(spikes)).outputs.values()))).sum())
            for dt in (1e-4, 1.0)]
        print(f"{label:34s} {want:9.0f} {got[0]:15.0f} {got[1]:16.0f}")


if __name__ == "__main__":
    sys.exit(main())
