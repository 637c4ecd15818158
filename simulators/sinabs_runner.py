"""The Speck referee: sinabs runs an export's network, nmtc's ``speck`` numerics run its graph.

:func:`run_sinabs` rebuilds the discretized sinabs network of a Speck export
(``network.json`` + ``network.pt``, plain sinabs layers: ``nn.Conv2d``,
``IAFSqueeze``, ``SumPool2d``), sets each IAF's initial membrane value, and
runs it on input events (B, T, C, H, W), recording every IAF layer's spikes.
:func:`verify_speck_export` runs the export's ``network.nmir`` in nmtc's cycle
simulator with ``numerics='speck'`` on the same events and compares layer by
layer: "identical", or the first divergence (layer, step, neuron, both values).

sinabs's ``DynapcnnNetwork`` cannot be built without samna (its package
imports samna); its forward is the same sequence of these sinabs layers, so the
plain layers are the referee here.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError

RANDOM_SEED = 0


def input_spikes(graph: Graph, x: Any, steps: int) -> np.ndarray:
    """Input events for the compiled ``graph``: analog samples (N, *shape) rate-coded as
    the export records, or event counts (N, T, *shape) used as they are."""
    from nmtoolchain.convert.encode import rate_encode

    x = np.asarray(x, np.float32)
    shape = tuple(graph.inputs()[0].shape)
    if x.shape[1:] == shape:
        enc = graph.metadata.get("input_encoding") or {}
        events = bool(np.all((x == np.round(x)) & (x >= 0)))
        if enc.get("method") == "rate" or not events:
            return rate_encode(x, int(steps), x_max=float(enc.get("x_max", 1.0)))
        return np.repeat(x[:, None], steps, axis=1)  # event counts, the same every step
    if x.shape[2:] == shape and x.shape[1] >= steps:
        return x[:, :steps]
    raise BadInputError(f"inputs of shape {x.shape}: expected (N, {shape}) or (N, T, {shape})")


def run_sinabs(directory: Path, spikes: np.ndarray) -> Tuple[Dict[str, np.ndarray], float]:
    """({IAF node name: spikes (B, T, *shape)}, seconds) of the export's sinabs network."""
    import torch

    from exporters.speck.network import build_sinabs_network

    x = torch.as_tensor(np.asarray(spikes, np.float32))
    b, t = int(x.shape[0]), int(x.shape[1])
    net, meta = build_sinabs_network(directory, batch_size=b)
    rec: Dict[str, torch.Tensor] = {}
    for i, (m, layer) in enumerate(zip(net, meta["layers"])):
        if layer["kind"] == "iaf":
            v0 = net.v_init[i]
            m.v_mem = v0.expand((b,) + tuple(v0.shape)).clone()  # sized state: kept by sinabs
            m.register_forward_hook(
                lambda mod, inp, out, name=layer["node"]: rec.__setitem__(name, out.detach()))
    t0 = time.perf_counter()
    with torch.no_grad():
        net(x.reshape((b * t,) + tuple(x.shape[2:])))
    wall = time.perf_counter() - t0
    return {k: v.reshape((b, t) + tuple(v.shape[1:])).numpy() for k, v in rec.items()}, wall


def run_nmtc(graph: Any, spikes: np.ndarray
             ) -> Tuple[Dict[str, np.ndarray], float, Dict[str, int]]:
    """({IF node name: spikes (B, T, *shape)}, seconds, {IF node: largest v before a spike}) in nmtc's
    speck numerics."""
    from simulators.cycle import Simulator

    neurons = [n.name for n in graph.topological_order() if n.op_name == "IF"]
    sim = Simulator(graph, "speck", record=neurons, count=False)
    t0 = time.perf_counter()
    res = sim.run(np.asarray(spikes, np.float32), int(spikes.shape[1]))
    wall = time.perf_counter() - t0
    return ({k: v.cpu().numpy() for k, v in res.recorded.items()}, wall,
            {n: int(sim.kernels[n].max_v) for n in neurons})


@dataclasses.dataclass
class Divergence:
    """The first place sinabs and nmtc differ: layer, sample, step, neuron, both values."""

    layer: str
    sample: int
    step: int
    neuron: Tuple[int, ...]
    sinabs: float
    nmtc: float

    def line(self) -> str:
        return (f"sample {self.sample}: first divergence at layer '{self.layer}', step "
                f"{self.step}, neuron {self.neuron}: sinabs {self.sinabs:g}, nmtc {self.nmtc:g}")


