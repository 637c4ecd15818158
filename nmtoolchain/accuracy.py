"""Classification accuracy of ANN graphs and of direct-encoded SNN graphs.

For an SNN the accuracy at step t is the argmax of the running sum of the
output over steps 1..t (MST/QCFS's ``snn_validate``). One simulator run of the
largest T gives the whole accuracy-vs-time curve. Only the float numerics are
used here; this module does not import a vendor library.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph
from nmtoolchain.targets.base import Target
from nmtoolchain.targets.registry import get_target


def _labels(x: np.ndarray, y: Any) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise BadInputError(f"{len(x)} samples but {len(y)} labels")
    if len(y) == 0:
        raise BadInputError("no samples to evaluate")
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise BadInputError("labels must be whole class numbers 0, 1, ...")
    return y.astype(np.int64)


def check_samples(x: np.ndarray, y: np.ndarray, classes: int, data: str = "") -> None:
    """Refuse inputs a gate cannot judge: non-finite values in ``x`` and labels
    outside the model's ``classes`` outputs (each one line naming the data)."""
    what = data or "data"
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise BadInputError(f"{what}: {int(bad.sum())} of {len(x)} samples hold NaN or "
                            f"infinite values (first: sample {int(np.argmax(bad))})")
    out = (y < 0) | (y >= classes)
    if out.any():
        raise BadInputError(f"{what}: {int(out.sum())} label(s) outside the model's {classes} "
                            f"classes 0..{classes - 1} (first: {int(y[np.argmax(out)])} at "
                            f"sample {int(np.argmax(out))})")


def _single_output(graph: Graph) -> str:
    outs = [n.name for n in graph.outputs()]
    if len(outs) != 1:
        raise BadInputError(f"accuracy needs a graph with one output, this one has {outs}")
    return outs[0]


def timesteps_grid(t_max: int) -> List[int]:
    """1, 2, 4, ... up to ``t_max``, with ``t_max`` itself always last."""
    if int(t_max) < 1:
        raise BadInputError(f"timesteps must be >= 1, got {t_max}")
    ts, t = [], 1
    while t < t_max:
        ts.append(t)
        t *= 2
    return ts + [int(t_max)]


def accuracy_vs_timesteps(graph: Graph, x: Any, y: Any,
                          timesteps: Union[int, Sequence[int]],
                          batch_size: int = 512,
                          seed: Optional[int] = None) -> List[Tuple[int, float]]:
    """[(T, accuracy at T)] for each T asked (an int means :func:`timesteps_grid`).

    ``x`` is (N, *input shape), applied at every step, or rate-coded over
    max(T) steps where the graph records a rate input encoding (a
    threshold-balanced network: the accuracy at T < max(T) is then that of the
    code's first T steps); one run of max(T) steps per batch, predictions from
    the running sum of the single output.
    ``seed``: the run seed of the spike masks (RSM), which draw independently
    per mask, step, sample and batch from it (None: the RSM pass's seed, else 0).
    """
    ts = timesteps_grid(timesteps) if isinstance(timesteps, (int, np.integer)) else \
        sorted({int(t) for t in timesteps})
    if not ts or ts[0] < 1:
        raise BadInputError(f"time steps must be >= 1, got {list(timesteps)}")
    from simulators.cycle import Simulator

    x = np.asarray(x, dtype=np.float32)
    y = _labels(x, y)
    out = _single_output(graph)
    t_max = ts[-1]
    sim = Simulator(graph, "float", count=False)
    if seed is not None:
        from simulators.cycle.kernels_float import seed_spike_masks

        seed_spike_masks(sim.kernels, int(seed))
    enc = graph.metadata.get("input_encoding")
    rate = isinstance(enc, dict) and enc.get("method") == "rate" \
        and x.ndim == len(graph.inputs()[0].shape) + 1
    correct = np.zeros(len(ts), dtype=np.int64)
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        if rate:
            from nmtoolchain.convert.encode import rate_encode

            batch = rate_encode(batch, t_max, x_max=float(enc.get("x_max", 1.0)))
        res = sim.run(batch, t_max)
        logits = res.outputs[out].detach().cpu().numpy()  # (B, T, ...)
        running = np.cumsum(logits.reshape(logits.shape[0], t_max, -1), axis=1)
        for j, t in enumerate(ts):
            correct[j] += int((running[:, t - 1].argmax(-1) == y[i:i + batch_size]).sum())
    return [(t, float(c) / len(y)) for t, c in zip(ts, correct)]


