"""Which deployment targets can take a graph, and why not.

A quick, static check for ``nmtc inspect``: it reads only op types and a few
structural facts. The exporters apply the full rules (bit widths, core
limits) when they run; this module must never import a vendor library.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List

from nmtoolchain.ir import Graph, Node

#: Ops that need a pass before a spiking target can take them, and that pass.
NEEDS_PASS = {
    "ReLU": "ANN activation: convert to spiking neurons first (nmtc convert)",
    "QCFS": "ANN activation: convert to IF neurons first (nmtc convert --method mst)",
    "BatchNorm": "fold batch norm into the preceding layer first",
    "LayerNorm": "layer norm has no spiking equivalent; use BatchNorm (MST) and fold it",
    "MaxPool2d": "max pooling has no spiking equivalent; use average or sum pooling",
}


@dataclass
class TargetVerdict:
    """Whether ``target`` can take the graph, with one reason per blocking node group."""

    target: str
    ok: bool
    reasons: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        return {"target": self.target, "ok": self.ok, "reasons": self.reasons}


def _group(nodes: List[Node], why: Callable[[Node], str]) -> List[str]:
    """One reason line per distinct explanation, naming up to 4 nodes."""
    by_reason: Dict[str, List[str]] = {}
    for n in nodes:
        by_reason.setdefault(why(n), []).append(n.name)
    out = []
    for reason, names in by_reason.items():
        shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        out.append(f"{reason}: {shown}")
    return out


LOIHI2_NETX_OPS = {"Input", "Output", "Affine", "Linear", "Conv2d", "Flatten", "CubaLIF",
                   "LIF", "IF", "SigmaDelta", "SumPool2d", "AvgPool2d", "Delay", "Scale", "Reshape"}
#: ops nmtc runs as its own Lava processes (exporters/loihi2/lava_graph.py): the
#: export runs in Lava's CPU simulator, but these nodes have no Loihi 2 chip code
LOIHI2_LAVA_ONLY = {"Add", "MatMul", "Transpose"}


def check_loihi2(graph: Graph) -> TargetVerdict:
    bad = [n for n in graph if n.op_name not in LOIHI2_NETX_OPS | LOIHI2_LAVA_ONLY]

    def why(n: Node) -> str:
        if n.op_name in NEEDS_PASS:
            return NEEDS_PASS[n.op_name]
        return f"{n.op_name} is not supported on Loihi 2"

    verdict = TargetVerdict("loihi2", not bad, _group(bad, why))
    lava_only = [n for n in graph if n.op_name in LOIHI2_LAVA_ONLY]
    if lava_only:
        verdict.reasons += _group(lava_only, lambda n: (
            f"{n.op_name} runs only in Lava's CPU simulator (nmtc's own Lava process; not "
            "deployable on the chip through netx)"))
    return verdict


SPECK_OPS = {"Input", "Output", "Conv2d", "Affine", "Linear", "IF", "SumPool2d", "AvgPool2d",
             "Flatten"}


def check_speck(graph: Graph) -> TargetVerdict:
    bad: List[Node] = []
    reasons: Dict[str, str] = {}
    for n in graph:
        op = n.op
        if n.op_name not in SPECK_OPS:
            bad.append(n)
            reasons[n.name] = NEEDS_PASS.get(n.op_name, f"{n.op_name} is not supported on Speck")
        elif n.op_name == "Conv2d" and op.kernel_size[0] != op.kernel_size[1]:
            bad.append(n)
            reasons[n.name] = "Speck needs square convolution kernels"
        elif n.op_name in ("SumPool2d", "AvgPool2d") and (
                op.kernel_size[0] != op.kernel_size[1] or op.stride != op.kernel_size
                or op.kernel_size[0] not in (1, 2, 4)):
            bad.append(n)
            reasons[n.name] = "Speck pools only square 1/2/4 windows with stride = kernel"
    weighted = [n for n in graph if n.op_name in ("Conv2d", "Affine", "Linear")]
    verdict = TargetVerdict("speck", not bad, _group(bad, lambda n: reasons[n.name]))
    if len(weighted) > 9:
        verdict.ok = False
        verdict.reasons.append(f"{len(weighted)} weighted layers but Speck has 9 cores")
    return verdict


def check_nir(graph: Graph) -> TargetVerdict:
    from exporters.nir import nir_unsupported_nodes

    entries = nir_unsupported_nodes(graph)  # "name (Op)" or "name (Op: reason; reason)"
    by_reason: Dict[str, List[str]] = {}
    for entry in entries:
        name, _, rest = entry.partition(" (")
        op, _, reasons = rest.rstrip(")").partition(": ")
        for reason in (reasons.split("; ") if reasons else [f"{op} has no NIR equivalent"]):
            by_reason.setdefault(reason, []).append(name)
    lines = []
    for reason, names in by_reason.items():
        shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        lines.append(f"{reason}: {shown}")
    return TargetVerdict("nir", not entries, lines)


ONNX_OPS = {"Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "AvgPool2d",
            "SumPool2d", "MaxPool2d", "Flatten", "Reshape", "Transpose", "BatchNorm", "LayerNorm",
            "ReLU", "Softmax", "Add", "Concat", "MatMul"}


def check_onnx(graph: Graph) -> TargetVerdict:
    bad = [n for n in graph if n.op_name not in ONNX_OPS]
    return TargetVerdict("onnx", not bad, _group(
        bad, lambda n: f"{n.op_name} is stateful or spiking; ONNX export holds the ANN only"))


TARGET_CHECKS: Dict[str, Callable[[Graph], TargetVerdict]] = {
    "loihi2": check_loihi2,
    "speck": check_speck,
    "nir": check_nir,
    "onnx": check_onnx,
}


def check_targets(graph: Graph) -> List[TargetVerdict]:
    """Verdicts for every known target, in a stable order."""
    return [check(graph) for check in TARGET_CHECKS.values()]
