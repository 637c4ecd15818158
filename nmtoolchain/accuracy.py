"""Classification accuracy of ANN graphs and of direct-encoded SNN graphs.

For an SNN the accuracy at step t is the argmax of the running sum of the
output over steps 1..t (MST/QCFS's ``snn_validate``). One simulator run of the
largest T gives the whole accuracy-vs-time curve. Only the float numerics are
used here; this module does not import a vendor library.
"""
from __future__ import annotations

from typing import Any, Iterable, List, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph


def _labels(x: np.ndarray, y: Any) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise BadInputError(f"{len(x)} samples but {len(y)} labels")
    if len(y) == 0:
        raise BadInputError("no samples to evaluate")
    return y.astype(np.int64)


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
                          batch_size: int = 512) -> List[Tuple[int, float]]:
    """[(T, accuracy at T)] for each T asked (an int means :func:`timesteps_grid`).

    ``x`` is (N, *input shape), applied at every step; one run of max(T) steps
    per batch, predictions from the running sum of the single output.
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
    correct = np.zeros(len(ts), dtype=np.int64)
    for i in range(0, len(x), batch_size):
        res = sim.run(x[i:i + batch_size], t_max)
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


__all__ = ["accuracy_vs_timesteps", "ann_accuracy", "timesteps_grid"]
