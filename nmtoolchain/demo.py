"""The embedded default job behind ``nmtc demo`` (the README's main command).

Uses only what ships with nmtc: the example CNN trained on scikit-learn's
digits (``nmtoolchain/data/``, made by ``examples/train_digits_cnn.py``) in
TorchScript and ONNX form. It loads both into the IR, shows the inspection,
checks that both formats give the same totals, and measures the model's
accuracy on the digits test split. Then it simulates Intel's PilotNet-LIF
(shipped inside lava-dl) bit-exactly in Loihi numerics on Intel's own input,
checks the spikes against Intel's recording, and prices the run with the
hardware profiles next to Intel's Loihi 2 board measurement. Finally it
takes the bundled digits SNN (an MLP converted from a ReLU ANN, made by
``examples/train_digits_snn.py``), compares its float and Loihi fixed-point
accuracy, exports it for Loihi 2 (netx file, mapping, reports) and runs the
export in Lava next to nmtc's simulator. Later stages (MST conversion, the
Speck back end) are added here as they land.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np


from nmtoolchain.errors import NmtcError

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_TORCHSCRIPT = DATA_DIR / "digits_cnn.pt"
BUNDLED_ONNX = DATA_DIR / "digits_cnn.onnx"


def digits_accuracy_torchscript(path: Path) -> tuple:
    """(accuracy, number of test images) of a TorchScript classifier on the
    digits test split; torch runs the model."""
    import torch

    from nmtoolchain.datasets import load_digits_split

    model = torch.jit.load(str(path)).eval()
    data = load_digits_split()
    with torch.no_grad():
        pred = model(torch.from_numpy(data.x_test)).argmax(1).numpy()
    return float((pred == data.y_test).mean()), len(data.y_test)


def pilotnet_stage() -> Optional[Dict[str, Any]]:
    """Bit-exact simulation of Intel's PilotNet-LIF and its cost report, or
    None when lava-dl's bundled networks are not installed."""
    import sysconfig

    import numpy as np

    from nmtoolchain.frontends.netx_loader import load_netx
    from nmtoolchain.report.simulation import build_report
    from simulators.compare import first_divergence, format_divergence
    from simulators.cycle import Simulator

    root = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/gts/pilotnet_lif"
    if not (root / "network.net").exists():
        return None
    graph = load_netx(root / "network.net")
    drive = np.load(root / "image.npy").transpose(2, 1, 0)[None].astype(np.float32)
    steps = 16
    result = Simulator(graph, "loihi", record="neurons", reset_interval=16).run(drive, steps)
    files = {"layer0_neuron": "input", "layer1_neuron": "conv-0", "layer2_neuron": "conv-1",
             "layer3_neuron": "conv-2", "layer4_neuron": "conv-3", "layer5_neuron": "conv-4",
             "layer7_neuron": "fc-0", "layer8_neuron": "fc-1", "layer9_neuron": "fc-2"}
    intel, ours = {}, {}
    for name, f in files.items():
        a = np.load(root / f"{f}.npy")
        intel[name] = a.transpose([a.ndim - 1] + list(range(a.ndim - 2, -1, -1)))[:steps]
        ours[name] = result.recorded[name][0].numpy()
    div = first_divergence(intel, ours, layers=list(files))
    rep = build_report(graph, result, ["loihi2", "loihi1", "cmos45nm"], measured="pilotnet_lif",
                       inputs="Intel's recorded PilotNet input")
    return {"spikes_vs_intel": format_divergence(div, "intel", "nmtc"),
            "ms_per_step": result.ms_per_step, "report": rep}


BUNDLED_SNN = DATA_DIR / "digits_mlp_snn.nmir"


def loihi_stage(samples: int = 2) -> Dict[str, Any]:
    """Digits SNN: float vs fixed-point accuracy, export for Loihi 2, verify in Lava."""
    from nmtoolchain.convert import rate_encode
    from nmtoolchain.datasets import load_digits_split
    from nmtoolchain.ir import load_graph
    from nmtoolchain.quantize import quantize_for_loihi, spike_counts

    snn = load_graph(BUNDLED_SNN).infer_shapes()
    steps = int(snn.metadata.get("input_encoding", {}).get("steps", 32))
    data = load_digits_split()
    shape = tuple(snn.inputs()[0].shape)
    xtr = data.x_train.reshape((len(data.x_train),) + shape)
    xte = data.x_test.reshape((len(data.x_test),) + shape)
    q, report = quantize_for_loihi(snn, rate_encode(xtr[:128], steps), steps=steps)
    out = report.layers[-1]
    spikes = rate_encode(xte, steps)
    fl = spike_counts(snn, "float", spikes, steps, [out.float_neuron])[out.float_neuron]
    fx = spike_counts(q, "loihi", spikes, steps, [out.layer])[out.layer]
    acc = lambda c: float((c.reshape(len(c), -1).argmax(1) == data.y_test).mean())  # noqa: E731
    result: Dict[str, Any] = {"model": str(BUNDLED_SNN.name), "steps": steps,
                              "float_accuracy": acc(fl), "fixed_accuracy": acc(fx),
                              "test_images": len(data.y_test)}
    result.update(export_and_verify(BUNDLED_SNN, "digits_mlp.loihi2", steps, samples))
    return result


