"""The embedded default job behind ``nmtc demo`` (the README's main command).

Uses only what ships with nmtc: the example CNN trained on scikit-learn's
digits (``nmtoolchain/data/``, made by ``examples/train_digits_cnn.py``) in
TorchScript and ONNX form. It loads both into the IR, shows the inspection,
checks that both formats give the same totals, and measures the model's
accuracy on the digits test split. Then it simulates Intel's PilotNet-LIF
(shipped inside lava-dl) bit-exactly in Loihi numerics on Intel's own input,
checks the spikes against Intel's recording, and prices the run with the
hardware profiles next to Intel's Loihi 2 board measurement. Later stages
(conversion, export to Loihi 2 and Speck) are added here as they land.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional


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
    summary = {"torchscript": ts, "onnx_totals": ox["totals"], "totals_agree": same,
               "ann_test_accuracy": acc, "pilotnet": pilot}
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
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
    return summary
