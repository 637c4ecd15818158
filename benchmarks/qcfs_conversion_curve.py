"""QCFS -> IF conversion curve on digits: ANN accuracy, and SNN accuracy at
T = 1, 2, 4, ..., 64 with and without the λ/2 pre-charge, measured side by side
in one run on the digits test split, plus the smallest T whose SNN accuracy is
within 0.5 point of the ANN. A third column is the network ``nmtc export
--target loihi2`` writes for that T, run bit-exactly in Loihi fixed point
(rate-coded input, reset-to-zero neurons with the headroom/bias adaptation of
``nmtoolchain.convert.for_loihi``; T >= --loihi-from only, it costs more).

    .venv/bin/python benchmarks/qcfs_conversion_curve.py [--model FILE] [--tmax 64]
    .venv/bin/python benchmarks/qcfs_conversion_curve.py \
        --model nmtoolchain/data/digits_mini_mst.pt --tmax 128 --within 0.01   # the mini-MST
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nmtoolchain.accuracy import accuracy_vs_timesteps, ann_accuracy
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.frontends import load_model

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_qcfs_cnn.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--tmax", type=int, default=64)
    ap.add_argument("--within", type=float, default=0.005,
                    help="report the smallest T whose SNN is within this of the ANN")
    ap.add_argument("--loihi-from", type=int, default=8,
                    help="smallest T for the Loihi fixed-point column (0: no column)")
    args = ap.parse_args()
    split = load_digits_split()
    ann = load_model(args.model)
    ann_acc = ann_accuracy(ann, split.x_test, split.y_test)
    with_pc = accuracy_vs_timesteps(convert_mst(ann, precharge=True), split.x_test, split.y_test,
                                    args.tmax)
    without = accuracy_vs_timesteps(convert_mst(ann, precharge=False), split.x_test, split.y_test,
                                    args.tmax)
    print(f"model {args.model.name}, digits test split ({len(split.y_test)} images)")
    print(f"ANN accuracy: {100 * ann_acc:.2f} %")
    fixed = {}
    if args.loihi_from:
        from nmtoolchain.targets.loihi2 import loihi_accuracy

        x = split.x_test.reshape((len(split.x_test),) + tuple(ann.inputs()[0].shape))
        from nmtoolchain.errors import NmtcError

        for t, _ in with_pc:
            if t >= args.loihi_from:
                try:
                    r = loihi_accuracy(convert_mst(ann, precharge=True), x, split.y_test, steps=t)
                except NmtcError as e:
                    print(f"no Loihi 2 fixed-point column: {e}")
                    break
                fixed[t] = (r["accuracy"], r["headroom"])
    print(f"{'T':>4}  {'SNN λ/2 pre-charge':>18}  {'SNN v(0)=0':>10}  {'Loihi 2 fixed point (k)':>24}")
    for (t, a), (_, b) in zip(with_pc, without):
        fx = f"{100 * fixed[t][0]:>19.2f}% ({fixed[t][1]})" if t in fixed else f"{'-':>24}"
        print(f"{t:>4}  {100 * a:>17.2f}%  {100 * b:>9.2f}%  {fx}")
    for label, curve in (("with pre-charge", with_pc), ("without pre-charge", without)):
        ok = [t for t, a in curve if ann_acc - a <= args.within + 1e-12]
        print(f"smallest T within {100 * args.within:g} point of the ANN ({label}): "
              f"{ok[0] if ok else f'none up to T={args.tmax}'}")


if __name__ == "__main__":
    main()
