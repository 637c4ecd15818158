"""Simulator speed against its limits, in one run: ms per step and ratios.

For Intel's PilotNet-LIF and mnist.net (loihi numerics, batch 1; lava-dl's
bundled test networks, or ``--netx-dir``) and a digits-sized QCFS CNN
converted to an IF SNN (float numerics, at each ``--cnn-batch``), times:

* nmtc, step-by-step schedule, counting on (the reference schedule; what
  the simulator did before the layer-major schedule),
* nmtc, layer-major schedule, counting on (the default) and off, and the
  default with the torch neuron loops instead of the compiled ones
  (``NMTC_FUSED=0``; what runs without numba or off the CPU), or on a GPU
  with the opt-in Triton CUBA kernel (``NMTC_TRITON=1``),
* the plain-torch limit: the same network written directly in torch,
  time-batched (one convolution/matmul per layer over T*B, the CUBA or IF
  update as an in-place loop), no counting, no checks,
* Lava fixed_pt (``--lava``; netx networks, batch 1),

and checks that every neuron layer's output at every step is identical
between the schedules, the plain-torch run and (with ``--lava``) Lava, and
for PilotNet with Intel's recording (steps 1-17). Per-sample throughput
(samples of T steps per second) is printed next to ms per step. The limit's
neuron loops are torch ops, one call per step and operation; nmtc's
compiled loops (simulators/cycle/fused.py) can run below it.

    .venv/bin/python benchmarks/sim_speed.py [--steps 32] [--cnn-batch 64 256] [--lava]
        [--device cuda] [--repeat 3] [--netx-dir DIR]

Times are the best of ``--repeat`` runs (one untimed warm-up run first).
Lava is imported only with ``--lava``; without lava-dl's networks (and no
``--netx-dir``) the netx cases are skipped with a note and the CNN runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from nmtoolchain.ir import Graph
from nmtoolchain.numerics.loihi import MANT_SHIFT, keep_factor


def intel_dir(given: str = "") -> Optional[Path]:
    """lava-dl's bundled test networks (``given``: a copy of that folder), or None."""
    candidates = [Path(given)] if given else [
        Path(sysconfig.get_paths()[k]) / "tests/lava/lib/dl/netx" for k in ("purelib", "platlib")]
    for p in candidates:
        if (p / "mnist.net").exists():
            return p
    if given:
        raise SystemExit(f"--netx-dir {given}: no mnist.net there (lava-dl's tests/lava/lib/dl/netx)")
    return None


@dataclass
class Case:
    """One network to time: its graph, numerics, input and netx facts."""

    label: str
    graph: Graph
    numerics: str
    x: np.ndarray  # (B, T, *shape) or (B, *shape)
    reset_interval: Optional[int] = None
    net_path: Optional[Path] = None  # netx file (Lava can run it)
    drive: Optional[np.ndarray] = None  # the Lava runner's drive
    intel_gt: Optional[Dict[str, np.ndarray]] = None


