"""The embedded default job behind ``nmtc demo`` (the README's main command).

Uses only what ships with nmtc: the example CNN trained on scikit-learn's
digits (``nmtoolchain/data/``, made by ``examples/train_digits_cnn.py``) in
TorchScript and ONNX form. It loads both into the IR, shows the inspection,
checks that both formats give the same totals, and measures the model's
accuracy on the digits test split. Later stages (conversion, export,
simulation, energy) are added here as they land.
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
    summary = {"torchscript": ts, "onnx_totals": ox["totals"], "totals_agree": same,
               "ann_test_accuracy": acc}
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    elif console is not None:
        render_inspection(ts, console)
        console.print(f"ONNX export of the same CNN: totals {'agree' if same else 'DIFFER'} "
                      f"({ox['totals']['parameters']:,} parameters, "
                      f"{ox['totals']['synapses']:,} synapses)")
        console.print(f"ANN accuracy on the digits test split ({n_test} images): "
                      f"{acc * 100:.2f}%")
    return summary
