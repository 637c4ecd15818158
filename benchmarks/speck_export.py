"""The Speck back end end to end, with the figures of issue #10's closing note.

1. The bundled QCFS digits CNN: MST conversion -> Speck export -> ``nmtc verify``
   (sinabs against nmtc's speck numerics on digits test images) -> accuracy on the
   450 test images of the float SNN, the Speck integer network and the Loihi 2
   fixed-point export, at the same T.
2. sinabs's 9-layer DynapCnnNetA on (2, 128, 128): nmtc's kernel and neuron
   memory per layer and its core assignment (tests/test_speck_sinabs.py checks
   them against sinabs's memory_summary and get_valid_mapping).
3. One model per input format: ONNX and TorchScript (the bundled ReLU digits CNN,
   threshold-balanced to IF), a sinabs module, a sinabs-exported NIR file: each
   exports to Speck and verifies against sinabs.

    .venv/bin/python benchmarks/speck_export.py [--steps 16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

from nmtoolchain.accuracy import accuracy_vs_timesteps
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.convert.threshold_balance import convert_relu_to_if
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.frontends import load_model
from nmtoolchain.passes import fold_batchnorm
from nmtoolchain.targets.loihi2 import loihi_accuracy
from nmtoolchain.targets.registry import export
from nmtoolchain.targets.speck import compile_for_speck, speck_accuracy
from simulators.sinabs_runner import verify_speck_export

DATA = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data"


def digits_cnn(steps: int, work: Path) -> Dict[str, Any]:
    split = load_digits_split()
    t0 = time.perf_counter()
    snn = convert_mst(load_model(DATA / "digits_qcfs_cnn.pt"), timesteps=steps)
    res = export(snn, "speck", work / "digits.speck")
    t_export = time.perf_counter() - t0
    ver = verify_speck_export(work / "digits.speck", dataset="digits", samples=32, steps=steps)
    x, y = split.x_test, split.y_test
    float_acc = accuracy_vs_timesteps(snn, x, y, [steps])[-1][1]
    t0 = time.perf_counter()
    speck = speck_accuracy(snn, x, y, steps=steps)["accuracy"]
    t_speck = time.perf_counter() - t0
    loihi = loihi_accuracy(snn, x, y, steps=steps, calib="digits")["accuracy"]
    return {"steps": steps, "test_images": int(len(y)), "float_snn_accuracy": float_acc,
            "speck_integer_accuracy": speck, "loihi2_fixed_accuracy": loihi,
            "verify": "identical" if ver.identical else [d.line() for d in ver.divergences],
            "verify_samples": ver.samples,
            "mapping": res.report["mapping"]["assignment"],
            "layers": [{k: l[k] for k in ("conv", "scale", "limited_by", "threshold",
                                          "min_v_mem")} for l in res.report["layers"]],
            "export_s": round(t_export, 3), "speck_accuracy_s": round(t_speck, 3)}


def net_a() -> Dict[str, Any]:
    import torch
    from sinabs.from_torch import from_model
    from torch import nn

    from nmtoolchain.frontends.torch_fx import graph_from_module

    def conv(i, o, k, s=1, p=0):
        return nn.Conv2d(i, o, k, stride=s, padding=p, bias=False)
    seq = nn.Sequential(
        conv(2, 16, 2, 2), nn.ReLU(), conv(16, 16, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2),
        conv(16, 32, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2), conv(32, 32, 3, p=1), nn.ReLU(),
        nn.AvgPool2d(2, 2), conv(32, 64, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2),
        conv(64, 64, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2), conv(64, 256, 2), nn.ReLU(),
        conv(256, 128, 1), nn.ReLU(), conv(128, 1, 1), nn.ReLU(), nn.Flatten())
    torch.manual_seed(0)
    snn = from_model(seq, batch_size=1).spiking_model
    m = compile_for_speck(graph_from_module(snn, (2, 128, 128))).pipeline \
        .result_of("map_onto_speck_cores")
    return {"kernel_memory": [l.kernel for l in m.layers],
            "neuron_memory": [l.neuron for l in m.layers],
            "assignment": [m.assignment[l.layer] for l in m.layers]}


def formats(steps: int, work: Path) -> Dict[str, Any]:
    import nir
    import sinabs
    import sinabs.layers as sl
    import torch
    from torch import nn

    from nmtoolchain.frontends.torch_fx import graph_from_module

    split = load_digits_split()
    out: Dict[str, Any] = {}

    def run(name: str, graph: Any) -> None:
        d = work / f"{name}.speck"
        res = export(graph, "speck", d)
        ver = verify_speck_export(d, samples=4, steps=steps)
        acc = None
        if tuple(graph.inputs()[0].shape) == (1, 8, 8) or tuple(graph.inputs()[0].shape) == (64,):
            acc = speck_accuracy(graph, split.x_test.reshape((len(split.x_test),)
                                                             + tuple(graph.inputs()[0].shape)),
                                 split.y_test, steps=steps)["accuracy"]
        out[name] = {"layers": len(res.report["layers"]),
                     "cores": res.report["mapping"]["assignment"],
                     "verify": "identical" if ver.identical else "DIFFERENT",
                     "speck_accuracy": acc}

    calib = split.x_train[:256].reshape(-1, 1, 8, 8)
    for name, path in (("onnx", "digits_cnn.onnx"), ("torchscript", "digits_cnn.pt")):
        ann = fold_batchnorm(load_model(DATA / path))
        snn, _ = convert_relu_to_if(ann, calib, steps=steps, reset="subtract", compare=">=")
        run(name, snn)
    torch.manual_seed(0)
    mod = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0),
                        sl.SumPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                        sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0), sl.SumPool2d(2),
                        nn.Flatten(), nn.Linear(64, 10), sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0))
    run("sinabs_module", graph_from_module(mod, (2, 8, 8)))
    g = sinabs.to_nir(mod, torch.zeros(1, 2, 8, 8))
    g.infer_types()  # sinabs leaves Conv2d input_shape None; nir.write needs it
    for node in g.nodes.values():
        if isinstance(node, nir.Conv2d):
            node.input_shape = tuple(int(s) for s in node.input_type["input"][1:])
    nir.write(str(work / "sinabs.nir"), g)
    run("sinabs_nir", load_model(work / "sinabs.nir"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"digits_cnn": digits_cnn(args.steps, work), "dynapcnn_net_a": net_a(),
                  "formats": formats(args.steps, work)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