# ---------------------------------------------------------------- the limit
class PlainTorch:
    """The network written directly in torch, time-batched, no counting.

    Loihi numerics: synapses as one float32 conv/matmul over T*B (integer
    weights and spikes: exact), shifted one step (Loihi's synaptic delay);
    CUBA as trunc-decay, add, clamp, compare in float64, in place. Float
    numerics: convolutions, pooling and scales over T*B, IF as add, compare,
    subtract. Only the ops of the benchmark's networks."""

    def __init__(self, graph: Graph, numerics: str, device: str,
                 reset_interval: Optional[int]) -> None:
        self.graph, self.numerics, self.device = graph, numerics, device
        self.reset_interval = reset_interval
        self.order, _ = graph.order()
        # integer synapses in float32 are exact on a CPU; a GPU may pick TF32 or
        # Winograd/FFT algorithms, so there they run in float64 (as nmtc's do)
        self.syn_dtype = (torch.float64 if numerics == "loihi"
                          and torch.device(device).type == "cuda" else torch.float32)
        self.w = {}
        for name in self.order:
            op = graph[name].op
            if hasattr(op, "weight"):
                self.w[name] = (torch.as_tensor(np.asarray(op.weight), dtype=self.syn_dtype,
                                                device=device),
                                None if getattr(op, "bias", None) is None else
                                torch.as_tensor(np.asarray(op.bias), dtype=self.syn_dtype,
                                                device=device))

    def run(self, x: torch.Tensor, steps: int) -> Dict[str, torch.Tensor]:
        """Every neuron node's (T, B, ...) output."""
        vals: Dict[str, torch.Tensor] = {}
        layer = 0
        loihi = self.numerics == "loihi"
        for name in self.order:
            node = self.graph[name]
            kind = node.op_name
            src = vals[node.inputs[0]] if node.inputs else None
            if kind == "Input":
                if x.dim() == len(node.shape) + 1:  # static input, every step
                    y = x.to(self.device).unsqueeze(0).expand((steps,) + tuple(x.shape))
                else:
                    y = x.transpose(0, 1)[:steps].to(self.device)
            elif kind in ("Conv2d", "Affine", "Linear"):
                w, b = self.w[name]
                n, bsz = src.shape[0], src.shape[1]
                flat = src.reshape((n * bsz,) + tuple(src.shape[2:])).to(self.syn_dtype)
                if kind == "Conv2d":
                    op = node.op
                    y = F.conv2d(flat, w, None if loihi else b, op.stride, op.padding,
                                 op.dilation, op.groups)
                else:
                    y = F.linear(flat, w, None if loihi else b)
                y = y.reshape((n, bsz) + tuple(node.shape))
                if loihi:  # one-step synaptic delay
                    y = torch.cat([torch.zeros_like(y[:1]), y[:-1]])
            elif kind == "CubaLIF" and loihi:
                y = self._cuba(node, src, layer)
            elif kind == "IF":
                y = self._if(node, src)
            elif kind in ("AvgPool2d", "SumPool2d"):
                op = node.op
                n, bsz = src.shape[0], src.shape[1]
                y = F.avg_pool2d(src.reshape((n * bsz,) + tuple(src.shape[2:])), op.kernel_size,
                                 op.stride, op.padding, count_include_pad=True)
                y = y.reshape((n, bsz) + tuple(node.shape))
            elif kind == "Scale":
                y = src * torch.as_tensor(np.asarray(node.op.scale), dtype=torch.float32,
                                          device=self.device)
            elif kind == "Flatten":
                y = src.reshape(src.shape[:2] + (-1,))
            elif kind == "Output":
                y = src
            else:
                raise SystemExit(f"the plain-torch limit has no {kind} ({name})")
            if node.op.is_neuron:
                layer += 1
            vals[name] = y
        return {n: vals[n] for n in self.order if self.graph[n].op.is_neuron}

    def _cuba(self, node, a: torch.Tensor, layer: int) -> torch.Tensor:
        q = node.numerics
        fu, fv = keep_factor(q.i_decay), keep_factor(q.v_decay)
        vth = float(q.v_th_mant << MANT_SHIFT)
        lim = float((1 << 23) - 1)
        drive = q.input_transform is not None
        bias = torch.as_tensor(np.broadcast_to(q.bias_mant, node.shape) * 2.0 ** q.bias_exp,
                               dtype=torch.float64, device=self.device)
        n = a.shape[0]
        u = torch.zeros(a.shape[1:], dtype=torch.float64, device=self.device)
        v = torch.zeros_like(u)
        s = torch.empty(a.shape, dtype=torch.bool, device=self.device)
        ri = self.reset_interval
        phase = None if not ri else (1 + layer) % ri
        a = a.to(torch.float64) * (2.0 ** q.bias_exp if drive else float(1 << MANT_SHIFT))
        for t in range(n):
            if ri and (t + 1) % ri == phase:
                u.zero_()
                v.zero_()
            u.mul_(fu).trunc_()
            if drive:
                v.mul_(fv).trunc_().add_(u).add_(a[t])
            else:
                u.add_(a[t])
                v.mul_(fv).trunc_().add_(u).add_(bias)
            v.clamp_(-lim, lim)
            torch.gt(v, vth, out=s[t])
            v.masked_fill_(s[t], 0.0)
        return s.to(torch.float32)

    def _if(self, node, x: torch.Tensor) -> torch.Tensor:
        op = node.op
        f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)  # noqa
        thr, r, b = f(op.v_threshold), f(op.r), f(op.v_bias)
        v = f(op.v_init).expand(x.shape[1:]).clone()
        out = torch.empty_like(x)
        for t in range(x.shape[0]):
            v = v + r * x[t] + b
            s = (v >= thr).to(v.dtype)
            v = v - s * thr
            out[t] = s
        return out


