"""A mini-MST (Wang et al., ICCV 2023) for 8x8 digits: a Swin-style windowed
transformer with BatchNorm and QCFS everywhere MST puts them, small enough to
train on a CPU in well under a minute.

Layout (seeds.md §2.1, scaled down): patch embed Conv2d(k = s = patch) -> BN ->
QCFS gives a grid of tokens; each block does

    x = x + attn(QCFS(BN1(x)))          # windowed self-attention, MST's order
    x = BN2(x); x = x + MLP(QCFS(x))    # MST's quirk: the residual adds BN2(x)

attention: q, k, v = QCFS(Linear(x)) (three Linears = MST's qkv Linear split);
RSM masks (``SpikeMask`` roles 'q', 'k', 'score') on q, k and the score spikes;
scores = QCFS((q @ kᵀ)·scale), masked, + relative position bias (a learned
table indexed by the relative offset inside the window) -> softmax -> @ v
(v never masked) -> QCFS -> Linear proj -> QCFS. MLP: Linear -> QCFS ->
Linear -> QCFS, the inputs of both linears optionally masked (role 'mlp_in',
the paper's Fig. 2(e)). With ``shift``, odd blocks shift their windows by
half a window (``torch.roll``) and add Swin's -100/0 mask between tokens of
different regions, as the released code (none when one window covers the
grid). Optional patch merging (2x2 tokens -> one of 4C, BN, Linear 4C -> 2C
without bias, QCFS). Head: [LayerNorm with ``final_norm``] -> mean over
tokens -> Linear.

Window partition/reverse use reshape + permute only, so the torch.fx loader
maps them to IR Reshape/Transpose. The relative position bias is kept in a
non-persistent buffer ``rel_bias`` of shape (heads, n, n), refreshed from the
learned table whenever the module enters eval mode or loads weights; in eval
mode the forward adds that buffer, which the loader sees as ``scores +
constant`` (an IR ``Bias``).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from nmtoolchain.errors import BadInputError
from nmtoolchain.nn import QCFS, SpikeMask

MINI_MST_DEFAULTS: Dict[str, Any] = {
    "in_channels": 1,  # input channels
    "input_size": 8,  # input height = width
    "patch": 2,  # patch embed kernel = stride
    "dim": 16,  # token features C
    "heads": 2,  # attention heads (dim % heads == 0)
    "depth": 1,  # blocks before the optional patch merging
    "window": 2,  # window side (window² tokens per window)
    "mlp_ratio": 2,  # MLP hidden = mlp_ratio · C
    "merge": False,  # patch merging + one more block at half resolution
    "num_classes": 10,
    "levels": 16,  # QCFS L (MST: 16)
    "threshold": 2.0,  # QCFS initial λ (MST: 2.0)
    "mask_p": 0.0,  # RSM ratio on q, k and score spikes (train and inference)
    "mlp_mask_p": 0.0,  # RSM ratio on the inputs of both MLP linears (MST's code: unused, so 0)
    "shift": False,  # Swin/MST: shifted windows (roll + the -100 mask) on odd blocks
    "final_norm": False,  # MST: LayerNorm before the head (off: checkpoints saved without it)
}


def _qcfs(cfg: Mapping[str, Any]) -> QCFS:
    return QCFS(levels=int(cfg["levels"]), threshold=float(cfg["threshold"]))


class TokenBN(nn.Module):
    """BatchNorm1d over the features of (B, N, C) tokens (MST's BN in place of LN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class WindowAttention(nn.Module):
    """MST attention on (B, windows, n, C) tokens (module docstring)."""

    def __init__(self, dim: int, heads: int, window: int, cfg: Mapping[str, Any],
                 shift_mask: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.heads, self.n, self.dh = heads, window * window, dim // heads
        # Swin's shifted-window mask (windows, 1, n, n) of 0 and -100, or None
        self.shifted = shift_mask is not None
        self.register_buffer("shift_mask", shift_mask if shift_mask is not None else
                             torch.zeros(0), persistent=False)
        self.scale = self.dh ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_if, self.k_if, self.v_if = _qcfs(cfg), _qcfs(cfg), _qcfs(cfg)
        p = float(cfg["mask_p"])
        self.mask_q, self.mask_k = SpikeMask(p, role="q"), SpikeMask(p, role="k")
        self.attn_if = _qcfs(cfg)
        self.mask_score = SpikeMask(p, role="score")
        # Swin's table: (2w-1)² offsets x heads, trunc-normal std 0.02
        self.rpb_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.rpb_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)  # (2, n)
        rel = (coords[:, :, None] - coords[:, None, :]) + (window - 1)  # (2, n, n)
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)
        self.register_buffer("rel_bias", torch.zeros(heads, self.n, self.n), persistent=False)
        self.attn_v_if = _qcfs(cfg)
        self.proj = nn.Linear(dim, dim)
        self.proj_if = _qcfs(cfg)
        self.register_load_state_dict_post_hook(lambda m, _keys: m.refresh_bias())
        self.refresh_bias()

    def relative_position_bias(self) -> torch.Tensor:
        """The table expanded to (heads, n, n) by relative offset."""
        return self.rpb_table[self.rel_index.reshape(-1)].reshape(
            self.n, self.n, self.heads).permute(2, 0, 1)

    @torch.no_grad()
    def refresh_bias(self) -> None:
        """Copy the expanded table into the constant buffer used in eval mode."""
        self.rel_bias.copy_(self.relative_position_bias())

    def train(self, mode: bool = True) -> "WindowAttention":
        super().train(mode)
        if not mode:
            self.refresh_bias()
        return self

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # (B, W, n, C) -> (B, W, heads, n, dh)
        return t.reshape(t.shape[0], t.shape[1], self.n, self.heads, self.dh).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.mask_q(self.q_if(self.q(x))))
        k = self._heads(self.mask_k(self.k_if(self.k(x))))
        v = self._heads(self.v_if(self.v(x)))
        scores = (q @ k.transpose(-2, -1)) * self.scale
        scores = self.mask_score(self.attn_if(scores))
        bias = self.relative_position_bias() if self.training else self.rel_bias
        scores = scores + bias
        if self.shifted:
            scores = scores + self.shift_mask
        attn = torch.softmax(scores, dim=-1)
        y = (attn @ v).permute(0, 1, 3, 2, 4)  # (B, W, n, heads, dh)
        y = self.attn_v_if(y.reshape(y.shape[0], y.shape[1], self.n, self.heads * self.dh))
        return self.proj_if(self.proj(y))


