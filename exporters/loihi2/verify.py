"""``nmtc verify DIR``: run an export in Lava and in nmtc's simulator, compare.

Lava (``fixed_pt``, the referee) runs ``DIR/network.net``; nmtc's simulator
in loihi numerics runs ``DIR/network.nmir``, the graph the export was written
from, so a ``network.net`` that does not say what nmtc meant (a changed
weight, a wrong exponent) shows up as a divergence. A directory without
``network.nmir`` (e.g. a copied netx file) is compared against nmtc's reading
of the same file instead, and the output says so.

Both sides get the same drive, built from the data for the file's input kind
(see :mod:`simulators.lava_runner`) and the encoding ``report.json`` records:

* ``spikes``: analog data is rate-coded with the recorded encoding
  (:func:`nmtoolchain.convert.rate_encode`, x_max from the record); binary
  data is used as given (held every step, or per step when it has a time
  axis); with no data, seeded random spikes;
* ``bias``: ``bias_mant = trunc(2 * weight * x - weight + bias)`` from the
  file's input transform (lava-dl's convention; ``centered: false`` in the
  encoding drops the centring); with no data, seeded random images;
* ``a_in``: integer data as given, data in [0, 1] times the recorded scale
  (255 by default); with no data, seeded random integers.

An export of a graph with Lava-only ops (``lava_graph.json``, no
``network.net``) is run as a Lava process graph
(:func:`exporters.loihi2.lava_graph.check_graph_parity`): Lava (Dense, LIF
and nmtc's own processes) against nmtc's simulator, both from
``network.nmir``, every node with a process compared at every step. Its
input is spikes: ``--data``/``--dataset`` as for a ``spikes`` netx file, or
seeded random Bernoulli spikes.

Every neuron layer is compared at every step, and a readout layer (one that
never fires: netx's default neuron, or a quantized LI/CubaLI) by its v as
well; the result per sample is
"identical" or the first divergence (layer, step, neuron, both values).
Lava runs one sample at a time (a runtime per run); nmtc runs the samples as
one batch. Lava is imported only when it runs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.vendors import require
from simulators.compare import Divergence, first_divergence

RANDOM_SEED = 0
#: suffix of a readout layer's v in the compared series ('layer3_neuron v')
READOUT_V = " v"


@dataclass
class SampleResult:
    """One sample: identical, or where Lava and nmtc first differ."""

    index: int
    divergence: Optional[Divergence]
    events: int  # non-zero outputs recorded by Lava, all layers and steps
    lava_ms_per_step: float

    @property
    def identical(self) -> bool:
        return self.divergence is None


@dataclass
class VerifyResult:
    """The outcome of :func:`verify_export`."""

    directory: Path
    steps: int
    drive: str
    inputs: str  # where the data came from and how it was encoded
    reference: str  # what nmtc simulated: network.nmir or network.net
    layers: List[str]  # compared layers, layer{i}_neuron, network order
    ir_names: Dict[str, str]  # layer{i}_neuron -> IR node name (nmir side)
    layer_types: Dict[str, str]
    samples: List[SampleResult] = field(default_factory=list)
    nmtc_ms_per_step: float = math.nan
    structure_error: Optional[str] = None
    #: 'netx' (network.net in Lava) or 'lava_graph' (network.nmir as Lava processes)
    mode: str = "netx"
    total_s: float = math.nan  # lava_graph: both runs of every sample, wall time
    #: readout layers (never fire) whose v is compared too, as '<layer> v'
    readouts: List[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.structure_error is None and all(s.identical for s in self.samples)

    @property
    def lava_ms_per_step(self) -> float:
        vals = [s.lava_ms_per_step for s in self.samples if not math.isnan(s.lava_ms_per_step)]
        return float(np.mean(vals)) if vals else math.nan

    def describe(self, d: Divergence) -> str:
        ir = self.ir_names.get(d.layer)
        what = f"{d.layer} ({self.layer_types.get(d.layer, '?')}"
        what += f", IR node '{ir}')" if ir and ir != d.layer else ")"
        return (f"first divergence: layer {what} step {d.step} neuron {d.neuron}: "
                f"lava={d.reference} nmtc={d.candidate} ({d.differ:,} of {d.size:,} neurons "
                "differ at that step)")

    def lines(self) -> List[str]:
        out = [f"verify {self.directory}: {len(self.samples)} sample(s) x {self.steps} steps; "
               f"input: {self.drive} ({self.inputs})"]
        if self.mode == "lava_graph":
            out.append(f"Lava fixed_pt running {self.reference} as a Lava process graph "
                       f"(lava_graph.json) vs nmtc loihi numerics running network.nmir; "
                       f"{len(self.layers)} nodes compared at every step")
        else:
            out.append(f"Lava fixed_pt running network.net vs nmtc loihi numerics running "
                       f"{self.reference}; {len(self.layers)} neuron layers compared at every "
                       "step" + (f", and the v of readout layer(s) {', '.join(self.readouts)}"
                                 if self.readouts else ""))
        if self.structure_error:
            out.append(f"DIFFERENT: {self.structure_error}")
        for s in self.samples:
            out.append(f"sample {s.index}: " + ("identical" + f" ({s.events:,} events)"
                                                if s.identical else self.describe(s.divergence)))
        n_bad = sum(not s.identical for s in self.samples)
        out.append("identical" if self.identical else
                   f"DIFFERENT: {n_bad} of {len(self.samples)} sample(s) diverge"
                   if n_bad else "DIFFERENT")
        if self.mode == "lava_graph":
            out.append(f"time: {self.total_s:.1f} s for Lava and nmtc together, "
                       f"{len(self.samples)} sample(s) (Lava starts one runtime per sample)")
        else:
            out.append(f"speed: Lava {self.lava_ms_per_step:.2f} ms/step (steady state, one "
                       f"sample), nmtc {self.nmtc_ms_per_step:.2f} ms/step (batch of "
                       f"{len(self.samples)})")
        return out

    def as_dict(self) -> Dict[str, Any]:
        def div(d: Optional[Divergence]) -> Optional[Dict[str, Any]]:
            if d is None:
                return None
            return {"layer": d.layer, "ir_node": self.ir_names.get(d.layer), "step": d.step,
                    "neuron": list(d.neuron), "lava": d.reference, "nmtc": d.candidate,
                    "differ": d.differ, "size": d.size}

        return {"directory": str(self.directory), "identical": self.identical,
                "steps": self.steps, "drive": self.drive, "inputs": self.inputs,
                "reference": self.reference, "layers": self.layers, "mode": self.mode,
                "readout_v_compared": self.readouts,
                "structure_error": self.structure_error,
                "lava_ms_per_step": self.lava_ms_per_step,
                "nmtc_ms_per_step": self.nmtc_ms_per_step,
                "samples": [{"index": s.index, "identical": s.identical, "events": s.events,
                             "divergence": div(s.divergence)} for s in self.samples]}


# ------------------------------------------------------------------ inputs
def _read_report(directory: Path) -> Dict[str, Any]:
    p = directory / "report.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise BadInputError(f"{p}: not a readable report ({' '.join(str(e).split())})") from None


def _data(shape: Tuple[int, ...], dataset: Optional[str], data: Optional[Path],
          samples: int, graph: Any) -> Tuple[Optional[np.ndarray], str]:
    if dataset is None and data is None:
        return None, ""
    from nmtoolchain.inputs import load_run_inputs

    inp = load_run_inputs(graph, dataset=dataset, data=data, samples=samples)
    return np.asarray(inp.x, dtype=np.float64), inp.description


def _drives(kind: str, x: Optional[np.ndarray], origin: str, shape: Tuple[int, ...],
            steps: int, samples: int, encoding: Dict[str, Any], net_path: Path
            ) -> Tuple[List[np.ndarray], str]:
    """One (steps, *shape) integer drive per sample, and a description."""
    rng = np.random.default_rng(RANDOM_SEED)
    nd = len(shape)
    if kind == "spikes":
        if x is None:
            x = (rng.random((samples, steps) + shape) < 0.2).astype(np.float64)
            return list(x), f"seeded random spikes (rate 0.2, seed {RANDOM_SEED})"
        binary = bool(np.isin(x, (0.0, 1.0)).all())
        if binary:
            desc = f"{origin}, binary data used as spikes"
            return [_per_step(s, nd, steps) for s in x], desc
        from nmtoolchain.convert import rate_encode

        method = encoding.get("method", "rate")
        if method != "rate":
            raise BadInputError(f"input encoding {method!r} in report.json is not one nmtc "
                                "verify can apply (rate)")
        x_max = float(encoding.get("x_max", 1.0))
        if x.ndim != nd + 1:
            raise BadInputError("analog data with a time axis cannot be rate-coded; pass spikes")
        return list(rate_encode(x, steps, x_max=x_max)), \
            f"{origin}, rate-coded (x_max {x_max:g})"
    if kind == "bias":
        from simulators.lava_runner import input_drive_from_image

        centered = bool(encoding.get("centered", True))
        if x is None:
            x = rng.random((samples,) + shape)
            origin = f"seeded random images (seed {RANDOM_SEED})"
        rows = [_per_step(input_drive_from_image(net_path, s, centered=centered), nd, steps)
                for s in x]
        return rows, f"{origin}, bias = trunc({'2 w x - w + b' if centered else 'w x + b'})"
    # a_in
    if x is None:
        x = rng.integers(0, 256, (samples,) + shape).astype(np.float64)
        return [_per_step(s, nd, steps) for s in x], \
            f"seeded random integers 0..255 (seed {RANDOM_SEED})"
    if np.all(x == np.round(x)):
        return [_per_step(s, nd, steps) for s in x], f"{origin}, integers as given"
    scale = float(encoding.get("scale", 255))
    return [_per_step(np.round(s * scale), nd, steps) for s in x], \
        f"{origin}, round(x * {scale:g})"


def _graded_drives(graph: Any, x: Optional[np.ndarray], origin: str, shape: Tuple[int, ...],
                   steps: int, samples: int) -> Tuple[List[np.ndarray], str]:
    """The run protocol of a quantized spiking transformer: round(x * levels) for
    the input steps, then zero (``metadata['lava_run']``); data in [0, 1]."""
    from nmtoolchain.quantize.token_graph import lava_run_drive

    run = graph.metadata["lava_run"]
    levels, t_in = int(run["input_levels"]), int(run["input_steps"])
    if x is None:
        rng = np.random.default_rng(RANDOM_SEED)
        x = rng.integers(0, levels + 1, (samples,) + shape) / levels
        origin = f"seeded random images of {levels + 1} levels (seed {RANDOM_SEED})"
    if x.ndim != len(shape) + 1:
        raise BadInputError(f"{origin}: a spiking transformer export takes static samples "
                            f"(N, {', '.join(map(str, shape))}), got {list(x.shape)}")
    d = lava_run_drive(graph, x[:samples]).astype(np.int64)
    rows = [_per_step(s, len(shape), steps) for s in d]
    return rows, f"{origin}, graded round(x * {levels}) for {t_in} steps, then zero"


def _per_step(s: np.ndarray, nd: int, steps: int) -> np.ndarray:
    """A sample as (steps, *shape): held every step, or its rows (zero after they end)."""
    s = np.asarray(s)
    if s.ndim == nd:
        return np.repeat(s[None], steps, axis=0).astype(np.int64)
    rows = s[:steps].astype(np.int64)
    if len(rows) < steps:
        rows = np.concatenate([rows, np.zeros((steps - len(rows),) + rows.shape[1:], np.int64)])
    return rows


# ------------------------------------------------------------------ verify
def verify_export(directory: Union[str, Path], *, data: Optional[Union[str, Path]] = None,
                  dataset: Optional[str] = None, steps: Optional[int] = None, samples: int = 4,
                  reset_interval: Optional[int] = None) -> VerifyResult:
    """Run ``directory``'s export in Lava and in nmtc; compare every layer and step.

    ``steps`` defaults to report.json's ``verify_steps`` (timesteps plus the
    pipeline depth), else 16. ``samples``: at most this many inputs.
    ``reset_interval``: netx's LIFReset interval, for networks trained with it.
    """
    from nmtoolchain.frontends.netx_loader import load_netx
    from nmtoolchain.ir import load_graph
    from nmtoolchain.numerics.loihi import is_loihi_readout
    from simulators.cycle import Simulator
    from simulators.lava_runner import netx_drive_kind, netx_layer_names, run_netx_in_lava
    from exporters.loihi2.netx_writer import plan_netx

    directory = Path(directory)
    if not directory.is_dir():
        raise BadInputError(f"{directory}: no such export directory")
    net = directory / "network.net"
    lava_graph = not net.is_file() and (directory / "lava_graph.json").is_file()
    if not net.is_file() and not lava_graph:
        raise BadInputError(f"{directory}: no network.net (is this an nmtc export directory?)")
    if dataset is not None and data is not None:
        raise BadInputError("give either --data or --dataset, not both")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise BadInputError(f"--samples must be a positive integer, got {samples!r}")
    report = _read_report(directory)
    if steps is None:
        steps = int(report.get("verify_steps", 16))
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise BadInputError(f"--steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    require("lava" if lava_graph else "lava-dl", "nmtc verify")
    if lava_graph:
        if reset_interval is not None:
            raise BadInputError("--reset-interval applies to netx exports (network.net), not "
                                "to a Lava process graph")
        return _verify_lava_graph(directory, report, data, dataset, steps, samples)

    nmir = directory / "network.nmir"
    if nmir.is_file():
        graph = load_graph(nmir)
        names = plan_netx(graph).record_names()  # IR neuron -> layer{i}_neuron
        reference = "network.nmir (the exported graph)"
    else:
        graph = load_netx(net)
        names = {n.name: n.name for n in graph if n.op.is_neuron}
        reference = "network.net itself (no network.nmir: this only checks Lava against nmtc)"
    kind = netx_drive_kind(net)
    file_layers = netx_layer_names(net)
    ir_names = {v: k for k, v in names.items()}
    layer_types: Dict[str, str] = {}
    for la in report.get("layers", []):
        if la.get("record_name"):
            layer_types[la["record_name"]] = la.get("type", "?")
    shape = tuple(int(s) for s in graph.inputs()[0].shape)
    result = VerifyResult(directory, steps, kind, "", reference, list(file_layers), ir_names,
                          layer_types)
    if sorted(file_layers) != sorted(names.values()):
        result.structure_error = (f"network.net has neuron layers {file_layers} but the exported "
                                  f"graph has {sorted(names.values())}")
        return result

    x, origin = _data(shape, dataset, Path(data) if data is not None else None, samples, graph)
    encoding = report.get("input", {}).get("encoding") or {}
    drives, desc = _drives(kind, x, origin, shape, steps, samples, encoding, net)
    drives = drives[:samples]
    result.inputs = desc

    # a readout layer never fires: its v, the value the host reads, is compared too
    readouts = [k for k in file_layers if is_loihi_readout(graph[ir_names[k]])]
    compared = [c for k in file_layers for c in ([k, k + READOUT_V] if k in readouts else [k])]
    for k in readouts:
        ir_names[k + READOUT_V] = ir_names[k]
        layer_types[k + READOUT_V] = layer_types.get(k, "?") + ", readout v"
    result.readouts = readouts

    # nmtc: all samples in one batch
    sim = Simulator(graph, "loihi", record="neurons", record_state=[ir_names[k] for k in readouts],
                    reset_interval=reset_interval, count=False)
    xs = np.stack([d for d in drives]).astype(np.float64 if kind == "a_in" else np.float32)
    res = sim.run(xs, steps)
    result.nmtc_ms_per_step = float(res.ms_per_step)
    ours = {names[k]: v.cpu().numpy().round().astype(np.int64)
            for k, v in res.recorded.items() if k in names}
    ours.update({k + READOUT_V: res.state[ir_names[k]]["v"].cpu().numpy() for k in readouts})
    for i, drive in enumerate(drives):
        lava = run_netx_in_lava(net, drive, steps, reset_interval=reset_interval,
                                record_state=readouts)
        cand = {k: ours[k][i] for k in compared}
        ref = {k: lava.outputs[k] for k in file_layers}
        ref.update({k + READOUT_V: lava.v[k] for k in readouts})
        d = first_divergence(ref, cand, layers=compared)
        events = int(sum(np.count_nonzero(ref[k]) for k in file_layers))
        result.samples.append(SampleResult(i, d, events, float(lava.ms_per_step)))
    return result


def _verify_lava_graph(directory: Path, report: Dict[str, Any], data: Optional[Union[str, Path]],
                       dataset: Optional[str], steps: int, samples: int) -> VerifyResult:
    """A Lava process graph export: ``check_graph_parity`` per sample (spike input)."""
    import time

    from exporters.loihi2.lava_graph import check_graph_parity, plan_lava_graph
    from nmtoolchain.ir import load_graph

    nmir = directory / "network.nmir"
    if not nmir.is_file():
        raise BadInputError(f"{directory}: has lava_graph.json but no network.nmir (the graph "
                            "the Lava processes are built from)")
    graph = load_graph(nmir)
    plan = plan_lava_graph(graph)
    layers = [p.node for p in plan.procs if p.kind != "source"]
    types = {n: graph[n].op_name for n in layers}
    shape = tuple(int(s) for s in graph[plan.input_node].shape)
    graded = isinstance(graph.metadata.get("lava_run"), dict)
    result = VerifyResult(directory, steps, "graded" if graded else "spikes", "", "network.nmir",
                          layers, {}, types, mode="lava_graph")
    x, origin = _data(shape, dataset, Path(data) if data is not None else None, samples, graph)
    encoding = report.get("input", {}).get("encoding") or {}
    if graded:  # graded input held for input_steps (a spiking transformer)
        drives, result.inputs = _graded_drives(graph, x, origin, shape, steps, samples)
    else:
        drives, result.inputs = _drives("spikes", x, origin, shape, steps, samples, encoding,
                                        directory / "network.nmir")
    t0 = time.perf_counter()
    for i, drive in enumerate(drives[:samples]):
        div, lava, _ = check_graph_parity(graph, drive, steps)
        events = int(sum(np.count_nonzero(v) for v in lava.values()))
        result.samples.append(SampleResult(i, div, events, math.nan))
    result.total_s = time.perf_counter() - t0
    return result


__all__ = ["verify_export", "VerifyResult", "SampleResult"]