def export_and_verify(model: Any, name: str, steps: int, samples: int) -> Dict[str, Any]:
    """Export ``model`` for Loihi 2 (calibrated on digits) into a temporary
    directory and run it in Lava next to nmtc: cores, verdict, speeds; or
    ``{'verify': 'skipped: ...'}`` without Lava."""
    import tempfile

    try:
        import lava  # noqa: F401
    except ImportError:
        return {"verify": "skipped: Lava is not installed"}
    from nmtoolchain.targets.loihi2 import export_loihi2
    from exporters.loihi2.verify import verify_export

    with tempfile.TemporaryDirectory() as tmp:
        exp = export_loihi2(model, Path(tmp) / name, calib="digits", timesteps=steps)
        ver = verify_export(exp.directory, dataset="digits", samples=samples)
        return {"cores": exp.report.get("mapping", {}).get("cores_used"),
                "verify": "identical" if ver.identical else "DIFFERENT",
                "verify_lines": ver.lines(), "lava_ms_per_step": ver.lava_ms_per_step,
                "nmtc_ms_per_step": ver.nmtc_ms_per_step}


BUNDLED_QCFS = DATA_DIR / "digits_qcfs_cnn.pt"
#: Presentation length of the MST stage (the QCFS CNN is within 0.5 point of its ANN here).
MST_STEPS = 32


def mst_stage(samples: int = 2, steps: int = MST_STEPS) -> Dict[str, Any]:
    """QCFS CNN -> MST conversion -> Loihi 2 export -> Lava check -> cost report.

    Accuracy on the digits test split at each stage: the ANN, the converted
    float SNN (direct input, subtract reset, λ/2 pre-charge), and the
    exported network in Loihi fixed point (rate-coded input, adapted to
    reset-to-zero neurons; bit-exact with Lava). Then energy and time per
    inference of the exported network under loihi2 and loihi1 (its counts
    in Loihi numerics) and of the float SNN under cmos45nm."""
    from nmtoolchain.targets.loihi2 import loihi_accuracy
    from nmtoolchain.accuracy import accuracy_vs_timesteps, ann_accuracy
    from nmtoolchain.convert import rate_encode
    from nmtoolchain.convert.mst import convert_mst
    from nmtoolchain.datasets import load_digits_split
    from nmtoolchain.frontends import load_model
    from nmtoolchain.quantize import aligned_run
    from nmtoolchain.report.simulation import build_report
    from simulators.cycle import Simulator, simulate

    data = load_digits_split()
    ann = load_model(BUNDLED_QCFS)
    x = data.x_test.reshape((len(data.x_test),) + tuple(ann.inputs()[0].shape))
    snn = convert_mst(ann, timesteps=steps)
    curve = dict(accuracy_vs_timesteps(snn, x, data.y_test, steps))
    fixed = loihi_accuracy(snn, x, data.y_test, steps=steps, calib="digits")
    q = fixed["graph"]
    plan = aligned_run(q, steps)
    drive = rate_encode(x[:64], steps)
    pad = np.zeros((len(drive), plan["steps"] - steps) + drive.shape[2:], np.float32)
    run = Simulator(q, "loihi", reset_interval=plan["reset_interval"],
                    reset_offset=plan["reset_offset"]).run(np.concatenate([drive, pad], 1),
                                                           plan["steps"])
    loihi_rep = build_report(q, run, ["loihi2", "loihi1"], reference="loihi2",
                             inputs=f"digits test split, 64 images, {steps} steps, rate-coded")
    float_rep = build_report(snn, simulate(snn, x[:64], steps), ["cmos45nm"],
                             inputs=f"digits test split, 64 images, {steps} steps")
    result: Dict[str, Any] = {
        "model": BUNDLED_QCFS.name, "steps": steps, "test_images": len(x),
        "ann_accuracy": ann_accuracy(ann, x, data.y_test),
        "snn_accuracy": curve[steps], "snn_curve": curve,
        "loihi_fixed_accuracy": fixed["accuracy"], "headroom": fixed["headroom"],
        "loihi_report": loihi_rep, "float_report": float_rep}
    result.update(export_and_verify(snn, "digits_qcfs.loihi2", steps, samples))
    return result


