"""Write the NIR fixture files of tests/test_nir_bridge.py.

MUST be run with nir >= 1.0.6 (the files must be written by nir's own
``nir.write`` in a version whose IF/LIF/CubaLIF carry ``v_reset``). The
project pins nir 1.0.4, so use a scratch environment:

    python3.10 -m venv /tmp/nir108
    /tmp/nir108/bin/pip install nir==1.0.8 numpy h5py
    /tmp/nir108/bin/python tests/data/make_nir_fixtures.py

Files written next to this script:

* ``reset_to_v_reset_nir108.nir``: Input(4) -> IF -> Affine -> LIF -> Affine
  -> CubaLIF -> Output, every neuron with a non-zero ``v_reset``.
* ``cubali_nir108.nir``: Input(3) -> CubaLI -> Output (CubaLI exists since 1.0.5).
* ``paper_layout_v0_2_0.nir``: a small CNN stored the way the NIR paper's files
  (version "0.2.0", e.g. paper/02_cnn/cnn_sinabs.nir in neuromorphs/NIR) are
  laid out, written with plain h5py: root dataset ``version``, group ``node``
  with ``type``, ``edges`` (object array of byte-string pairs) and one group
  per node holding ``type`` and its fields.

The values come from a seeded generator, so re-running gives the same numbers.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import nir

HERE = Path(__file__).resolve().parent


def _version_tuple(v: str) -> tuple:
    return tuple(int(p) for p in v.split(".")[:3])


def write_v_reset_chain(rng: np.random.Generator) -> Path:
    """Three resetting neuron types, each with its own v_reset."""
    f32 = np.float32
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "if_neuron": nir.IF(r=np.ones(4, f32), v_threshold=np.full(4, 1.0, f32),
                            v_reset=np.full(4, -0.5, f32)),
        "fc1": nir.Affine(weight=rng.normal(size=(4, 4)).astype(f32),
                          bias=rng.normal(size=4).astype(f32)),
        "lif_neuron": nir.LIF(tau=np.full(4, 0.02, f32), r=np.ones(4, f32),
                              v_leak=np.zeros(4, f32), v_threshold=np.full(4, 0.8, f32),
                              v_reset=np.array([-0.5, -0.25, 0.0, 0.25], f32)),
        "fc2": nir.Affine(weight=rng.normal(size=(2, 4)).astype(f32),
                          bias=np.zeros(2, f32)),
        "cuba_neuron": nir.CubaLIF(tau_syn=np.full(2, 0.005, f32), tau_mem=np.full(2, 0.01, f32),
                                   r=np.ones(2, f32), v_leak=np.zeros(2, f32),
                                   v_threshold=np.full(2, 1.5, f32), w_in=np.full(2, 2.0, f32),
                                   v_reset=np.full(2, -0.5, f32)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])))
    path = HERE / "reset_to_v_reset_nir108.nir"
    nir.write(path, graph)
    return path


def write_cubali() -> Path:
    f32 = np.float32
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "cubali": nir.CubaLI(tau_syn=np.array([0.1, 0.2, 0.3], f32),
                             tau_mem=np.array([1.0, 2.0, 3.0], f32), r=np.full(3, 0.5, f32),
                             v_leak=np.array([0.0, 0.1, -0.1], f32), w_in=np.full(3, 2.0, f32)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "cubali"), ("cubali", "output")])
    path = HERE / "cubali_nir108.nir"
    nir.write(path, graph)
    return path


def write_paper_layout(rng: np.random.Generator) -> Path:
    """Input(2,6,6) -> Conv2d(2->4, k3, p1) -> IF -> SumPool2d(2) -> Flatten
    -> Affine(36->3) -> IF -> Output, in the 0.2.0 on-disk layout."""
    f32 = np.float32
    str_t = h5py.string_dtype()
    nodes = {
        "input": {"type": "Input", "shape": np.array([2, 6, 6], np.int64)},
        "0": {"type": "Conv2d", "weight": rng.normal(size=(4, 2, 3, 3)).astype(f32),
              "bias": rng.normal(size=4).astype(f32), "stride": np.array([1, 1]),
              "padding": np.array([1, 1]), "dilation": np.array([1, 1]),
              "groups": np.int64(1), "input_shape": np.array([6, 6])},
        "1": {"type": "IF", "r": np.ones((4, 6, 6), f32),
              "v_threshold": np.ones((4, 6, 6), f32)},
        "2": {"type": "SumPool2d", "kernel_size": np.array([2, 2]),
              "stride": np.array([2, 2]), "padding": np.array([0, 0])},
        "3": {"type": "Flatten", "start_dim": np.int64(0), "end_dim": np.int64(-1),
              "input_type": np.array([4, 3, 3])},
        "4": {"type": "Affine", "weight": rng.normal(size=(3, 36)).astype(f32),
              "bias": rng.normal(size=3).astype(f32)},
        "5": {"type": "IF", "r": np.ones(3, f32), "v_threshold": np.full(3, 2.0, f32)},
        "output": {"type": "Output", "shape": np.array([3], np.int64)},
    }
    order = ["input", "0", "1", "2", "3", "4", "5", "output"]
    # the paper's files list edges in no particular order
    edges = [(a, b) for a, b in zip(order[:-1], order[1:])][::-1]
    path = HERE / "paper_layout_v0_2_0.nir"
    with h5py.File(path, "w") as f:
        f.create_dataset("version", data="0.2.0", dtype=str_t)
        top = f.create_group("node")
        top.create_dataset("type", data="NIRGraph", dtype=str_t)
        top.create_dataset("edges", data=np.array([[a.encode(), b.encode()] for a, b in edges],
                                                  dtype=object), dtype=str_t)
        group = top.create_group("nodes")
        for name, fields in nodes.items():
            g = group.create_group(name)
            for key, value in fields.items():
                if isinstance(value, str):
                    g.create_dataset(key, data=value, dtype=str_t)
                else:
                    g.create_dataset(key, data=value)
    return path


def main() -> None:
    if _version_tuple(nir.version) < (1, 0, 6):
        raise SystemExit(f"run this with nir >= 1.0.6 (found nir {nir.version}); see the docstring")
    rng = np.random.default_rng(20240601)
    for path in (write_v_reset_chain(rng), write_cubali(), write_paper_layout(rng)):
        print(f"wrote {path.relative_to(HERE.parent.parent)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
