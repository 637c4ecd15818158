"""``nmtc inspect``: a node table, totals, and target verdicts for one graph."""
from __future__ import annotations

from typing import Any, Dict, List

from nmtoolchain.ir import Graph
from nmtoolchain.targets import check_targets


def inspect_graph(graph: Graph) -> Dict[str, Any]:
    """Everything ``nmtc inspect`` shows, as plain JSON-able data.

    Counts are per time step and per sample: ``parameters`` (trainable
    weights, biases and norm scales/shifts; an all-zero bias the loader added
    for ``bias=False`` and neuron constants excluded), ``buffers`` (stored
    non-trainable values: BatchNorm running statistics, constant scales such
    as attention's 0.125), ``synapses``
    (connections with a fixed weight, border-aware for convolutions and
    pooling), ``macs`` (multiply-accumulates of weighted layers and of
    dynamic matrix products, dense count as FLOP counters use), ``neurons``.
    """
    graph.infer_shapes()
    rows: List[Dict[str, Any]] = []
    for node in graph.topological_order():
        counts = graph.node_counts(node)
        rows.append({
            "name": node.name,
            "op": node.op_name,
            "inputs": list(node.inputs),
            "input_shapes": [list(graph[s].shape) for s in node.inputs],
            "output_shape": list(node.shape),
            "params": node.op.describe(),
            # the target's exact numerics (e.g. Loihi CUBA integers), None for float-only nodes
            "numerics": None if node.numerics is None else node.numerics.describe(),
            **counts,
        })
    return {
        "source": graph.metadata.get("source", {}),
        "metadata": {k: v for k, v in graph.metadata.items() if k != "source"},
        "nodes": rows,
        "totals": graph.totals(),
        "targets": [v.as_dict() for v in check_targets(graph)],
    }


def render_inspection(info: Dict[str, Any], console: Any) -> None:
    """Print ``info`` (from :func:`inspect_graph`) as rich tables."""
    from rich.table import Table

    src = info.get("source") or {}
    title = f"{src.get('path', 'graph')} ({src.get('format', '?')})"
    t = Table(title=title, show_lines=False)
    for col, just in (("node", "left"), ("op", "left"), ("input shape", "left"),
                      ("output shape", "left"), ("params", "right"), ("synapses", "right"),
                      ("MACs/step", "right"), ("details", "left")):
        t.add_column(col, justify=just, overflow="fold", no_wrap=col not in ("node", "details"))
    for r in info["nodes"]:
        ins = " ".join("x".join(map(str, s)) for s in r["input_shapes"]) or "-"
        t.add_row(r["name"], r["op"], ins, "x".join(map(str, r["output_shape"])),
                  f"{r['parameters']:,}", f"{r['synapses']:,}", f"{r['macs']:,}",
                  r["params"][:60] + (f"\n{r['numerics']}" if r.get("numerics") else ""))
    console.print(t)
    tot = info["totals"]
    console.print(
        f"totals: {tot['parameters']:,} parameters (+{tot.get('buffers', 0):,} buffers), "
        f"{tot['synapses']:,} synapses, "
        f"{tot['macs']:,} MACs per time step, {tot['neurons']:,} neurons")
    for v in info["targets"]:
        if v["ok"]:
            extra = [f"needs {r}" for r in v.get("requires", [])] + list(v.get("notes", []))
            notes = ("; " + "; ".join(extra)) if extra else ""
            console.print(f"  [green]✓[/green] {v['target']}{notes}")
        else:
            console.print(f"  [red]✗[/red] {v['target']}: " + "; ".join(v["reasons"]))