def ann_accuracy(model: Any, x: Any, y: Any, batch_size: int = 512) -> float:
    """Accuracy of an ANN: an IR graph (one float simulator step) or a torch module
    (run as is, in eval mode, without gradients)."""
    x = np.asarray(x, dtype=np.float32)
    y = _labels(x, y)
    if isinstance(model, Graph):
        return accuracy_vs_timesteps(model, x, y, [1], batch_size)[0][1]
    import torch

    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            preds.append(model(torch.from_numpy(x[i:i + batch_size])).argmax(-1).numpy())
    return float((np.concatenate(preds) == y).mean())


# ---------------------------------------------------------------- the CI gate
GATE_TYPES = ("min_accuracy", "max_drop")


@dataclass(frozen=True)
class TargetAccuracy:
    """Accuracy of a target's fixed-point export (what ``nmtc export`` would write)."""

    name: str  # target, e.g. "loihi2"
    timesteps: int  # steps per sample the export was measured at
    accuracy: float  # in [0, 1]
    headroom: Any  # the export's threshold headroom k (Loihi adaptation), as reported
    notes: List[str] = field(default_factory=list)  # what the export pipeline changed

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "timesteps": self.timesteps, "accuracy": self.accuracy,
                "headroom": self.headroom, "notes": list(self.notes)}


@dataclass(frozen=True)
class AccuracyCheck:
    """Result of :func:`check_accuracy`: the ANN's accuracy, the converted SNN's
    accuracy against time step, optionally the target export's, and the gate.

    The gated accuracy is the target export's when a target was measured, else
    the float SNN's at the largest T. ``as_dict()`` is the ``check-accuracy
    --json`` schema (CI jobs read its keys).
    """

    ann_accuracy: float
    curve: List[Tuple[int, float]]  # (T, SNN accuracy at T), T_max last
    timesteps: int  # T_max
    precharge: bool  # membranes started at λ/2 (MST/QCFS) rather than 0
    samples: int
    gate_type: Optional[str]  # one of GATE_TYPES, or None (no gate: no verdict)
    threshold: Optional[float]  # the gate's A (min_accuracy) or D (max_drop)
    passed: Optional[bool]  # the verdict; None when no gate was given

    target: Optional[TargetAccuracy] = None
    model: str = ""  # where the model came from (for the report)
    data: str = ""  # what the samples are (for the report)
    seed: int = 0  # run seed of the spike masks (RSM), see accuracy_vs_timesteps
    #: the model was already spiking (no conversion): ``ann_accuracy`` is then the
    #: float SNN's accuracy at T_max, the reference the drop is measured from
    spiking: bool = False
    #: the SNN's input is rate-coded (threshold balancing), not the analog value every step
    rate_coded: bool = False
    #: how the ANN became an SNN: 'mst', 'threshold', or None for a spiking model
    method: Optional[str] = None

    @property
    def snn_accuracy(self) -> float:
        """Float SNN accuracy at T_max."""
        return self.curve[-1][1]

    @property
    def gated_accuracy(self) -> float:
        """The accuracy the gate judges: the target export's, else the SNN's at T_max."""
        return self.target.accuracy if self.target is not None else self.snn_accuracy

    @property
    def gate(self) -> str:
        """One line saying what was compared with what."""
        what = f"{self.target.name} fixed-point SNN" if self.target else "SNN"
        acc, t = self.gated_accuracy, self.timesteps
        if self.gate_type == "min_accuracy":
            return f"{what} accuracy at T={t} {acc:.4f} >= {self.threshold:.4f}"
        if self.gate_type == "max_drop":
            return f"drop ANN - {what}(T={t}) {self.ann_accuracy - acc:.4f} <= {self.threshold:.4f}"
        return "no gate given (no verdict)"

    @property
    def drop(self) -> float:
        """ANN accuracy minus the gated accuracy."""
        return self.ann_accuracy - self.gated_accuracy

    @property
    def verdict(self) -> str:
        """'pass', 'fail', or 'none' (no gate given: nothing was judged)."""
        return "none" if self.passed is None else "pass" if self.passed else "fail"

    def as_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model, "data": self.data, "samples": self.samples,
            "seed": self.seed, "timesteps": self.timesteps,
            "ann_accuracy": self.ann_accuracy,
            "snn_accuracy_at_timesteps": self.snn_accuracy,
            "gated_accuracy": self.gated_accuracy, "drop": self.drop,
            "gate_type": self.gate_type, "threshold": self.threshold,
            "gate": self.gate, "passed": self.passed, "verdict": self.verdict,
            "snn_accuracy": [{"timesteps": t, "accuracy": a} for t, a in self.curve],
            "precharge": self.precharge, "spiking_model": self.spiking,
            "conversion": self.method, "rate_coded_input": self.rate_coded,
            "target": None if self.target is None else self.target.as_dict(),
        }


