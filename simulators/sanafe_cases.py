"""The networks nmtc's ``loihi1-sanafe`` profile is checked on against SANA-FE.

Shared by tests/test_sanafe_referee.py and benchmarks/sanafe_comparison.py, so
the table in the benchmark is the one the test asserts on. Each case is an
nmtc graph (synapses and IF neurons SANA-FE's LIF reproduces exactly: weights
on the 1/64 grid, hard reset to 0), binary input spikes drawn from a seeded
generator, and a stated placement (layer -> core ids) used by both sides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from nmtoolchain.ir import IF, Affine, Flatten, Graph, Output
from nmtoolchain.ir.conv import Conv2d
from nmtoolchain.ir.io import Input

__all__ = ["SanafeCase", "CASES"]


@dataclass(frozen=True)
class SanafeCase:
    """A network, its input spikes (T, n) and its placement: layer -> (nodes, core ids)."""

    name: str
    graph: Graph
    spikes: np.ndarray
    layers: Dict[str, Tuple[Tuple[str, ...], Tuple[int, ...]]]


def _grid(w: np.ndarray) -> np.ndarray:
    return (np.round(w * 64) / 64).astype(np.float32)


def _if() -> IF:
    return IF(v_threshold=np.float32(1.0), reset="to_reset")


def _dense_chain(rng: np.random.Generator, sizes: Sequence[int], gain: float,
                 cores: Sequence[Sequence[int]]) -> Tuple[Graph, Dict]:
    g = Graph()
    g.add("x", Input((sizes[0],)))
    prev, layers = "x", {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        g.add(f"fc{i}", Affine(_grid(rng.normal(0, gain / np.sqrt(a), (b, a)))), [prev])
        g.add(f"n{i}", _if(), [f"fc{i}"])
        layers[f"n{i}"] = ((f"fc{i}", f"n{i}"), tuple(cores[i]))
        prev = f"n{i}"
    g.add("y", Output(), [prev])
    return g, layers


def dense_case() -> SanafeCase:
    """100 -> 64 -> 32 -> 10 dense, 30% input rate, one core per layer (one tile)."""
    rng = np.random.default_rng(1)
    g, layers = _dense_chain(rng, [100, 64, 32, 10], 2.5, [[0], [1], [2]])
    return SanafeCase("dense", g, (rng.random((20, 100)) < 0.3).astype(np.float32), layers)


def conv_case() -> SanafeCase:
    """2x12x12 -> conv 3x3 x6 (stride 1) -> IF -> conv 3x3 x8 stride 2 -> IF -> dense 10."""
    rng = np.random.default_rng(2)
    g = Graph()
    g.add("x", Input((2, 12, 12)))
    g.add("c0", Conv2d(weight=_grid(rng.normal(0, 0.45, (6, 2, 3, 3)))), ["x"])
    g.add("n0", _if(), ["c0"])                                       # 6x10x10 = 600
    g.add("c1", Conv2d(weight=_grid(rng.normal(0, 0.35, (8, 6, 3, 3))), stride=(2, 2)), ["n0"])
    g.add("n1", _if(), ["c1"])                                       # 8x4x4 = 128
    g.add("flat", Flatten(), ["n1"])
    g.add("fc", Affine(_grid(rng.normal(0, 0.5, (10, 128)))), ["flat"])
    g.add("n2", _if(), ["fc"])
    g.add("y", Output(), ["n2"])
    layers = {"n0": (("c0", "n0"), (0,)), "n1": (("c1", "n1"), (1,)),
              "n2": (("fc", "n2"), (2,))}
    return SanafeCase("conv", g, (rng.random((16, 288)) < 0.25).astype(np.float32), layers)


def busy_case() -> SanafeCase:
    """Many spikes, split layers over several tiles: 256 -> 300 -> 200 -> 20 at 60%
    input rate, the hidden layers on 2 cores each, cores spread over 3 tiles."""
    rng = np.random.default_rng(3)
    g, layers = _dense_chain(rng, [256, 300, 200, 20], 4.0, [[0, 1], [4, 5], [8]])
    return SanafeCase("busy", g, (rng.random((25, 256)) < 0.6).astype(np.float32), layers)


CASES: List[Callable[[], SanafeCase]] = [dense_case, conv_case, busy_case]