def _render_mst(m: Dict[str, Any], console: Any) -> None:
    console.rule("MST: QCFS CNN -> IF SNN -> Loihi 2 (export, Lava check, cost)")
    t = m["steps"]
    console.print(f"{m['model']} on {m['test_images']} digits test images: ANN "
                  f"{m['ann_accuracy'] * 100:.2f}%; converted SNN (T={t}) "
                  f"{m['snn_accuracy'] * 100:.2f}%; Loihi 2 export in fixed point "
                  f"{m['loihi_fixed_accuracy'] * 100:.2f}% (rate-coded input, reset to 0, "
                  f"headroom k={m['headroom']})")
    console.print("SNN accuracy vs T: " + ", ".join(
        f"{k}: {v * 100:.1f}%" for k, v in sorted(m["snn_curve"].items())))
    if "cores" in m:
        console.print(f"exported to netx on {m['cores']} Loihi 2 core(s); Lava vs nmtc: "
                      f"{m['verify']} (Lava {m['lava_ms_per_step']:.1f} ms/step)")
    else:
        console.print(f"Lava check {m['verify']}")
    for rep in (m["loihi_report"], m["float_report"]):
        for p, row in rep["profiles"].items():
            ts = row["time_per_step_ns"]
            console.print(f"  {p:<9} {row['energy_per_inference_pj'] / 1e6:9.4f} µJ per inference"
                          f" ({row['dynamic_pj'] / 1e6:.4f} µJ dynamic)"
                          + (f", {ts / 1e3:.2f} µs per step" if ts else ""))


def _plain(v: Any) -> Any:
    return v.tolist() if hasattr(v, "tolist") else str(v)


def run_demo(as_json: bool = False, console: Optional[Any] = None) -> Dict[str, Any]:
    """Run the demo; print tables (or JSON) and return the summary."""
    from nmtoolchain.frontends import load_model
    from nmtoolchain.report.inspect import inspect_graph, render_inspection

    ts = inspect_graph(load_model(BUNDLED_TORCHSCRIPT))
    ox = inspect_graph(load_model(BUNDLED_ONNX))
    same = ts["totals"] == ox["totals"]
    if not same:
        raise NmtcError(f"bundled TorchScript and ONNX models disagree: {ts['totals']} vs "
                        f"{ox['totals']}")
    acc, n_test = digits_accuracy_torchscript(BUNDLED_TORCHSCRIPT)
    pilot = pilotnet_stage()
    loihi = loihi_stage()
    mst = mst_stage()
    from nmtoolchain.demo_speck import render_speck, speck_stage

    speck = speck_stage()
    summary = {"torchscript": ts, "onnx_totals": ox["totals"], "totals_agree": same,
               "ann_test_accuracy": acc, "pilotnet": pilot, "loihi_export": loihi, "mst": mst,
               "speck": speck}
    if as_json:
        print(json.dumps({k: v for k, v in summary.items()}, indent=2, default=_plain))
    elif console is not None:
        render_inspection(ts, console)
        console.print(f"ONNX export of the same CNN: totals {'agree' if same else 'DIFFER'} "
                      f"({ox['totals']['parameters']:,} parameters, "
                      f"{ox['totals']['synapses']:,} synapses)")
        console.print(f"ANN accuracy on the digits test split ({n_test} images): "
                      f"{acc * 100:.2f}%")
        if pilot is None:
            console.print("PilotNet-LIF stage skipped: lava-dl's bundled networks are not installed")
        else:
            console.rule("Intel PilotNet-LIF, bit-exact Loihi simulation (16 steps)")
            console.print(f"spikes of all 9 layers vs Intel's recording: "
                          f"{pilot['spikes_vs_intel']} ({pilot['ms_per_step']:.1f} ms/step)")
            for p, row in pilot["report"]["profiles"].items():
                t = row["time_per_step_ns"]
                console.print(f"  {p:<9} {row['energy_per_inference_pj'] / 1e9:8.3f} mJ per inference"
                              f" ({row['dynamic_pj'] / 1e9:.3f} mJ dynamic)"
                              + (f", {t / 1e3:.0f} µs per step" if t else ""))
            for m in pilot["report"]["measured"]:
                console.print(
                    f"  Intel's Loihi 2 board: {m['measured_dynamic_pj'] / 1e9:.2f} mJ dynamic, "
                    f"{m['measured_step_ns'] / 1e3:.0f} µs per step, {m['measured_cores']:.0f} cores; "
                    f"estimate off by {m['energy_rel_error'] * 100:+.0f}% (energy), "
                    f"{m['time_rel_error'] * 100:+.0f}% (time)")
        console.rule("digits SNN -> Loihi 2: quantize, export, run in Lava")
        console.print(f"{loihi['model']}: accuracy on {loihi['test_images']} test images, "
                      f"{loihi['steps']} steps: float SNN {loihi['float_accuracy'] * 100:.2f}%, "
                      f"Loihi fixed point {loihi['fixed_accuracy'] * 100:.2f}% "
                      f"({(loihi['fixed_accuracy'] - loihi['float_accuracy']) * 100:+.2f} points)")
        if "verify_lines" in loihi:
            console.print(f"exported to netx on {loihi['cores']} Loihi 2 core(s); Lava vs nmtc: "
                          f"{loihi['verify']} (Lava {loihi['lava_ms_per_step']:.1f} ms/step, "
                          f"nmtc {loihi['nmtc_ms_per_step']:.1f} ms/step)")
        else:
            console.print(f"Lava check {loihi['verify']}")
        _render_mst(mst, console)
        render_speck(speck, console)
    return summary
