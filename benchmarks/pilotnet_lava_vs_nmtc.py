"""PilotNet-LIF (Intel's netx network, 158,509 neurons) in Lava (fixed_pt) and
in nmtc's simulator (loihi numerics), same drive, same steps, in one run.

Prints ms/step for both, the ratio, and whether every layer's spikes match
at every step (plus Intel's recorded ground truth for steps 1-17).

    .venv/bin/python benchmarks/pilotnet_lava_vs_nmtc.py [--steps 32] [--batch 16]

Lava's time is measured twice: recording every layer (what the spike
comparison needs) and recording only the readout (Lava's own speed). nmtc's
time includes its counters (they are always on) and recording every layer;
the batched line runs B copies of the input at once and reports time per
sample-step (Lava runs one sample at a time).
"""
from __future__ import annotations

import argparse
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch


def intel_dir() -> Path:
    p = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/gts/pilotnet_lif"
    if not (p / "network.net").exists():
        raise SystemExit("lava-dl's test networks are not installed (pip install lava-dl)")
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--plain-allocator", action="store_true",
                    help="keep glibc's default malloc thresholds (slower: every large tensor "
                         "lands on fresh mmap pages)")
    args = ap.parse_args()
    if not args.plain_allocator:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: keep large tensors on the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not hand freed pages back at once
    torch.set_num_threads(2)
    from simulators.compare import first_divergence, format_divergence
    from simulators.lava_runner import run_netx_in_lava
    from simulators.parity import run_nmtc_netx

    root = intel_dir()
    net = root / "network.net"
    image = np.load(root / "image.npy").transpose(2, 1, 0)  # Intel's input bias, C,H,W
    steps = args.steps

    t0 = time.perf_counter()
    lava_all = run_netx_in_lava(net, image, steps, reset_interval=16)
    lava_all_wall = time.perf_counter() - t0
    readout = list(lava_all.outputs)[-1]
    lava_one = run_netx_in_lava(net, image, steps, reset_interval=16, record_layers=[readout])

    res, ours = run_nmtc_netx(net, image, steps, reset_interval=16)
    res_b, _ = run_nmtc_netx(net, image, steps, reset_interval=16, batch_repeat=args.batch)

    common = [k for k in lava_all.outputs if k in ours]
    div = first_divergence({k: lava_all.outputs[k] for k in common},
                           {k: ours[k] for k in common}, layers=common)
    names = {"layer0_neuron": "input", "layer1_neuron": "conv-0", "layer2_neuron": "conv-1",
             "layer3_neuron": "conv-2", "layer4_neuron": "conv-3", "layer5_neuron": "conv-4",
             "layer7_neuron": "fc-0", "layer8_neuron": "fc-1", "layer9_neuron": "fc-2"}
    gt = {}
    for name, f in names.items():
        a = np.load(root / f"{f}.npy")
        gt[name] = a.transpose([a.ndim - 1] + list(range(a.ndim - 2, -1, -1))).astype(np.int64)[:17]
    gt_div = first_divergence(gt, {k: ours[k][:17] for k in gt}, layers=list(gt))
    spikes = sum(int(v.sum()) for v in ours.values())

    print(f"PilotNet-LIF, {steps} steps, reset_interval 16, {spikes:,} spikes in nmtc's run; "
          f"allocator {'default' if args.plain_allocator else 'tuned (mallopt)'}")
    print(f"{'run':<44}{'ms/step':>10}{'x faster than Lava':>22}")
    base = lava_one.ms_per_step
    rows = [
        ("Lava fixed_pt, readout recorded", lava_one.ms_per_step),
        ("Lava fixed_pt, all 11 layers recorded", lava_all.ms_per_step),
        ("nmtc loihi numerics, batch 1 (counting on)", res.ms_per_step),
        (f"nmtc loihi numerics, batch {args.batch}, per sample", res_b.ms_per_step / args.batch),
    ]
    for label, ms in rows:
        print(f"{label:<44}{ms:>10.2f}{base / ms:>21.1f}x")
    print(f"spikes, nmtc vs Lava (all layers, all steps): {format_divergence(div)}")
    print(f"spikes, nmtc vs Intel's recording (steps 1-17): {format_divergence(gt_div, 'intel')}")
    print(f"wall clock: Lava {lava_all_wall:.1f} s incl. compile and start-up; "
          f"nmtc {res.wall_s:.2f} s for the run")


if __name__ == "__main__":
    main()
