"""AT-SNN: adaptive tokens in a direct-trained Spikformer (Kang et al., arXiv 2408.12293).

Specification: ``seeds.md`` §4 (the paper published no code; every unknown is
a config key with a stated default).

Halting (A-ViT's token ACT, §4.2, over blocks *and* time steps, §4.3)
  The (step t, block l) pairs are visited in a fixed order (``halt_order``:
  ``'time'`` = t-major, the default, or ``'block'`` = l-major). After block l
  at step t each active token k gets ``h = sigmoid(gate_scale · x[k, 0] -
  gate_center)`` from the first channel of the block output (the residual
  stream); the last pair forces h = 1. ``c_k`` accumulates h; token k halts at
  the first pair where ``c_k >= 1 - halt_eps``. Its remainder is ``R_k = 1 -
  c_k`` (before that pair); the mean-field output is ``y_k = Σ h·x + R_k·x``
  over the pairs it was processed at. A halted token's stream is zero for
  every later pair: its Q, K, V rows and MLP input are zero, and the membranes
  of its neurons are frozen (not updated, not reset).
  Ponder cost ``rho_k`` = pairs processed + R_k; the optional distribution
  prior is a KL divergence of the mean halting score per pair against a
  Gaussian over the flattened pair index (A-ViT's prior).

Readout (``readout``)
  ``'act'``: logits at step t are head(Σ_k s_k · T · o_k^t / N) where o_k^t
  is the part of y_k gathered at step t, so the mean over steps (what
  :class:`~nmtoolchain.models.spikformer.TimeMean` and the simulator take) is
  exactly head(Σ_k s_k y_k / N). ``'final'``: Spikformer's own readout
  head(Σ_k s_k x_k^{t,L} / N) per step (halted tokens are zero); with a gate
  that never fires this *is* the unadapted Spikformer.

Merging (ToMe-style bipartite soft matching, §4.4)
  At the input of block ``merge_block`` at step 0, tokens are split alternately
  into A (even) and B (odd); each active A token finds its most similar
  active B token by cosine similarity of the stream; the ``merge_r`` most
  similar pairs (``merge='bipartite'``) or every pair above
  ``merge_threshold`` (``merge='threshold'``) merge. The map holds for every
  step: the B token carries the size-weighted mean of its group and a size
  s = group size, the A token leaves (inactive, size 0, like a halted token:
  skipped at every later pair, also in blocks before ``merge_block`` at later
  steps). Attention from ``merge_block`` on is proportional (V rows weighted by
  size), and the readout
  weights tokens by size, so merging two identical tokens changes nothing.

Only the vanilla variant (LIF, post-activation blocks) is supported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from nmtoolchain.errors import BadInputError
from nmtoolchain.models.spikformer import SPIKFORMER_DEFAULTS, Spikformer, spikformer_digits

ATSNN_DEFAULTS: Dict[str, Any] = {
    **SPIKFORMER_DEFAULTS,
    "halting": True,  # token ACT on or off
    "gate_scale": 5.0,  # gamma of h = sigmoid(gamma * x[.., 0] - beta)
    "gate_center": 10.0,  # beta
    "halt_eps": 0.01,  # halt when the accumulated score reaches 1 - eps
    "halt_order": "time",  # 'time' (t-major, default) or 'block' (l-major)
    "readout": "act",  # 'act' (mean-field) or 'final' (Spikformer's)
    "merge": "none",  # 'none', 'bipartite' (merge_r pairs) or 'threshold'
    "merge_r": 0,  # pairs merged ('bipartite')
    "merge_threshold": 0.9,  # cosine similarity above which pairs merge ('threshold')
    "merge_block": 0,  # merging happens at the input of this block (0-based)
}
_ATSNN_ONLY = [k for k in ATSNN_DEFAULTS if k not in SPIKFORMER_DEFAULTS]


def _check(cfg: Mapping[str, Any]) -> None:
    def bad(why: str) -> BadInputError:
        return BadInputError(f"architecture 'atsnn': {why}")

    if cfg["variant"] != "spikformer":
        raise bad("only the vanilla Spikformer variant is supported ('variant': 'spikformer')")
    if not 0.0 <= float(cfg["halt_eps"]) <= 1.0:
        raise bad(f"halt_eps must be in [0, 1], got {cfg['halt_eps']}")
    if cfg["halt_order"] not in ("time", "block"):
        raise bad(f"halt_order must be 'time' or 'block', got {cfg['halt_order']!r}")
    if cfg["readout"] not in ("act", "final"):
        raise bad(f"readout must be 'act' or 'final', got {cfg['readout']!r}")
    if cfg["merge"] not in ("none", "bipartite", "threshold"):
        raise bad(f"merge must be 'none', 'bipartite' or 'threshold', got {cfg['merge']!r}")
    if not 0 <= int(cfg["merge_block"]) < int(cfg["depth"]):
        raise bad(f"merge_block {cfg['merge_block']} is not a block index (depth "
                  f"{cfg['depth']})")


@dataclass
class ACTStats:
    """What the last forward pass did with the tokens (batch-first tensors).

    ``processed``: (B, T, L, N) bool, token k processed by block l at step t;
    ``rho``: (B, N) ponder cost (pairs processed + remainder);
    ``halt_score``: (B, P) mean halting score per pair in visiting order
    (P = T·L), for the distribution prior; ``sizes``: (B, N) token sizes
    after merging (0 for merged-away tokens)."""

    processed: torch.Tensor
    rho: torch.Tensor
    halt_score: torch.Tensor
    sizes: torch.Tensor

    @property
    def tokens_processed(self) -> torch.Tensor:
        """(B,) token × block × step count per sample."""
        return self.processed.flatten(1).sum(1)


def _masked_lif(lif: nn.Module, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """One step of ``lif`` on x (B, 1, N, D); inactive tokens keep their membrane
    (frozen) and emit nothing. ``active``: (B, N) bool."""
    v_old = lif.v
    s = lif(x)
    m = active[:, None, :, None]
    if v_old is None:
        v_old = torch.full_like(lif.v, lif.v_init)
    lif.v = torch.where(active[:, :, None], lif.v, v_old)
    return s * m


def masked_block_step(block: nn.Module, x: torch.Tensor, active: torch.Tensor,
                      sizes: torch.Tensor) -> torch.Tensor:
    """Spikformer block on one step x (B, 1, N, D) with token masks.

    Inactive tokens: zero Q, K, V rows and MLP output, frozen membranes. V rows
    are weighted by token size (proportional attention for merged tokens)."""
    a, m = block.attn, block.mlp
    mask = active[:, None, :, None].to(x.dtype)
    x = x * mask
    q = a._split(_masked_lif(a.q_lif, a.q_bn(a.q_linear(x)), active))
    k = a._split(_masked_lif(a.k_lif, a.k_bn(a.k_linear(x)), active))
    v = _masked_lif(a.v_lif, a.v_bn(a.v_linear(x)), active) * sizes[:, None, :, None]
    v = a._split(v)
    y = ((q @ k.transpose(-2, -1)) * a.scale @ v).permute(0, 1, 3, 2, 4)
    y = y.reshape(y.shape[0], y.shape[1], y.shape[2], a.heads * a.dh)
    y = _masked_lif(a.attn_lif, y, active)
    y = _masked_lif(a.proj_lif, a.proj_bn(a.proj_linear(y)), active)
    x = x + y
    h = _masked_lif(m.fc1_lif, m.fc1_bn(m.fc1_linear(x)), active)
    return x + _masked_lif(m.fc2_lif, m.fc2_bn(m.fc2_linear(h)), active)


def bipartite_merge_map(metric: torch.Tensor, active: torch.Tensor, sizes: torch.Tensor, *,
                        r: int = 0, threshold: Optional[float] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ToMe bipartite soft matching on ``metric`` (B, N, D).

    A = even tokens, B = odd tokens; each active A token pairs with its most
    cosine-similar active B token; the ``r`` best pairs merge (or, with
    ``threshold``, every pair above it). Returns (M, active', sizes'): M (B, N,
    N) maps a stream x to the merged stream M @ x (a B token's row holds the
    size-weighted mean of its group; a merged A token's row is zero)."""
    bsz, n, _ = metric.shape
    ia, ib = torch.arange(0, n, 2), torch.arange(1, n, 2)
    unit = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = unit[:, ia] @ unit[:, ib].transpose(1, 2)  # (B, Na, Nb)
    valid = active[:, ia, None] & active[:, None, ib]
    sim = sim.masked_fill(~valid, -math.inf)
    best, best_b = sim.max(-1)  # (B, Na)
    if threshold is not None:
        merged_a = best > float(threshold)
    else:
        merged_a = torch.zeros_like(best, dtype=torch.bool)
        k = min(int(r), len(ia))
        if k > 0:
            top = torch.sort(best, dim=-1, descending=True, stable=True).indices[:, :k]
            merged_a.scatter_(1, top, True)
        merged_a &= best > -math.inf
    group = torch.arange(n).expand(bsz, n).clone()  # which token each token ends up in
    group[:, ia] = torch.where(merged_a, ib[best_b], ia.expand(bsz, -1))
    onehot = nn.functional.one_hot(group, n).to(metric.dtype) * sizes[..., None]  # (B, N, dst)
    new_sizes = onehot.sum(1)  # (B, dst)
    m = (onehot / new_sizes.clamp_min(1e-12)[:, None, :]).transpose(1, 2)  # (B, dst, src)
    new_active = active & (new_sizes > 0)
    return m, new_active, new_sizes