@dataclasses.dataclass
class SpeckVerifyResult:
    """Outcome of ``nmtc verify`` on a Speck export."""

    directory: str
    origin: str
    samples: int
    steps: int
    layers: List[str]
    divergences: List[Divergence]
    spikes: Dict[str, int]
    sinabs_ms_per_step: float
    nmtc_ms_per_step: float
    #: largest membrane value per layer before a spike (the chip's register holds 16 bits)
    max_v: Dict[str, int] = dataclasses.field(default_factory=dict)
    #: layers whose largest integer weight exceeds the threshold: (weight, threshold); there
    #: the chip (one spike per input event) can differ from sinabs's time steps
    above_threshold: Dict[str, Tuple[int, int]] = dataclasses.field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.divergences

    def lines(self) -> List[str]:
        head = (f"{self.directory}: sinabs (discretized network, {len(self.layers)} IAF layers) "
                f"vs nmtc speck numerics on {self.samples} sample(s) x {self.steps} steps "
                f"({self.origin})")
        body = ["identical: every layer's spikes at every step"] if self.identical else \
            [d.line() for d in self.divergences]
        return [head] + body + [
            "spikes per layer: " + ", ".join(f"{k} {v}" for k, v in self.spikes.items()),
            self._state_line()] + self._event_lines() + [
            f"ms/step: sinabs {self.sinabs_ms_per_step:.3f}, nmtc {self.nmtc_ms_per_step:.3f}"]

    def _event_lines(self) -> List[str]:
        if not self.above_threshold:
            return []
        return ["note: weight above threshold in " + ", ".join(
            f"{k} ({w} > {t})" for k, (w, t) in self.above_threshold.items()) +
            ": the chip emits at most one spike per input event, so there its spike counts can "
            "differ from sinabs's time-stepped simulation, which this check compares with"]

    def _state_line(self) -> str:
        over = {k: v for k, v in self.max_v.items() if v > 32767}
        if not over:
            return "membrane within the chip's 16-bit range in every layer"
        return ("membrane beyond the chip's 16-bit range (sinabs does not saturate; the chip "
                "would): " + ", ".join(f"{k} v up to {v}" for k, v in over.items()))

    def as_dict(self) -> Dict[str, Any]:
        return {"directory": self.directory, "identical": self.identical, "origin": self.origin,
                "max_v": self.max_v,
                "weights_above_threshold": {k: list(v) for k, v in self.above_threshold.items()},
                "samples": self.samples, "steps": self.steps, "layers": self.layers,
                "divergences": [dataclasses.asdict(d) for d in self.divergences],
                "spikes": self.spikes, "sinabs_ms_per_step": self.sinabs_ms_per_step,
                "nmtc_ms_per_step": self.nmtc_ms_per_step}


def compare(sinabs_out: Dict[str, np.ndarray], nmtc_out: Dict[str, np.ndarray],
            layers: List[str]) -> List[Divergence]:
    """Per sample, the first divergence in (step, then layer order), if any."""
    out: List[Divergence] = []
    n = next(iter(sinabs_out.values())).shape[0]
    for b in range(n):
        first: Optional[Divergence] = None
        for name in layers:
            a, c = sinabs_out[name][b], nmtc_out[name][b]
            if a.shape != c.shape:
                raise BadInputError(f"layer '{name}': sinabs output {a.shape} vs nmtc {c.shape}")
            diff = np.argwhere(a != c)
            if len(diff):
                idx = tuple(int(i) for i in diff[0])
                d = Divergence(name, b, idx[0], idx[1:], float(a[idx]), float(c[idx]))
                if first is None or d.step < first.step:
                    first = d
        if first is not None:
            out.append(first)
    return out


def _inputs(graph: Any, directory: Path, data: Optional[Path], dataset: Optional[str],
            steps: int, samples: int) -> Tuple[np.ndarray, str]:
    shape = tuple(graph.inputs()[0].shape)
    if data is None and dataset is None:
        rng = np.random.default_rng(RANDOM_SEED)
        x = (rng.random((samples, steps) + shape) < 0.2).astype(np.float32)
        return x, f"seeded random events (rate 0.2, seed {RANDOM_SEED})"
    from nmtoolchain.inputs import load_run_inputs

    ins = load_run_inputs(graph, dataset=dataset, data=data, samples=samples)
    return input_spikes(graph, ins.x, steps), ins.description


def verify_speck_export(directory: Path, *, data: Optional[Path] = None,
                        dataset: Optional[str] = None, steps: Optional[int] = None,
                        samples: int = 4, **_: Any) -> SpeckVerifyResult:
    """Run a Speck export in sinabs and in nmtc's speck numerics on the same events."""
    from nmtoolchain.ir.serialize import load_graph

    directory = Path(directory)
    for f in ("network.json", "network.pt", "network.nmir", "report.json"):
        if not (directory / f).exists():
            raise BadInputError(f"{directory}: not a Speck export (no {f})")
    report = json.loads((directory / "report.json").read_text())
    steps = int(steps or report.get("timesteps", 16))
    if steps < 1 or samples < 1:
        raise BadInputError("--steps and --samples must be positive")
    graph = load_graph(directory / "network.nmir")
    graph.infer_shapes()
    spikes, origin = _inputs(graph, directory, data, dataset, steps, samples)
    s_out, s_wall = run_sinabs(directory, spikes)
    n_out, n_wall, max_v = run_nmtc(graph, spikes)
    layers = [n.name for n in graph.topological_order() if n.op_name == "IF"]
    missing = [l for l in layers if l not in s_out]
    if missing:
        raise BadInputError(f"{directory}: network.json has no IAF for {missing}")
    divs = compare(s_out, n_out, layers)
    per = 1000.0 / steps
    from nmtoolchain.quantize.speck import weights_above_threshold

    return SpeckVerifyResult(str(directory), origin, int(spikes.shape[0]), steps, layers, divs,
                             {l: int(n_out[l].sum()) for l in layers}, s_wall * per,
                             n_wall * per, max_v, weights_above_threshold(graph))


__all__ = ["input_spikes", "run_sinabs", "run_nmtc", "verify_speck_export", "SpeckVerifyResult", "Divergence",
           "compare"]
