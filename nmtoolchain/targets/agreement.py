"""How closely an export behaves like the model it came from (issue 14, step 7).

``nmtc verify`` compares an export with itself in two simulators (Lava and
nmtc's bit-exact Loihi numerics); that says nothing about whether the export
still does what the source model did. This module measures that: the source
graph as loaded, in floating point, against the exported graph in the
target's numerics (Loihi fixed point, bit-exact with Lava), on the same input
spikes (the calibration data or the data a user gives):

* ``agreement``: the fraction of samples whose predicted class (the output
  with the most spikes) is the same in source and export;
* ``correlation``: Pearson correlation of the output spike counts, all
  samples and outputs together (None when either side is constant, e.g. no
  spikes at all);
* source and export accuracy where labels exist (digits; a .npz with ``y``).

Pure computation on graphs; the Loihi numerics run in nmtc's simulator.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from nmtoolchain.ir import Graph


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Source-vs-export agreement on one set of inputs (module docstring)."""

    samples: int
    steps: int
    data: str
    agreement: float
    correlation: Optional[float]
    source_events: float  # output spikes per sample, source
    export_events: float  # output spikes per sample, export
    source_accuracy: Optional[float] = None
    export_accuracy: Optional[float] = None
    #: the source is an ANN: its outputs are values, not spike counts
    source_is_ann: bool = False

    def lines(self) -> List[str]:
        """The report's first lines."""
        corr = "n/a (an output never changes)" if self.correlation is None \
            else f"{self.correlation:.3f}"
        out = [f"agreement with the source model: {self.agreement:.3f} of {self.samples} "
               f"samples predict the same class (source in float vs export in fixed point, "
               f"{self.steps} steps, {self.data}); output "
               + ("correlation (ANN outputs vs export spike counts)" if self.source_is_ann
                  else "spike-count correlation") + f" {corr}"]
        if self.source_accuracy is not None:
            out.append(f"  accuracy: source {self.source_accuracy:.3f}, export "
                       f"{self.export_accuracy:.3f} ({self.export_accuracy - self.source_accuracy:+.3f})")
        if self.source_is_ann:
            out.append(f"  output spikes per sample: export {self.export_events:.1f} (the "
                       "source is an ANN)")
        else:
            out.append(f"  output spikes per sample: source {self.source_events:.1f}, export "
                       f"{self.export_events:.1f}")
        return out

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _labels(calib: Union[str, Path, Any], n: int) -> Optional[np.ndarray]:
    from nmtoolchain.calibration import CALIB_SAMPLES
    from nmtoolchain.datasets import load_digits_split

    if str(calib) == "digits":
        return load_digits_split().y_train[:CALIB_SAMPLES][:n]
    path = Path(str(calib))
    if path.suffix == ".npz" and path.exists():
        with np.load(path, allow_pickle=False) as f:
            if "y" in f.files:
                return np.asarray(f["y"]).reshape(-1)[:CALIB_SAMPLES][:n]
    return None


def _score(graph: Graph, numerics: str, spikes: np.ndarray, steps: int) -> np.ndarray:
    """Output counts (B, outputs): the node the graph's output reads, summed over steps."""
    from nmtoolchain.quantize.loihi import spike_counts

    node = graph.outputs()[0].inputs[0]
    counts = spike_counts(graph, numerics, spikes, steps, [node])[node]
    return np.asarray(counts, np.float64).reshape(len(counts), -1)


def _ann_scores(ann: Graph, x: np.ndarray) -> np.ndarray:
    """Outputs (B, outputs) of a network without neurons (an ANN the export was
    converted from), one float step on the analog samples ``x``."""
    from simulators.cycle import Simulator

    res = Simulator(ann, "float", count=False).run(np.asarray(x, np.float32), 1)
    out = res.outputs[ann.outputs()[0].name].detach().cpu().numpy()
    return np.asarray(out, np.float64).reshape(len(out), -1)


def is_ann(graph: Graph) -> bool:
    """True for a graph without spiking neurons: an ANN, compared on analog samples."""
    return not any(n.op.is_neuron for n in graph)