class ATSpikformer(Spikformer):
    """Spikformer with token halting and merging (see the module docstring).

    Returns (B, T, classes) logits like :class:`Spikformer`; the statistics of
    the last pass are in :attr:`stats` (:class:`ACTStats`)."""

    def __init__(self, **config: Any) -> None:
        base = {k: v for k, v in config.items() if k not in _ATSNN_ONLY}
        super().__init__(**base)
        unknown = sorted(set(config) - set(ATSNN_DEFAULTS))
        if unknown:
            raise BadInputError(f"architecture 'atsnn': unknown config key(s) {unknown}")
        cfg = dict(ATSNN_DEFAULTS)
        cfg.update(self.config)
        cfg.update({k: config[k] for k in _ATSNN_ONLY if k in config})
        _check(cfg)
        self.config = cfg
        self.stats: Optional[ACTStats] = None

    def pair_order(self, steps: int) -> List[Tuple[int, int]]:
        """The (t, l) pairs in the order halting visits them."""
        depth = len(self.blocks)
        if self.config["halt_order"] == "block":
            return [(t, l) for l in range(depth) for t in range(steps)]
        return [(t, l) for t in range(steps) for l in range(depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(self.patch_embed(x))

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The encoder and head on SPS tokens (B, T, N, D)."""
        cfg = self.config
        bsz, steps, n, _ = tokens.shape
        depth = len(self.blocks)
        gamma, beta = float(cfg["gate_scale"]), float(cfg["gate_center"])
        limit = 1.0 - float(cfg["halt_eps"])
        active = torch.ones(bsz, n, dtype=torch.bool, device=tokens.device)
        sizes = torch.ones(bsz, n, dtype=tokens.dtype, device=tokens.device)
        ones = sizes
        cum = torch.zeros(bsz, n, dtype=tokens.dtype, device=tokens.device)
        rho = torch.zeros_like(cum)
        processed = torch.zeros(bsz, steps, depth, n, dtype=torch.bool, device=tokens.device)
        step_out = [torch.zeros_like(tokens[:, 0]) for _ in range(steps)]
        final = [torch.zeros_like(tokens[:, 0]) for _ in range(steps)]
        stream = {t: tokens[:, t] for t in range(steps)}  # current stream per step
        merge_map: Optional[torch.Tensor] = None
        order = self.pair_order(steps)
        scores = []
        for i, (t, l) in enumerate(order):
            x = stream[t]
            if cfg["merge"] != "none" and l == int(cfg["merge_block"]):
                if merge_map is None:
                    thr = float(cfg["merge_threshold"]) if cfg["merge"] == "threshold" else None
                    merge_map, active, sizes = bipartite_merge_map(
                        x.detach(), active, sizes, r=int(cfg["merge_r"]), threshold=thr)
                x = merge_map @ x
            processed[:, t, l] = active
            weights = sizes if merge_map is not None and l >= int(cfg["merge_block"]) else ones
            x = masked_block_step(self.blocks[l], x.unsqueeze(1), active, weights).squeeze(1)
            if cfg["halting"]:
                h = torch.sigmoid(gamma * x[..., 0] - beta)
                if i == len(order) - 1:
                    h = torch.ones_like(h)
                h = h * active
                scores.append(h.sum(1) / active.sum(1).clamp_min(1))
                new_cum = cum + h
                halting = active & (new_cum >= limit)
                w = torch.where(halting, 1.0 - cum, h) * active
                rho = rho + active + torch.where(halting, 1.0 - cum, torch.zeros_like(cum))
                cum = torch.where(active, new_cum, cum)
                active = active & ~halting
            else:
                w = (torch.ones_like(cum) if i == len(order) - 1 else torch.zeros_like(cum))
                w = w * active
                rho = rho + active
            step_out[t] = step_out[t] + w[..., None] * x
            if l == depth - 1:
                final[t] = x
            stream[t] = x * active[..., None]
        self.stats = ACTStats(processed, rho, torch.stack(scores, 1) if scores else
                              torch.zeros(bsz, 0), sizes)
        src = step_out if cfg["readout"] == "act" else final
        scale = float(steps) if cfg["readout"] == "act" else 1.0
        pooled = torch.stack([(o * sizes[..., None]).sum(1) / n * scale for o in src], 1)
        return self.head(pooled)  # (B, T, classes)


def ponder_loss(stats: ACTStats) -> torch.Tensor:
    """A-ViT's ponder loss: the mean over tokens (and batch) of rho_k; merged-away
    tokens (size 0) are left out."""
    keep = stats.sizes > 0
    return (stats.rho * keep).sum() / keep.sum().clamp_min(1)


def distribution_prior(stats: ACTStats, target: float, std: float = 1.0) -> torch.Tensor:
    """KL(target || halting distribution) over the flattened pair index, as A-ViT:
    the mean halting score per pair normalised to a distribution, against a
    Gaussian centred at pair index ``target`` (0-based), clamped to [0.01, 0.99]."""
    p = stats.halt_score.mean(0)
    p = (p / p.sum().clamp_min(1e-12)).clamp(0.01, 0.99)
    idx = torch.arange(len(p), dtype=p.dtype)
    g = torch.exp(-0.5 * ((idx - float(target)) / float(std)) ** 2)
    g = g / g.sum()
    return (g * (g.clamp_min(1e-12).log() - p.log())).sum()


def build_atsnn(config: Mapping[str, Any]) -> nn.Module:
    """The registry builder: :class:`ATSpikformer` from a config dict."""
    return ATSpikformer(**dict(config))


def atsnn_digits(**overrides: Any) -> Dict[str, Any]:
    """The digits Spikformer (16 tokens, D = 32) with AT-SNN's keys; ``overrides`` win."""
    cfg = spikformer_digits("spikformer")
    cfg.update(overrides)
    return cfg


__all__ = ["ATSNN_DEFAULTS", "ATSpikformer", "ACTStats", "masked_block_step",
           "bipartite_merge_map", "ponder_loss", "distribution_prior", "build_atsnn",
           "atsnn_digits"]