def shifted_window_mask(size: int, window: int, shift: int) -> torch.Tensor:
    """Swin's attention mask for windows shifted by ``shift`` on a ``size`` grid:
    (windows, 1, n, n), -100 between tokens from different regions, else 0."""
    region = torch.zeros(size, size)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            region[rows, cols] = label
            label += 1
    k = size // window
    ids = region.reshape(k, window, k, window).permute(0, 2, 1, 3).reshape(k * k, window ** 2)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))[:, None]


class MSTBlock(nn.Module):
    """One MST block on a (B, H·W, C) token grid of side ``size``; ``shift``
    (Swin's half window on odd blocks, 0 otherwise) rolls the grid before the
    window partition and back after, with the shifted-window mask."""

    def __init__(self, dim: int, size: int, cfg: Mapping[str, Any], shift: int = 0) -> None:
        super().__init__()
        w = min(int(cfg["window"]), size)
        if size % w:
            raise BadInputError(f"architecture 'mini_mst': grid {size} not divisible by window {w}")
        if size <= w:  # one window covers the grid: nothing to shift (Swin)
            shift = 0
        self.size, self.w, self.dim, self.shift = size, w, dim, int(shift)
        self.norm1, self.shortcut1_if = TokenBN(dim), _qcfs(cfg)
        self.attn = WindowAttention(dim, int(cfg["heads"]), w, cfg,
                                    shifted_window_mask(size, w, self.shift) if self.shift
                                    else None)
        self.norm2, self.shortcut2_if = TokenBN(dim), _qcfs(cfg)
        self.mask_mlp = SpikeMask(float(cfg["mlp_mask_p"]), role="mlp_in")
        self.mask_mlp_hidden = SpikeMask(float(cfg["mlp_mask_p"]), role="mlp_in")
        hidden = int(cfg["mlp_ratio"]) * dim
        self.fc1, self.fc1_if = nn.Linear(dim, hidden), _qcfs(cfg)
        self.fc2, self.fc2_if = nn.Linear(hidden, dim), _qcfs(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, w, c = x.shape[0], self.size, self.w, self.dim
        h = self.shortcut1_if(self.norm1(x)).reshape(b, s, s, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        # window partition: (B, s, s, C) -> (B, (s/w)², w², C)
        h = h.reshape(b, s // w, w, s // w, w, c).permute(0, 1, 3, 2, 4, 5)
        h = self.attn(h.reshape(b, (s // w) ** 2, w * w, c))
        # window reverse
        h = h.reshape(b, s // w, s // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, s, s, c)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, s * s, c)
        x = self.norm2(x)
        x2 = self.mask_mlp(self.shortcut2_if(x))
        hidden = self.mask_mlp_hidden(self.fc1_if(self.fc1(x2)))
        return x + self.fc2_if(self.fc2(hidden))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token of 4C -> BN -> Linear(4C -> 2C, no bias) -> QCFS."""

    def __init__(self, dim: int, size: int, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.size, self.dim = size, dim
        self.norm = TokenBN(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.reduction_if = _qcfs(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.shape[0], self.size, self.dim
        x = x.reshape(b, s // 2, 2, s // 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, (s // 2) ** 2, 4 * c)
        return self.reduction_if(self.reduction(self.norm(x)))


class MiniMST(nn.Module):
    """The mini-MST; keyword arguments as in :data:`MINI_MST_DEFAULTS`
    (``mask_p`` is the RSM ratio, active in training and inference)."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = _resolve(config)
        self.config = cfg
        c, p = int(cfg["dim"]), int(cfg["patch"])
        size = int(cfg["input_size"]) // p
        self.patch_embed = nn.Conv2d(int(cfg["in_channels"]), c, p, stride=p)
        self.patch_norm = nn.BatchNorm2d(c)
        self.patch_if = _qcfs(cfg)
        half = int(cfg["window"]) // 2 if cfg["shift"] else 0
        blocks: list = [MSTBlock(c, size, cfg, half if i % 2 else 0)
                        for i in range(int(cfg["depth"]))]
        if cfg["merge"]:
            blocks.append(PatchMerging(c, size, cfg))
            c, size = 2 * c, size // 2
            blocks.append(MSTBlock(c, size, cfg))
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(c) if cfg["final_norm"] else nn.Identity()
        self.head = nn.Linear(c, int(cfg["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_if(self.patch_norm(self.patch_embed(x)))
        x = x.flatten(2).transpose(1, 2)  # (B, tokens, C)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def _resolve(config: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(config) - set(MINI_MST_DEFAULTS))
    if unknown:
        raise BadInputError(f"architecture 'mini_mst': unknown config key(s) {unknown}; "
                            f"known: {sorted(MINI_MST_DEFAULTS)}")
    cfg = dict(MINI_MST_DEFAULTS)
    cfg.update(config)
    if int(cfg["dim"]) % int(cfg["heads"]):
        raise BadInputError(f"architecture 'mini_mst': dim {cfg['dim']} is not divisible by "
                            f"heads {cfg['heads']}")
    if int(cfg["input_size"]) % int(cfg["patch"]):
        raise BadInputError(f"architecture 'mini_mst': input_size {cfg['input_size']} is not "
                            f"divisible by patch {cfg['patch']}")
    for key in ("mask_p", "mlp_mask_p"):
        if not 0.0 <= float(cfg[key]) <= 1.0:
            raise BadInputError(f"architecture 'mini_mst': {key} must be in [0, 1], "
                                f"got {cfg[key]}")
    return cfg


def build_mini_mst(config: Mapping[str, Any]) -> nn.Module:
    """The registry builder: :class:`MiniMST` from a config dict."""
    return MiniMST(**dict(config))


__all__ = ["MINI_MST_DEFAULTS", "MiniMST", "MSTBlock", "PatchMerging", "WindowAttention",
           "TokenBN", "build_mini_mst", "shifted_window_mask"]