# ---------------------------------------------------------------- the cases
def pilotnet(root: Path) -> Case:
    from nmtoolchain.frontends.netx_loader import load_netx

    d = root / "gts/pilotnet_lif"
    image = np.load(d / "image.npy").transpose(2, 1, 0)
    names = {"layer0_neuron": "input", "layer1_neuron": "conv-0", "layer2_neuron": "conv-1",
             "layer3_neuron": "conv-2", "layer4_neuron": "conv-3", "layer5_neuron": "conv-4",
             "layer7_neuron": "fc-0", "layer8_neuron": "fc-1", "layer9_neuron": "fc-2"}
    gt = {}
    for name, f in names.items():
        a = np.load(d / f"{f}.npy")
        gt[name] = a.transpose([a.ndim - 1] + list(range(a.ndim - 2, -1, -1))).astype(np.int64)
    return Case("PilotNet-LIF (loihi, batch 1)", load_netx(d / "network.net"), "loihi",
                image.reshape((1,) + image.shape).astype(np.float32), 16, d / "network.net",
                image, gt)


def mnist(root: Path, steps: int) -> Case:
    from sklearn.datasets import load_digits

    from nmtoolchain.frontends.netx_loader import load_netx
    from simulators.lava_runner import input_drive_from_image, netx_drive_kind
    from simulators.parity import simulator_input

    net = root / "mnist.net"
    img = np.zeros((28, 28))
    img[2:26, 2:26] = np.kron(load_digits().images[3] / 16.0, np.ones((3, 3)))
    drive = input_drive_from_image(net, img.reshape(-1))
    graph = load_netx(net)
    x = simulator_input(graph, drive, steps, netx_drive_kind(net))
    return Case("mnist.net (loihi, batch 1)", graph, "loihi", x, None, net, drive)


def digits_cnn(batch: int) -> Case:
    from sklearn.datasets import load_digits
    from torch import nn

    from nmtoolchain.convert.mst import convert_mst
    from nmtoolchain.frontends.torch_loader import graph_from_module
    from nmtoolchain.nn import QCFS

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), QCFS(4), nn.AvgPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), QCFS(4), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(32 * 2 * 2, 10))
    graph = convert_mst(graph_from_module(net, (1, 8, 8)))
    imgs = load_digits().images[:batch].astype(np.float32)[:, None] / 16.0
    return Case(f"digits CNN -> IF SNN (float, batch {batch}, untrained weights)", graph,
                "float", imgs)


# ---------------------------------------------------------------- timing
#: the clock runs are timed with: wall time, or (``--clock cpu``, for a machine
#: shared with other jobs) this process's CPU time, which waiting for a core
#: does not inflate
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]


