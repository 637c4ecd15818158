"""The demo's Speck stage: QCFS CNN -> MST -> Speck export -> sinabs check -> accuracy -> energy.

The bundled QCFS digits CNN is converted (MST), exported for Speck into a
temporary directory, run by sinabs and by nmtc's speck numerics on digits
test images (``nmtc verify``), measured on the whole test split in Speck's
integers next to the float SNN, and costed under the ``speck`` profile.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict

#: Presentation length of the Speck stage
SPECK_STEPS = 16


def speck_stage(samples: int = 8, steps: int = SPECK_STEPS) -> Dict[str, Any]:
    """Accuracies, the sinabs check and the energy report of the Speck export (module doc)."""
    from nmtoolchain.accuracy import accuracy_vs_timesteps
    from nmtoolchain.convert.mst import convert_mst
    from nmtoolchain.datasets import load_digits_split
    from nmtoolchain.frontends import load_model
    from nmtoolchain.report.simulation import build_report
    from nmtoolchain.targets.registry import export
    from nmtoolchain.targets.speck import speck_accuracy
    from simulators.cycle import Simulator
    from simulators.sinabs_runner import input_spikes, verify_speck_export

    model = Path(__file__).resolve().parent / "data" / "digits_qcfs_cnn.pt"
    data = load_digits_split()
    ann = load_model(model)
    x = data.x_test.reshape((len(data.x_test),) + tuple(ann.inputs()[0].shape))
    snn = convert_mst(ann, timesteps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        res = export(snn, "speck", Path(tmp) / "digits.speck")
        ver = verify_speck_export(Path(tmp) / "digits.speck", dataset="digits",
                                  samples=samples, steps=steps)
    acc = speck_accuracy(snn, x, data.y_test, steps=steps)
    q = acc["graph"]
    run = Simulator(q, "speck").run(input_spikes(q, x[:64], steps), steps)
    report = build_report(q, run, ["speck"], reference="speck",
                          inputs=f"digits test split, 64 images, {steps} steps, rate-coded")
    return {"model": model.name, "steps": steps, "test_images": len(x),
            "float_snn_accuracy": accuracy_vs_timesteps(snn, x, data.y_test, [steps])[-1][1],
            "speck_accuracy": acc["accuracy"],
            "cores": res.report["mapping"]["assignment"],
            "verify": "identical" if ver.identical else ver.divergences[0].line(),
            "sinabs_ms_per_step": ver.sinabs_ms_per_step, "report": report}


def render_speck(s: Dict[str, Any], console: Any) -> None:
    """The stage as console lines."""
    console.rule("MST -> Speck: export, sinabs check, accuracy, energy")
    console.print(f"{s['model']} on {s['test_images']} digits test images, T={s['steps']}: "
                  f"float SNN {s['float_snn_accuracy'] * 100:.2f}%, Speck integers "
                  f"{s['speck_accuracy'] * 100:.2f}%; layers on cores {s['cores']}; "
                  f"sinabs vs nmtc: {s['verify']}")
    for p, row in s["report"]["profiles"].items():
        console.print(f"  {p:<9} {row['energy_per_inference_pj'] / 1e6:9.4f} µJ per inference"
                      f" ({row['dynamic_pj'] / 1e6:.4f} µJ dynamic; energy per synaptic op "
                      "is an assumed parameter)")


__all__ = ["speck_stage", "render_speck", "SPECK_STEPS"]
