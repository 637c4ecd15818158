"""Time-major ONNX graphs exported from the published Spikformer code.

``torch.onnx.export`` of that code (see :mod:`nmtoolchain.frontends.time_major`)
gives a flat graph: the input is repeated over time by Unsqueeze + Expand +
Tile, layers read ``Reshape``\\ s that merge and split the (T, B) axes, and
every multi-step neuron is unrolled into ``Gather(x, t, axis=0)`` per step,
elementwise arithmetic and a ``Concat`` over axis 0. The ONNX translator asks
:class:`OnnxTimeAxis` first about every node: it tracks which tensors are
time-major, folds the (T, B) reshapes away, translates per-step ops with two
leading axes, turns each unrolled neuron into one IR neuron (identified by
evaluating the region's own nodes with ONNX's reference evaluator on probe
inputs, :func:`~nmtoolchain.frontends.time_major.identify`) and ``ReduceMean``
over axis 0 into the rate readout.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

from nmtoolchain.frontends.time_major import DIRECT_ENCODING, MEAN_DECODING, identify

#: op types that may follow the mean over time (affine in it)
_AFFINE = {"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Reshape", "Flatten", "Transpose",
           "Identity", "Dropout", "Squeeze", "Unsqueeze"}
#: op types whose scalar constant operands propose neuron parameters
_ARITH = {"Add", "Sub", "Mul", "Div", "GreaterOrEqual", "Greater", "Less", "LessOrEqual",
          "Equal", "Where", "Max", "Min", "Clip"}
#: op types a neuron region may hold (evaluated by onnx.reference)
_REGION_OPS = _ARITH | {"Gather", "Shape", "ConstantOfShape", "Cast", "Unsqueeze", "Concat",
                        "Neg", "Identity", "Expand", "Not", "And", "Or", "Relu", "Sign",
                        "CastLike", "Reshape", "Squeeze"}


class OnnxTimeAxis:
    """Time-major tensors of one ONNX translation (``t``: the translator)."""

    def __init__(self, t: Any) -> None:
        self.t = t
        self.seq: Dict[str, int] = {}  # ONNX tensor -> steps, for (T, B, ...) tensors
        self.rate: Set[str] = set()  # tensors standing for their mean over time
        self.steps: Optional[int] = None
        self.done: Set[int] = set()  # node indices translated as part of a region
        self.regions: Dict[Any, Tuple[Any, str]] = {}

    # ------------------------------------------------------------- dispatch
    def handle(self, node: Any, label: str, index: int) -> bool:
        """Translate ``node`` if it involves the time axis; False to leave it to the
        translator."""
        t = self.t
        ins = [x for x in node.input if x]
        seq = [x for x in ins if x in self.seq]
        rate = [x for x in ins if x in self.rate]
        op = node.op_type
        if op == "Unsqueeze" and not seq and ins and ins[0] in t.values:
            axes = self._axes(node, label)
            if axes == [0]:
                return self._start(node, t.values[ins[0]], 1)
            return False
        if op == "Reshape" and ins and ins[0] in t.values and not rate:
            return self._reshape(node, label)
        if rate:
            return self._after_mean(node, label, ins)
        if not seq:
            return False
        x = seq[0]
        if op in ("Expand", "Tile"):
            return self._repeat(node, label, x)
        if op == "Flatten" and int(t.attrs(node).get("axis", 1)) == 2:  # (T*B, features)
            sample = t.sample_shape(t.values[x])
            if len(sample) == 1:
                t.alias(node, t.values[x])
            else:
                from nmtoolchain.ir import Flatten

                t.emit(node, label, Flatten(start_dim=0, end_dim=-1), [t.values[x]])
            return True
        if op == "Shape":
            a = t.attrs(node)
            full = np.array((self.seq[x], t.batch) + t.sample_shape(t.values[x]), np.int64)
            t.consts[node.output[0]] = full[a.get("start", 0):a.get("end", None)]
            return True
        if op == "Gather" and int(t.attrs(node).get("axis", 0)) == 0 and ins[0] == x:
            self._region(node, label, index, x)
            return True
        if op == "ReduceMean" and self._axes(node, label) == [0]:
            if t.attrs(node).get("keepdims", 1):
                raise t.unsupported(node, label, "averages over time with keepdims=1")
            t.alias(node, t.values[x])
            self.rate.add(node.output[0])
            return True
        dyn = [v for v in ins if v in t.values]
        if any(v not in self.seq for v in dyn):
            raise t.unsupported(node, label, "mixes a time-major (T, B, ...) tensor with a "
                                             "per-step one")
        steps = {self.seq[v] for v in dyn}
        if len(steps) != 1:
            raise t.unsupported(node, label, f"mixes time-major tensors of {sorted(steps)} steps")
        t.lead = 2
        try:
            t.translate_plain(node, label)
        finally:
            t.lead = 1
        self.seq[node.output[0]] = steps.pop()
        return True

    def _axes(self, node: Any, label: str) -> Optional[List[int]]:
        a = self.t.attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.t.consts.get(node.input[1])
        return None if axes is None else [int(v) for v in np.asarray(axes).reshape(-1)]

    def _start(self, node: Any, ir_name: str, steps: int) -> bool:
        self.t.alias(node, ir_name)
        self.seq[node.output[0]] = steps
        return True

    def _repeat(self, node: Any, label: str, x: str) -> bool:
        t = self.t
        c = t.need_const(node, label, 1, "shape" if node.op_type == "Expand" else "repeats")
        c = [int(v) for v in np.asarray(c).reshape(-1)]
        rank = len(t.sample_shape(t.values[x])) + 2
        if node.op_type == "Expand":
            if len(c) > rank or any(v != 1 for v in c):
                raise t.unsupported(node, label, f"expands a time-major tensor to {c} (only "
                                                 "repeating the input over time)")
            return self._start(node, t.values[x], self.seq[x])
        if (len(c) != rank or c[0] < 1 or any(v != 1 for v in c[1:]) or self.seq[x] != 1
                or (self.steps is not None and self.steps != c[0])):
            raise t.unsupported(node, label, f"tiles a time-major tensor by {c} (only repeating "
                                             "the input over the time axis once)")
        self.steps = c[0]
        return self._start(node, t.values[x], c[0])

    def _reshape(self, node: Any, label: str) -> bool:
        t = self.t
        x = node.input[0]
        target = t.consts.get(node.input[1]) if len(node.input) > 1 else None
        if target is None:
            return False
        target = [int(v) for v in np.asarray(target).reshape(-1)]
        sample = t.sample_shape(t.values[x])
        head = (len(target) >= 2 and target[1] in (t.batch,) and self.steps is not None
                and target[0] == self.steps)
        if x in self.seq:
            if head:
                steps = self.seq[x]
                self._per_sample_reshape(node, label, x, target[2:], sample)
                self.seq[node.output[0]] = steps
                return True
            rest = self._resolve(target[1:], sample)
            if target[0] in (-1, 0) and rest == list(sample):  # flatten(0, 1): one step
                t.alias(node, t.values[x])
                return True
            raise t.unsupported(node, label, f"reshapes a time-major (T, B, ...) tensor to "
                                             f"{target}, not keeping the time and batch axes")
        if not head:
            return False
        self._per_sample_reshape(node, label, x, target[2:], sample)
        self.seq[node.output[0]] = self.steps
        return True

    @staticmethod
    def _resolve(rest: List[int], sample: Tuple[int, ...]) -> List[int]:
        rest = [sample[i] if v == 0 and i < len(sample) else v for i, v in enumerate(rest)]
        n = int(np.prod(sample)) if sample else 1
        if rest.count(-1) == 1:
            known = int(np.prod([v for v in rest if v != -1])) if len(rest) > 1 else 1
            if known > 0 and n % known == 0:
                rest[rest.index(-1)] = n // known
        return rest

    def _per_sample_reshape(self, node: Any, label: str, x: str, rest: List[int],
                            sample: Tuple[int, ...]) -> None:
        from nmtoolchain.ir import Reshape

        t = self.t
        rest = self._resolve(list(rest), sample)
        if int(np.prod(rest)) != int(np.prod(sample)) or any(v <= 0 for v in rest):
            raise t.unsupported(node, label, f"reshapes per-step shape {sample} to {rest}")
        if tuple(rest) == tuple(sample):
            t.alias(node, t.values[x])
        else:
            t.emit(node, label, Reshape(shape=tuple(rest)), [t.values[x]])

    def _after_mean(self, node: Any, label: str, ins: List[str]) -> bool:
        t = self.t
        dyn = [v for v in ins if v in t.values]
        if node.op_type not in _AFFINE or any(v not in self.rate for v in dyn):
            raise t.unsupported(node, label, "follows the mean over time (axis 0) but is not "
                                             "affine in it, so the per-step graph cannot stand "
                                             "for it")
        t.translate_plain(node, label)
        self.rate.add(node.output[0])
        return True

    # -------------------------------------------------------------- regions
    def _region(self, first: Any, label: str, index: int, x: str) -> None:
        """Gather(x, t, axis=0) ... Concat(axis=0): one IR neuron."""
        t = self.t
        nodes = list(t.onnx_graph.node)
        vals: Set[str] = set()
        members: List[int] = []
        end = None
        for j in range(index, len(nodes)):
            n = nodes[j]
            ins = [v for v in n.input if v]
            if n.op_type == "Gather" and ins and ins[0] == x and int(
                    t.attrs(n).get("axis", 0)) == 0 and all(v in t.consts for v in ins[1:]):
                pass
            elif n.op_type == "Constant" or (ins and all(v in t.consts for v in ins)):
                t._fold_constant(n, n.name or f"{n.op_type}_{j}")
                self.done.add(j)
                continue
            elif not any(v in vals for v in ins):
                continue
            else:
                other = [v for v in ins if v not in vals and v not in t.consts]
                if other:
                    raise t.unsupported(n, n.name or label, f"is part of a loop over the time "
                                                            f"steps of '{x}' but also reads "
                                                            f"{other}")
            members.append(j)
            vals.update(o for o in n.output if o)
            if n.op_type == "Concat" and int(t.attrs(n).get("axis", 0)) == 0 and all(
                    v in vals for v in ins):
                end = j
                break
        who = f"{t.origin}: the loop over time steps starting at node '{label}'"
        if end is None:
            raise t.unsupported(first, label, "selects one time step of a time-major tensor "
                                              "outside a loop that stacks the steps back")
        out = nodes[end].output[0]
        inside = sum(1 for j in members for v in nodes[j].input if v in vals)
        produced = {o for j in members for o in nodes[j].output if o}
        outside = sum(t.readers.get(v, 0) for v in produced if v != out)
        if outside != inside:
            raise t.unsupported(first, label, "starts a loop over time steps whose intermediate "
                                              "values are read outside it")
        steps = self.seq[x]
        shape = tuple(t.sample_shape(t.values[x]))
        region = [nodes[j] for j in members]
        key = self._key(region, x)
        found = self.regions.get(key)
        if found is None:
            consts = self._constants(region)
            found = identify(lambda p: self._evaluate(region, x, out, p), consts, shape,
                             steps, who)
            self.regions[key] = found
        op, how = found
        end_node = nodes[end]
        scope = (end_node.name or "").strip("/").rpartition("/")[0]
        name = t.emit(end_node, scope.replace("/", "_") or label, op.__class__(
            **op.field_values()), [t.values[x]])
        t.graph.nodes[name].annotations["time_region"] = how
        if scope:
            t.graph.nodes[name].annotations["module"] = scope.replace("/", ".")
        self.seq[out] = steps
        self.done.update(members)

    def _constants(self, region: List[Any]) -> List[float]:
        from onnx import numpy_helper

        found: List[float] = []
        for n in region:
            if n.op_type in _ARITH:
                for v in n.input:
                    c = self.t.consts.get(v)
                    if c is not None and np.asarray(c).size == 1 and np.asarray(
                            c).dtype.kind == "f":
                        found.append(float(np.asarray(c).reshape(-1)[0]))
            if n.op_type == "ConstantOfShape":
                for a in n.attribute:
                    if a.name == "value":
                        found.append(float(numpy_helper.to_array(a.t).reshape(-1)[0]))
        return [c for c in found if np.isfinite(c)]

    def _key(self, region: List[Any], x: str) -> Any:
        ids: Dict[str, int] = {x: 0}
        parts = []
        for n in region:
            ins = []
            for v in n.input:
                if v in ids:
                    ins.append(ids[v])
                else:
                    c = self.t.consts.get(v)
                    ins.append(None if c is None else (c.dtype.str, c.shape,
                                                       tuple(np.asarray(c).reshape(-1).tolist())))
            attrs = tuple((a.name, repr(self.t.attrs(_only(n, a)).get(a.name)))
                          for a in n.attribute)
            parts.append((n.op_type, tuple(ins), attrs))
            for o in n.output:
                ids[o] = len(ids)
        return tuple(parts)

    def _evaluate(self, region: List[Any], x: str, out: str, probe: Any) -> Any:
        """The region's own nodes, run by onnx.reference on ``probe`` (T, B, ...)."""
        import onnx
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        from nmtoolchain.frontends.time_major import RegionError

        for n in region:
            if n.op_type not in _REGION_OPS:
                raise RegionError(f"holds the ONNX op {n.op_type}")
        produced = {o for n in region for o in n.output}
        needed = {v for n in region for v in n.input if v and v not in produced and v != x}
        inits = [numpy_helper.from_array(np.asarray(self.t.consts[v]), v) for v in sorted(needed)]
        g = helper.make_graph(
            region, "region",
            [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, list(probe.shape))],
            [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], inits)
        model = helper.make_model(g, opset_imports=list(self.t.model.opset_import))
        (result,) = ReferenceEvaluator(model).run(None, {x: probe.numpy().astype(np.float32)})
        return np.asarray(result, dtype=np.float32)

    # ---------------------------------------------------------------- end
    def finish(self, graph: Any, outputs: List[str]) -> None:
        if self.steps is None and not self.seq:
            return
        graph.metadata["input_encoding"] = dict(DIRECT_ENCODING, steps=self.steps)
        if outputs and all(o in self.rate for o in outputs):
            graph.metadata["output_decoding"] = dict(MEAN_DECODING, steps=self.steps)
        graph.metadata["time_major"] = {"steps": self.steps, "layout": "(T, B, ...)",
                                        "neuron_regions": len(self.regions)}


def _only(node: Any, attr: Any) -> Any:
    """A stand-in node holding just ``attr`` (for the translator's attribute reader)."""
    class _N:
        attribute = [attr]
    return _N()