def gate_passes(ann: float, measured: float, *, min_accuracy: Optional[float] = None,
                max_drop: Optional[float] = None) -> Optional[bool]:
    """The gate: ``measured >= min_accuracy`` or ``ann - measured <= max_drop``
    (with 1e-12 of slack for the float subtraction); no gate: None (no verdict)."""
    if min_accuracy is not None:
        return measured >= min_accuracy
    if max_drop is not None:
        return ann - measured <= max_drop + 1e-12
    return None


def _check_gate(min_accuracy: Optional[float], max_drop: Optional[float]) -> None:
    if min_accuracy is not None and max_drop is not None:
        raise BadInputError("give either --min-accuracy or --max-drop, not both")
    for name, v in (("--min-accuracy", min_accuracy), ("--max-drop", max_drop)):
        if v is not None and not 0.0 <= float(v) <= 1.0:
            raise BadInputError(f"{name} must be in [0, 1], got {v}")


@contextlib.contextmanager
def _calibration_file(calib: Any, x: np.ndarray) -> Iterator[Union[str, Path]]:
    """'digits' or a .npz path as given; an array (or None: the evaluated
    samples themselves) written to a temporary .npz, which the exporter reads."""
    if isinstance(calib, (str, Path)):
        yield calib
        return
    arr = x if calib is None else np.asarray(calib, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="nmtc_calib_") as tmp:
        path = Path(tmp) / "calib.npz"
        np.savez(path, x=arr, y=np.zeros(len(arr), np.int64))
        yield path


def _as_graph(model: Any, x: np.ndarray) -> Graph:
    if isinstance(model, Graph):
        return model
    import torch

    if isinstance(model, torch.nn.Module):
        from nmtoolchain.frontends.torch_fx import graph_from_module

        return graph_from_module(model, tuple(x.shape[1:]), origin=type(model).__name__)
    raise BadInputError(f"check_accuracy: expected an IR Graph or an nn.Module, got "
                        f"{type(model).__name__}")