def best_ms(fn: Callable[[], object], steps: int, repeat: int) -> Tuple[float, object]:
    """(best ms per step over ``repeat`` runs after one warm-up, the last result)."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = CLOCK()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, CLOCK() - t0)
    return 1000 * best / steps, out


def differing(ref: Dict[str, np.ndarray], cand: Dict[str, np.ndarray]) -> List[str]:
    """Layers whose (T, ...) arrays differ anywhere (or are missing)."""
    return [k for k in ref if k not in cand or ref[k].shape != cand[k].shape
            or not np.array_equal(ref[k], cand[k])]


DEFAULT = "nmtc layer-major, counting on (default)"
TORCH_LOOPS = "nmtc default, torch neuron loops (NMTC_FUSED=0)"
TRITON = "nmtc default, Triton CUBA kernel (NMTC_TRITON=1)"


def run_case(case: Case, steps: int, repeat: int, device: str, lava: bool) -> None:
    from simulators.cycle import Simulator

    g, x = case.graph, torch.as_tensor(case.x)
    kw = dict(reset_interval=case.reset_interval, device=device)
    neurons = [n.name for n in g if n.op.is_neuron]
    sims = {
        "nmtc step schedule, counting on (before)": Simulator(g, case.numerics, record=neurons,
                                                              schedule="step", **kw),
        DEFAULT: Simulator(g, case.numerics, record=neurons, **kw),
        "nmtc layer-major, counting off": Simulator(g, case.numerics, record=neurons,
                                                    count=False, **kw),
    }
    env = {}  # runs of the default under an environment switch
    if torch.device(device).type == "cpu":  # the torch neuron loops instead of numba's
        env[TORCH_LOOPS] = ("NMTC_FUSED", "0")
    elif case.numerics == "loihi" and importlib.util.find_spec("triton") is not None:
        env[TRITON] = ("NMTC_TRITON", "1")  # the opt-in Triton CUBA kernel
    for label in env:
        sims[label] = Simulator(g, case.numerics, record=neurons, **kw)
    rows, spikes = [], {}
    for label, sim in sims.items():
        key, value = env.get(label, (None, None))
        if key:
            os.environ[key] = value
        try:
            ms, res = best_ms(lambda: sim.run(x, steps), steps, repeat)
        finally:
            if key:
                os.environ.pop(key, None)
        rows.append((label, ms))
        spikes[label] = {k: v.transpose(0, 1).cpu().numpy() for k, v in res.recorded.items()}
        if label == DEFAULT:
            counts = res.counts
    plain = PlainTorch(g, case.numerics, device, case.reset_interval)
    with torch.no_grad():
        ms, res = best_ms(lambda: plain.run(x, steps), steps, repeat)
    rows.append(("plain-torch limit (time-batched, no counting)", ms))
    spikes["plain"] = {k: v.cpu().numpy() for k, v in res.items()}
    lava_run = None
    if lava and case.net_path is not None:
        from simulators.lava_runner import run_netx_in_lava

        lava_run = run_netx_in_lava(case.net_path, case.drive, steps,
                                    reset_interval=case.reset_interval)
        rows.insert(0, ("Lava fixed_pt (all layers recorded)", lava_run.ms_per_step))
    limit = rows[-1][1]
    bsz = x.shape[0]
    print(f"\n{case.label}, {steps} steps, device {device}; "
          f"{int(counts.total('spikes_out')):,} spikes counted")
    print(f"  {'run':<50}{'ms/step':>10}{'ms/sample-step':>16}{'samples/s':>11}{'x limit':>9}")
    for label, ms in rows:
        print(f"  {label:<50}{ms:>10.3f}{ms / bsz:>16.4f}{1000 * bsz / (ms * steps):>11.1f}"
              f"{ms / limit:>9.2f}")
    if lava_run is not None:
        lv = lava_run.ms_per_step
        print(f"  nmtc default is {lv / dict(rows)[DEFAULT]:.0f}x faster than Lava")
    ref = {k: v.round().astype(np.int64) for k, v in spikes[
        "nmtc step schedule, counting on (before)"].items()}
    for label, got in spikes.items():
        if label.startswith("nmtc step"):
            continue
        bad = differing(ref, {k: v.round().astype(np.int64) for k, v in got.items()})
        print(f"  spikes, {label} vs step schedule: "
              f"{'identical at every layer and step' if not bad else 'DIFFER in ' + ', '.join(bad)}")
    if lava_run is not None:
        common = {k: lava_run.outputs[k] for k in lava_run.outputs if k in ref}
        bad = differing(common, {k: ref[k][:, 0] for k in common})
        print(f"  spikes, nmtc vs Lava ({len(common)} layers): "
              f"{'identical' if not bad else 'DIFFER in ' + ', '.join(bad)}")
    if case.intel_gt is not None and steps >= 17:
        gt = {k: v[:17] for k, v in case.intel_gt.items()}
        bad = differing(gt, {k: ref[k][:17, 0] for k in gt})
        print(f"  spikes, nmtc vs Intel's recording (steps 1-17): "
              f"{'identical' if not bad else 'DIFFER in ' + ', '.join(bad)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--cnn-batch", type=int, nargs="+", default=[64, 256],
                    help="batch sizes of the digits CNN (one case each)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lava", action="store_true", help="also time Lava fixed_pt (slow)")
    ap.add_argument("--only", default="", help="comma-separated: pilotnet,mnist,cnn")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="time runs by wall clock (default) or by this process's CPU time "
                         "(a loaded machine; Lava is always timed by its own wall clock)")
    ap.add_argument("--netx-dir", default="",
                    help="a copy of lava-dl's tests/lava/lib/dl/netx (default: the installed one)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda":  # full float32, as the simulator runs
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    root = intel_dir(args.netx_dir)
    makers = {"pilotnet": [lambda: pilotnet(root)], "mnist": [lambda: mnist(root, args.steps)],
              "cnn": [lambda b=b: digits_cnn(b) for b in args.cnn_batch]}
    only = [s for s in args.only.split(",") if s] or list(makers)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"device {args.device}, {args.clock} clock")
    for key in only:
        if key in ("pilotnet", "mnist") and root is None:
            print(f"\n{key}: skipped, lava-dl's test networks are not installed "
                  "(pip install lava-dl, or --netx-dir)")
            continue
        for make in makers[key]:
            run_case(make(), args.steps, args.repeat, args.device, args.lava)


if __name__ == "__main__":
    main()
