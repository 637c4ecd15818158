"""Producer models through nmtc, before and after a change: one table from one run
(issue 14's closing note).

Builds each model in its producer with seeded random weights, runs the producer's
own simulation on digits test images (each image applied at every step), and
writes the file a user of that producer would write. Then, for each nmtc tree
given (``--before`` an older checkout, and this one), runs the nmtc CLI/API in a
subprocess with that tree on PYTHONPATH:

* inspect: ``nmtc inspect FILE`` exit code;
* simulate vs producer: nmtc's float simulation of the file against the
  producer's outputs (SNN: share of output spike entries equal, and spike
  totals; ANN: largest absolute difference);
* export nir / export loihi2 (``--calib digits``) / verify (Lava, 2 samples).

Cells show ``ok`` or ``exit N: <start of the message>``.

    PYTHONPATH=. .venv/bin/python benchmarks/interop_table.py --before /tmp/nmtc_base
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

T = 16
N = 8
ROOT = Path(__file__).resolve().parents[1]


def digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    _, xte = train_test_split(d.images / 16.0, test_size=0.25, random_state=0,
                              stratify=d.target)
    return xte[:n].astype(np.float32)[:, None]  # (n, 1, 8, 8)


def _steps(net_step, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.stack([np.asarray(net_step(torch.from_numpy(x))) for _ in range(T)], 1)


# ------------------------------------------------------------------ producers
def snntorch_mlp(d: Path, x: np.ndarray):
    import nir
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    from torch import nn

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(nn.Linear(64, 32), snn.Leaky(beta=torch.full((32,), 0.9),
                                                     threshold=torch.ones(32), **kw),
                        nn.Linear(32, 10), snn.Leaky(beta=torch.full((10,), 0.9),
                                                     threshold=torch.ones(10), output=True, **kw))
    for m in net:
        if isinstance(m, nn.Linear):
            m.weight.data *= 3.0
    xf = x.reshape(len(x), 64)
    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.reset_hidden()
            m.mem = torch.zeros(1)
    ref = _steps(lambda v: net(v)[0], xf)
    nir.write(str(d / "snntorch_mlp.nir"), export_to_nir(net, torch.from_numpy(xf[:1]),
                                                         ignore_dims=[0]))
    return d / "snntorch_mlp.nir", ["--dt", "1e-4"], xf, ref, True


def snntorch_cnn(d: Path, x: np.ndarray):
    import nir
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    from torch import nn

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2),
                        snn.Leaky(beta=torch.full((4, 4, 4), 0.9), threshold=torch.ones(4, 4, 4),
                                  **kw),
                        nn.Flatten(), nn.Linear(64, 10),
                        snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10),
                                  output=True, **kw))
    net[0].weight.data *= 3.0
    net[4].weight.data *= 3.0
    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.reset_hidden()
            m.mem = torch.zeros(1)
    ref = _steps(lambda v: net(v)[0], x)
    graph = export_to_nir(net, torch.from_numpy(x[:1]), ignore_dims=[0])
    for node in graph.nodes.values():  # snnTorch leaves it None; nir.write needs it
        if isinstance(node, nir.Conv2d) and node.input_shape is None:
            node.input_shape = (8, 8)
    nir.write(str(d / "snntorch_cnn.nir"), graph)
    return d / "snntorch_cnn.nir", ["--dt", "1e-4"], x, ref, True


def norse_lifbox(d: Path, x: np.ndarray):
    import nir
    import norse.torch as norse
    import torch
    from norse.torch.utils.export_nir import to_nir
    from torch import nn

    torch.manual_seed(0)

    def p(n: int):
        return norse.LIFBoxParameters(tau_mem_inv=torch.full((n,), 100.0), v_th=torch.ones(n),
                                      v_leak=torch.zeros(n), v_reset=torch.zeros(n))

    net = norse.SequentialState(nn.Linear(64, 32), norse.LIFBoxCell(p(32)), nn.Linear(32, 10),
                                norse.LIFBoxCell(p(10)))
    net[0].weight.data *= 30.0
    net[2].weight.data *= 60.0
    xf = x.reshape(len(x), 64)
    state, outs = None, []
    with torch.no_grad():
        for _ in range(T):
            out, state = net(torch.from_numpy(xf), state)
            outs.append(out.numpy())
    nir.write(str(d / "norse.nir"), to_nir(net, torch.from_numpy(xf[:1]), dt=1e-3))
    return d / "norse.nir", ["--dt", "1e-6"], xf, np.stack(outs, 1), True


def sinabs_snn(d: Path, x: np.ndarray):
    import nir
    import sinabs
    import sinabs.layers as sl
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), sl.IAFSqueeze(batch_size=N),
                        sl.SumPool2d(2), nn.Flatten(), nn.Linear(64, 10),
                        sl.IAFSqueeze(batch_size=N))
    net[0].weight.data *= 2.0
    net[4].weight.data *= 2.0
    sinabs.reset_states(net)
    xs = np.repeat(x[:, None], T, 1).reshape((N * T,) + x.shape[1:])  # (N*T, 1, 8, 8)
    with torch.no_grad():
        ref = net(torch.from_numpy(xs)).reshape(N, T, 10).numpy()
    graph = sinabs.to_nir(net, torch.zeros((N,) + x.shape[1:]))
    graph.infer_types()  # sinabs leaves Conv2d input_shape None, which nir.write needs
    for node in graph.nodes.values():
        if isinstance(node, nir.Conv2d):
            node.input_shape = tuple(int(s) for s in node.input_type["input"][1:])
    nir.write(str(d / "sinabs.nir"), graph)
    return d / "sinabs.nir", [], x, ref, True


def relu_cnn(d: Path, x: np.ndarray):
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(64, 10)).eval()
    ref = _steps(net, x)
    torch.jit.save(torch.jit.trace(net, torch.from_numpy(x[:1])), str(d / "relu_cnn.pt"))
    return d / "relu_cnn.pt", ["--input-shape", "1,8,8"], x, ref, False


def state_dict(d: Path, x: np.ndarray):
    import torch

    sys.path.insert(0, str(ROOT))
    from nmtoolchain.models import build_model

    torch.manual_seed(0)
    net = build_model("mlp", {"sizes": [64, 32, 10]}).eval()
    ref = _steps(net, x)
    torch.save(net.state_dict(), d / "mlp_state_dict.pt")
    return d / "mlp_state_dict.pt", ["--arch", "mlp", "--config", '{"sizes": [64, 32, 10]}'], \
        x, ref, False


CASES = [("snnTorch Leaky MLP", snntorch_mlp), ("snnTorch CNN (conv-avgpool-Leaky)", snntorch_cnn),
         ("norse LIFBox MLP", norse_lifbox), ("sinabs IAF SNN", sinabs_snn),
         ("torch ReLU CNN (jit.trace)", relu_cnn), ("state_dict (nmtc mlp)", state_dict)]


# ------------------------------------------------------------------ nmtc runs
def _cli(root: Path, args: List[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-m", "nmtoolchain.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=str(root))


def _cell(proc: subprocess.CompletedProcess, ok: str = "ok") -> str:
    if proc.returncode == 0:
        return ok
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    msg = err[-1].replace("nmtc: error: ", "") if err else ""
    msg = msg.split(": ", 1)[-1] if msg.startswith("/") else msg
    return f"exit {proc.returncode}: {msg[:70]}"


SIM = """
import json, sys, numpy as np
import nmtoolchain as nmtc
path, opts, xfile, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
graph = nmtc.load(path, **opts)
sim = nmtc.simulate(graph, np.load(xfile), timesteps=int(sys.argv[5]))
(o,) = sim.outputs.values()
np.save(out, np.asarray(o))
"""


def _sim_opts(opts: List[str]) -> Dict[str, object]:
    kw: Dict[str, object] = {}
    for k, v in zip(opts[::2], opts[1::2]):
        if k == "--dt":
            kw["dt"] = float(v)
        elif k == "--input-shape":
            kw["input_shape"] = [int(s) for s in v.split(",")]
        elif k == "--arch":
            kw["arch"] = v
        elif k == "--config":
            kw["config"] = json.loads(v)
    return kw


def _agreement(root: Path, path: Path, opts: List[str], x: np.ndarray, ref: np.ndarray,
               spiking: bool, d: Path) -> str:
    np.save(d / "x.npy", x)
    out = d / f"out_{abs(hash(str(root)))}.npy"
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", SIM, str(path), json.dumps(_sim_opts(opts)),
                           str(d / "x.npy"), str(out), str(T)], env=env, capture_output=True,
                          text=True, timeout=900, cwd=str(root))
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:]
        return f"error: {(last[0] if last else '?')[:70]}"
    got = np.load(out).reshape(ref.shape)
    if spiking:
        same = float(np.mean(got == ref))
        return f"{same:.1%} equal ({int(got.sum())} vs {int(ref.sum())} spikes)"
    return f"max |diff| {float(np.abs(got - ref).max()):.1e}"


def evaluate(root: Path, path: Path, opts: List[str], x, ref, spiking: bool, d: Path
             ) -> Dict[str, str]:
    row = {"inspect": _cell(_cli(root, ["inspect", str(path), *opts]))}
    row["simulate vs producer"] = _agreement(root, path, opts, x, ref, spiking, d)
    tag = abs(hash(str(root)))
    row["export nir"] = _cell(_cli(root, ["export", str(path), *opts, "--target", "nir", "-o",
                                          str(d / f"re_{tag}.nir")]))
    out = d / f"loihi_{tag}"
    proc = _cli(root, ["export", str(path), *opts, "--target", "loihi2", "--calib", "digits",
                       "-T", str(T), "-o", str(out)])
    row["export loihi2"] = _cell(proc)
    if proc.returncode == 0:
        v = _cli(root, ["verify", str(out), "--dataset", "digits", "--samples", "2"])
        text = v.stdout + v.stderr
        row["verify"] = "identical" if v.returncode == 0 and "identical" in text \
            else _cell(v, ok="differs")
    else:
        row["verify"] = "-"
    return row


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="an older nmtc tree to compare with")
    ap.add_argument("--only", help="run only cases whose name contains this")
    args = ap.parse_args(argv)
    roots = ([("before", args.before.resolve())] if args.before else []) + [("after", ROOT)]
    x = digits(N)
    cols = ["inspect", "simulate vs producer", "export nir", "export loihi2", "verify"]
    lines = ["| model | tree | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in CASES:
            if args.only and args.only not in name:
                continue
            d = Path(tmp) / build.__name__
            d.mkdir()
            path, opts, xin, ref, spiking = build(d, x)
            for label, root in roots:
                row = evaluate(root, path, opts, xin, ref, spiking, d)
                lines.append(f"| {name} | {label} | " + " | ".join(row[c] for c in cols) + " |")
                print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