def check_accuracy(model: Any, x: Any, y: Any, *, timesteps: int,
                   min_accuracy: Optional[float] = None, max_drop: Optional[float] = None,
                   target: Optional[str] = None, calib: Any = None, precharge: bool = True,
                   data: str = "", seed: int = 0,
                   converted: Optional[Graph] = None) -> AccuracyCheck:
    """Convert a QCFS ANN (IR graph, or ``nn.Module`` traced at ``x``'s sample
    shape) with MST and gate its accuracy on static samples ``x`` (N, *shape)
    with labels ``y``.

    The SNN sees each sample at every step and predicts by the argmax of its
    summed output; the curve covers T = 1, 2, 4, ... ``timesteps``. With
    ``target='loihi2'`` the export nmtc would write is also run bit-exactly in
    fixed point at ``timesteps``, and the gate judges that accuracy.
    ``calib`` (target only): 'digits', a .npz path, an array, or None for
    ``x`` itself. At most one of ``min_accuracy`` (SNN >= A) and ``max_drop``
    (ANN - SNN <= D), both in [0, 1]; with neither, the check reports the
    accuracies without a verdict (``passed`` is None). Samples with NaN or
    infinite values and labels outside the model's classes are refused
    (BadInputError). ``seed`` is the run seed of the spike masks (recorded).
    ``converted``: the ANN's SNN when it was converted by another rule
    (threshold balancing of a ReLU network); None converts with MST.
    """
    from nmtoolchain.convert.mst import convert_mst

    _check_gate(min_accuracy, max_drop)
    if isinstance(timesteps, bool) or int(timesteps) < 1:
        raise BadInputError(f"--timesteps must be >= 1, got {timesteps}")
    timesteps = int(timesteps)
    chip = get_target(target) if target is not None else None  # refuses unknown names
    if chip is not None and type(chip).accuracy is Target.accuracy:  # before any work
        raise BadInputError(f"--target {target}: no fixed-point accuracy for this target "
                            "(it has no chip numerics)")
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    y = _labels(x, y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    graph = _as_graph(model, x)
    shape = tuple(graph.inputs()[0].shape)
    if x.ndim != len(shape) + 1:
        raise BadInputError(f"{data or 'x'}: expected static samples (N, {shape}), "
                            f"got {x.shape}")
    check_samples(x, y, int(np.prod(graph[_single_output(graph)].shape)), data)
    spiking = is_spiking_model(graph)
    if spiking:  # a trained SNN (e.g. Spikformer): measured as it is, no conversion
        snn = graph
        curve = accuracy_vs_timesteps(snn, x, y, timesteps, seed=int(seed))
        ann = curve[-1][1]
    else:
        snn = converted if converted is not None else \
            convert_mst(graph, timesteps=timesteps, precharge=precharge)
        ann = accuracy_vs_timesteps(graph, x, y, [1], seed=int(seed))[0][1]
        curve = accuracy_vs_timesteps(snn, x, y, timesteps, seed=int(seed))
    fixed = None
    if chip is not None:
        with _calibration_file(calib, x) as cal:
            res = chip.accuracy(snn, x, y, steps=timesteps, calib=cal)
        fixed = TargetAccuracy(target, timesteps, float(res["accuracy"]), res.get("headroom"),
                               list(res["notes"]))
    measured = fixed.accuracy if fixed is not None else curve[-1][1]
    source = graph.metadata.get("source", {})
    return AccuracyCheck(
        ann_accuracy=ann, curve=curve, timesteps=timesteps, precharge=precharge,
        samples=int(len(x)),
        gate_type="min_accuracy" if min_accuracy is not None else
        "max_drop" if max_drop is not None else None,
        threshold=min_accuracy if min_accuracy is not None else max_drop,
        passed=gate_passes(ann, measured, min_accuracy=min_accuracy, max_drop=max_drop),
        target=fixed, model=str(source.get("path", "")) if isinstance(source, dict) else "",
        data=data, seed=int(seed), spiking=spiking,
        rate_coded=(snn.metadata.get("input_encoding") or {}).get("method") == "rate",
        method=None if spiking else "threshold" if converted is not None else "mst")


def is_spiking_model(graph: Graph) -> bool:
    """True for a graph that already spikes (spiking neurons, no QCFS activation):
    it is measured as it is instead of being converted with MST."""
    ops = {n.op_name for n in graph}
    return "QCFS" not in ops and any(n.op.is_neuron and n.op_name not in ("I", "CubaLI")
                                     for n in graph)


__all__ = ["accuracy_vs_timesteps", "ann_accuracy", "timesteps_grid", "AccuracyCheck",
           "TargetAccuracy", "check_accuracy", "check_samples", "gate_passes", "is_spiking_model"]
