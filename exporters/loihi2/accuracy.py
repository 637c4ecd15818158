"""Accuracy of a model as the Loihi 2 export would run it (fixed point, bit-exact).

:func:`loihi_accuracy` runs the graph half of ``nmtc export --target loihi2``
in memory (:func:`exporters.loihi2.bundle.prepare_for_loihi`: adaptation of a
converted network, pooling fold, quantization) and simulates the result in
nmtc's loihi numerics (bit-exact with Lava, checked by ``nmtc verify``) on
labelled data, with the export's input encoding and the pipeline-aligned
count window. The class is the output neuron with the most spikes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph


def loihi_accuracy(graph: Graph, x: Any, y: Any, *, steps: int,
                   calib: Optional[Union[str, Path]] = "digits",
                   profile: Any = "loihi2") -> Dict[str, Any]:
    """{'accuracy', 'samples', 'steps', 'headroom', 'notes', 'graph'} of the
    fixed-point export of ``graph`` on (x, y); x holds analog samples
    (N, *input shape), rate-coded as the export records."""
    from exporters.loihi2.bundle import prepare_for_loihi
    from nmtoolchain.convert import rate_encode
    from nmtoolchain.quantize import spike_counts

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise BadInputError(f"loihi_accuracy: {len(x)} samples but {len(y)} labels")
    q, _, notes = prepare_for_loihi(graph, calib, int(steps), profile)
    out = q[q.outputs()[0].inputs[0]].name
    enc = q.metadata.get("input_encoding", {})
    shape = tuple(q.inputs()[0].shape)
    xs = x.reshape((len(x),) + shape)
    correct = 0
    for i in range(0, len(xs), 256):
        spikes = rate_encode(xs[i:i + 256], int(steps), x_max=float(enc.get("x_max", 1.0)))
        counts = spike_counts(q, "loihi", spikes, int(steps), [out])[out]
        correct += int((counts.reshape(len(counts), -1).argmax(1) == y[i:i + 256]).sum())
    ad = q.metadata.get("loihi_adaptation", {})
    return {"accuracy": correct / len(y), "samples": int(len(y)), "steps": int(steps),
            "headroom": ad.get("headroom"), "notes": notes, "graph": q}
