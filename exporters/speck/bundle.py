"""Write a Speck export directory (it only writes; the pipeline did the work).

Files, written into a hidden temporary sibling and renamed at the end (a
failure leaves nothing):

* ``network.json`` + ``network.pt``: the discretized sinabs network
  (:mod:`exporters.speck.network`; tensors only, no pickle);
* ``chip_config.json``: per layer the core, shapes, kernel, stride, padding,
  per-destination pooling, ``threshold_high``/``threshold_low``, reset mode,
  leak, the weight/bias files and the destination cores: the fields sinabs
  writes into samna's ``CNNLayerConfig``;
* ``layers/layer<i>_weight.npy`` (int8, (out, in, ky, kx) as torch; samna's
  ``weights`` has the last two axes swapped), ``layer<i>_bias.npy`` (int8) and
  ``layer<i>_v_init.npy`` (int16) where non-zero;
* ``network.nmir`` (the quantized IR graph), ``network.nir`` when NIR can say
  it (the report says why not otherwise);
* ``mapping.json`` (memory per layer and per core, the assignment);
* ``report.txt`` / ``report.json``;
* ``samna_config.json`` only where a real samna is importable (it is not here).
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from exporters.directory import _json, _write_atomically, write_graph
from exporters.speck.network import SinabsNetworkSpec, save_network
from nmtoolchain.ir import Graph

FILES = ("network.json", "network.pt", "chip_config.json", "network.nmir", "mapping.json",
         "report.txt", "report.json")


@dataclasses.dataclass
class SpeckExport:
    """Everything the writer needs, built in memory by the target."""

    model: str
    graph: Graph
    network: SinabsNetworkSpec
    layers: List[Any]  # DynapcnnLayerSpec
    mapping: Any  # SpeckMapping
    quant: Any  # SpeckQuantReport or None (an already quantized graph)
    profile: str
    timesteps: int
    notes: List[str]
    pipeline_lines: List[str]
    pipeline: List[Dict[str, Any]]
    nir: Any = None  # a nir.NIRGraph, or None
    nir_reason: str = ""


def chip_config(graph: Graph, layers: List[Any], mapping: Any) -> Dict[str, Any]:
    """The per-core configuration (what sinabs's get_dynapcnn_layer_config_dict holds)."""
    out = []
    for spec in layers:
        conv, neuron = graph[spec.conv], graph[spec.neuron]
        op = neuron.op
        i = spec.index
        dests = []
        for d in spec.destinations:
            dests.append({"layer": None if d.layer is None else mapping.assignment[d.layer],
                          "enable": d.layer is not None, "pooling": int(d.pool[0]),
                          "output": d.layer is None})
        v0 = np.asarray(op.v_init)
        out.append({
            "layer": i, "core": mapping.assignment[i], "conv": spec.conv, "neuron": spec.neuron,
            "input_shape": {"feature_count": spec.in_shape[0], "size": {
                "y": spec.in_shape[1], "x": spec.in_shape[2]}},
            "output_shape": {"feature_count": spec.out_shape[0], "size": {
                "y": spec.out_shape[1], "x": spec.out_shape[2]}},
            "kernel_size": int(spec.kernel[0]),
            "stride": {"y": spec.stride[0], "x": spec.stride[1]},
            "padding": {"y": spec.padding[0], "x": spec.padding[1]},
            "threshold_high": int(np.asarray(op.v_threshold).reshape(-1)[0]),
            "threshold_low": int(np.asarray(op.v_min).reshape(-1)[0]),
            "return_to_zero": op.reset != "subtract",
            "spike_fn": "MultiSpike" if op.spike == "multi" else "SingleSpike",
            "leak_enable": bool(spec.has_bias),
            "weights": f"layers/layer{i}_weight.npy",
            "biases": f"layers/layer{i}_bias.npy" if spec.has_bias else None,
            "neurons_initial_value": f"layers/layer{i}_v_init.npy" if np.any(v0 != 0) else None,
            "sources": ["input" if src is None else mapping.assignment[src]
                        for src in spec.sources],
            "destinations": dests,
            "monitor": any(d.layer is None for d in spec.destinations),
        })
    return {"chip": "speck", "format": "nmtc-speck-chip/1",
            "weight_layout": "(out, in, ky, kx) as torch; samna CNNLayerConfig.weights swaps "
                             "the last two axes ([f][c][x][y])",
            "leak_note": "a non-zero bias is the core's leak, added once per slow-clock tick; "
                         "sinabs adds it once per time step, so tick the slow clock once per step",
            "layers": out}


def _layer_files(graph: Graph, layers: List[Any], d: Path) -> List[str]:
    (d / "layers").mkdir()
    names = []
    for spec in layers:
        conv, neuron = graph[spec.conv], graph[spec.neuron]
        i = spec.index
        np.save(d / "layers" / f"layer{i}_weight.npy", np.asarray(conv.op.weight).astype(np.int8))
        names.append(f"layers/layer{i}_weight.npy")
        if spec.has_bias:
            np.save(d / "layers" / f"layer{i}_bias.npy", np.asarray(conv.op.bias).astype(np.int8))
            names.append(f"layers/layer{i}_bias.npy")
        v0 = np.asarray(neuron.op.v_init)
        if np.any(v0 != 0):
            np.save(d / "layers" / f"layer{i}_v_init.npy",
                    np.broadcast_to(v0, neuron.shape).astype(np.int16))
            names.append(f"layers/layer{i}_v_init.npy")
    return names


def samna_available() -> Tuple[bool, str]:
    """(True, '') where a real samna is importable; else (False, why)."""
    if importlib.util.find_spec("samna") is None:
        return False, ("samna is not installed (it cannot be installed here): the samna "
                       "configuration (sinabs DynapcnnNetwork.make_config) was not produced")
    return True, ""


def samna_configuration(directory: Path, assignment: Dict[int, int],
                        device: str = "speck2fdevkit:0") -> Any:
    """The samna configuration of an export directory, made by sinabs's
    ``DynapcnnNetwork.make_config`` with nmtc's core assignment (needs a real samna).

    Not run here (no samna): the initial membrane values (a converted network's
    pre-charge) are not yet set on the sinabs layers before ``make_config``."""
    from sinabs.backend.dynapcnn import DynapcnnNetwork

    from exporters.speck.network import build_sinabs_network

    net, meta = build_sinabs_network(directory, batch_size=1)
    dyn = DynapcnnNetwork(net, input_shape=tuple(meta["input_shape"]), discretize=True)
    return dyn.make_config(layer2core_map=dict(assignment), device=device)


def _write_samna_config(tmp: Path, ex: SpeckExport) -> str:
    config = samna_configuration(tmp, ex.mapping.assignment)
    text = config.to_json() if hasattr(config, "to_json") else str(config)
    (tmp / "samna_config.json").write_text(text)
    return "samna_config.json"


def build_report(ex: SpeckExport, files: List[str]) -> Tuple[Dict[str, Any], List[str]]:
    """report.json's content and report.txt's lines."""
    has_samna, why = samna_available()
    report = {
        "target": "speck", "model": ex.model, "profile": ex.profile,
        "timesteps": ex.timesteps,
        "input_encoding": ex.graph.metadata.get("input_encoding"),
        "output_decoding": {"method": "spike counts of the output layer summed over time steps; "
                                      "prediction = argmax"},
        "layers": ex.quant.as_dict()["layers"] if ex.quant is not None else [],
        "mapping": ex.mapping.as_dict(),
        "pipeline": ex.pipeline, "notes": ex.notes, "files": files,
        "nir": "network.nir" if ex.nir is not None else f"not written: {ex.nir_reason}",
        "samna": "samna_config.json" if has_samna else why,
        "verify": "nmtc verify DIR: nmtc's speck numerics against sinabs on the same input spikes",
    }
    lines = [f"Speck export of {ex.model} (profile {ex.profile}, {ex.timesteps} time steps)",
             "passes:"] + [f"  {l}" for l in ex.pipeline_lines]
    if ex.quant is not None:
        lines += ["quantization (sinabs discretize rule: one scale per layer):"] + ex.quant.lines()
    lines += ex.mapping.lines()
    lines += [f"note: {n}" for n in ex.notes]
    lines.append(f"NIR: {report['nir']}")
    lines.append(f"samna: {report['samna']}")
    return report, lines


def write_speck_export(ex: SpeckExport, out_dir: Path, force: bool
                       ) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """Write the directory atomically; returns (report, lines, files)."""
    written: List[str] = []
    holder: Dict[str, Any] = {}

    def write(tmp: Path) -> None:
        files = list(save_network(ex.network, tmp))
        (tmp / "chip_config.json").write_text(_json(chip_config(ex.graph, ex.layers,
                                                                 ex.mapping)))
        files.append("chip_config.json")
        files += _layer_files(ex.graph, ex.layers, tmp)
        write_graph(ex.graph, tmp / "network.nmir")
        files.append("network.nmir")
        if ex.nir is not None:
            import nir

            nir.write(str(tmp / "network.nir"), ex.nir)
            files.append("network.nir")
        (tmp / "mapping.json").write_text(_json(ex.mapping.as_dict()))
        files.append("mapping.json")
        if samna_available()[0]:  # never faked: only a real samna makes this file
            files.append(_write_samna_config(tmp, ex))
        files += ["report.txt", "report.json"]
        report, lines = build_report(ex, files)
        (tmp / "report.json").write_text(_json(report))
        (tmp / "report.txt").write_text("\n".join(lines) + "\n")
        holder.update(report=report, lines=lines)
        written.extend(files)

    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    _write_atomically(write, out_dir, parent, force)
    return holder["report"], holder["lines"], written


__all__ = ["SpeckExport", "chip_config", "write_speck_export", "samna_available",
           "samna_configuration", "FILES"]
