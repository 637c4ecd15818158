"""AutoST's search spaces and candidates (``reference/seeds.md`` §3.1).

A candidate is (depth d, per-block MLP ratios r_1..r_d, per-block head counts
h_1..h_d, one embedding dim D), encoded as AutoST's flat tuple
(d, r_1..r_d, h_1..h_d, D). Fixed during search, as in the released code:
32x32 RGB input, patch 4 (two max-pools: 64 tokens), T = 4, 100 classes,
AutoST's pre-activation PLIF variant (§3.2). The released model passes
``qkv_bias=False`` but builds ``nn.Linear(dim, dim)`` for Q, K and V, which
has a bias; we count what the code builds (``qkv_bias=True``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Dict, Sequence, Tuple

from nmtoolchain.errors import BadInputError


@dataclass(frozen=True)
class SearchSpace:
    """One of AutoST's three spaces: the values each gene may take."""

    name: str
    mlp_ratios: Tuple[int, ...]
    heads: Tuple[int, ...]
    depths: Tuple[int, ...]
    embed_dims: Tuple[int, ...]

    def contains(self, cand: "Candidate") -> bool:
        """Whether every gene of ``cand`` is a value of this space."""
        return (cand.depth in self.depths and cand.embed_dim in self.embed_dims
                and len(cand.mlp_ratios) == cand.depth and len(cand.heads) == cand.depth
                and all(r in self.mlp_ratios for r in cand.mlp_ratios)
                and all(h in self.heads for h in cand.heads)
                and all(cand.embed_dim % h == 0 for h in cand.heads))


#: the published spaces (AutoST's released ``search_space`` files; seeds.md §3.1)
SPACES: Dict[str, SearchSpace] = {
    "tiny": SearchSpace("tiny", (3, 4, 5), (4, 8), tuple(range(1, 11)), (192, 256, 320, 384)),
    "small": SearchSpace("small", (3, 4, 5), (4, 8), tuple(range(2, 13)),
                         (256, 320, 384, 448, 512)),
    "base": SearchSpace("base", (3, 4, 5, 6), (4, 8), tuple(range(4, 16)),
                        (384, 448, 512, 576, 640, 704, 768)),
}


def get_space(name: str) -> SearchSpace:
    """The space called ``name`` (tiny, small or base); a one-line error otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise BadInputError(f"unknown AutoST search space {name!r}; known: "
                            f"{', '.join(SPACES)}") from None


@dataclass(frozen=True)
class Candidate:
    """One architecture of the space (hashable: the cache key)."""

    depth: int
    mlp_ratios: Tuple[int, ...]
    heads: Tuple[int, ...]
    embed_dim: int

    def encode(self) -> Tuple[int, ...]:
        """AutoST's flat tuple (d, r_1..r_d, h_1..h_d, D)."""
        return (self.depth, *self.mlp_ratios, *self.heads, self.embed_dim)

    @classmethod
    def decode(cls, genes: Sequence[int]) -> "Candidate":
        """The candidate of a flat tuple (d, r_1..r_d, h_1..h_d, D)."""
        g = [int(v) for v in genes]
        if not g or len(g) != 2 * g[0] + 2:
            raise BadInputError(f"AutoST candidate {list(genes)}: expected (d, r_1..r_d, "
                                "h_1..h_d, D)")
        d = g[0]
        return cls(d, tuple(g[1:1 + d]), tuple(g[1 + d:1 + 2 * d]), g[-1])

    def label(self) -> str:
        """Short readable name, e.g. ``d3-D384-r453-h848``."""
        return (f"d{self.depth}-D{self.embed_dim}-r{''.join(map(str, self.mlp_ratios))}"
                f"-h{''.join(map(str, self.heads))}")


#: fixed settings of the searched model (seeds.md §3.1-3.2)
FIXED: Dict[str, Any] = {"variant": "autost", "in_channels": 3, "input_size": 32,
                         "pools": [False, False, True, True], "num_classes": 100,
                         "qkv_bias": True, "scale": 0.125, "tau": 2.0, "attn_threshold": 0.5}
#: simulation steps AutoST counts over
STEPS = 4


def model_config(cand: Candidate, **overrides: Any) -> Dict[str, Any]:
    """The ``spikformer`` model config of ``cand`` (what ``build_spikformer``
    and other nmtc commands accept); ``overrides`` change fixed settings
    (e.g. ``num_classes``, ``input_size`` for a digits-scaled model)."""
    cfg = dict(FIXED)
    cfg.update({"embed_dim": cand.embed_dim, "depth": cand.depth,
                "heads": list(cand.heads), "mlp_ratio": list(cand.mlp_ratios)})
    cfg.update(overrides)
    return cfg


def random_candidate(space: SearchSpace, rng: random.Random) -> Candidate:
    """Depth uniform, then per-block ratio and heads uniform, then D uniform
    (the released ``get_random_cand`` order, so a seed fixes the sequence)."""
    d = rng.choice(space.depths)
    ratios = tuple(rng.choice(space.mlp_ratios) for _ in range(d))
    heads = tuple(rng.choice(space.heads) for _ in range(d))
    return Candidate(d, ratios, heads, rng.choice(space.embed_dims))


__all__ = ["SearchSpace", "SPACES", "get_space", "Candidate", "FIXED", "STEPS", "model_config",
           "random_candidate"]