def measure(source: Graph, exported: Graph, spikes: np.ndarray, steps: int, data: str,
            labels: Optional[np.ndarray] = None,
            analog: Optional[np.ndarray] = None) -> Agreement:
    """Agreement of ``source`` (float numerics) and ``exported`` (loihi numerics)
    on input ``spikes`` (B, T, *shape). An ANN source (no neurons) runs on the
    ``analog`` samples the spikes code instead; its "events" are then the sum of
    its outputs."""
    if is_ann(source):
        if analog is None:
            from nmtoolchain.errors import BadInputError

            raise BadInputError("the source is an ANN: comparing it needs analog samples, "
                                "not spike trains")
        a = _ann_scores(source, analog)
    else:
        a = _score(source, "float", spikes, steps)
    b = _score(exported, "loihi", spikes, steps)
    if a.shape != b.shape:
        from nmtoolchain.errors import BadInputError

        raise BadInputError(f"source output {a.shape[1:]} and export output {b.shape[1:]} "
                            "differ in size; they cannot be compared")
    pa, pb = a.argmax(1), b.argmax(1)
    corr = None
    if a.std() > 0 and b.std() > 0:
        corr = float(np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1])
    acc_a = acc_b = None
    if labels is not None and len(labels) == len(a):
        acc_a, acc_b = float((pa == labels).mean()), float((pb == labels).mean())
    return Agreement(int(len(a)), int(steps), data, float((pa == pb).mean()), corr,
                     float(a.sum(1).mean()), float(b.sum(1).mean()), acc_a, acc_b,
                     is_ann(source))


def on_calibration(source: Graph, exported: Graph, calib: Any, steps: int) -> Agreement:
    """:func:`measure` on the export's calibration data (``--calib``), coded as the
    export's input is (both sides see the same spikes)."""
    from nmtoolchain.calibration import calibration_spikes

    # the export's input encoding: a 'direct' (analog) input has been re-coded as rate
    spikes, origin, _ = calibration_spikes(exported, calib, steps)
    return measure(source, exported, spikes, steps, f"calibration data: {origin}",
                   _labels(calib, len(spikes)))


def against_source(directory: Union[str, Path], source: Graph, x: Optional[np.ndarray],
                   y: Optional[np.ndarray], data: str) -> Agreement:
    """:func:`measure` of a Loihi 2 export directory (its ``network.nmir`` in loihi
    numerics, at its own step count) against ``source`` on analog samples ``x``
    (N, *shape), rate-coded as the export records, or spike trains (N, T, *shape);
    ``x`` None: the digits test split."""
    import json

    from nmtoolchain.convert.encode import rate_encode
    from nmtoolchain.datasets import load_digits_split
    from nmtoolchain.errors import BadInputError
    from nmtoolchain.inputs import arrange_samples
    from nmtoolchain.ir import load_graph

    directory = Path(directory)
    graph_file, report_file = directory / "network.nmir", directory / "report.json"
    if not graph_file.exists() or not report_file.exists():
        raise BadInputError(f"{directory}: --against needs a netx export directory "
                            "(network.nmir and report.json)")
    exported = load_graph(graph_file).infer_shapes()
    steps = int(json.loads(report_file.read_text()).get("timesteps", 16))
    shape = tuple(source.inputs()[0].shape)
    if x is None:
        split = load_digits_split()
        x = arrange_samples(split.x_test, shape, "digits test split", static=True)
        y, data = split.y_test, "digits test split"
    x = arrange_samples(np.asarray(x, np.float32), shape, data)
    analog = None
    if x.ndim == len(shape) + 2 and np.isin(x, (0.0, 1.0)).all():
        spikes = x
    else:
        enc = exported.metadata.get("input_encoding") or {}
        spikes = rate_encode(x, steps, x_max=float(enc.get("x_max", 1.0)))
        analog = x
    labels = None if y is None else np.asarray(y).reshape(-1)[:len(spikes)]
    if is_ann(source):
        data += "; the source is an ANN (float, analog input), its class = its largest output"
    return measure(source, exported, spikes, steps, data, labels, analog)


__all__ = ["Agreement", "measure", "on_calibration", "against_source", "is_ann"]
