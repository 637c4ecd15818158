"""The module layout of MST's released model code (seeds.md §2.1, §2.4), written
here in plain torch from that description (test helper).

What sets it apart from ``swin_mst_plain`` (which is written as people write
Swin): one module per role with the released names (``SpikingWindowAttention``
with a fused ``qkv`` Linear split by reshape + ``permute(2, 0, 3, 1, 4)`` and
integer indexing ``qkv[0]``, a ``nn.Softmax`` module, ``nn.Dropout`` and an
identity drop path; ``MaskedSpikingTransformerBlock`` with ``BatchNorm1d``
applied through ``transpose().contiguous()``, ``window_partition`` folding the
windows into the batch axis and the shift mask added through ``view(B_ // nW,
nW, ...)``; ``SpikingMlp``), QCFS where the released code has its ``nn.ReLU``
placeholders, and three constructs of the released code that nmtc's loaders
cannot translate, each switchable:

* ``released_masks``: RSM as a free function drawing ``torch.rand(x.shape) > p``
  and multiplying (else :class:`nmtoolchain.nn.SpikeMask` modules, roles q, k,
  score);
* ``released_reverse``: ``window_reverse`` recovering the batch size with
  ``int(windows.shape[0] / ...)`` (else ``view(-1, ...)``);
* ``released_assert``: ``assert L == H * W`` on the input's shape in forward.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nmtoolchain.nn import QCFS, SpikeMask
from swin_mst_plain import randomize_


def _if() -> QCFS:
    return QCFS(levels=16, threshold=2.0)


def random_spike_mask(x: torch.Tensor, ratio: float = 0.0) -> torch.Tensor:
    """RSM drawn inside forward, as the released code does."""
    keep = torch.rand(size=x.shape, device=x.device).gt(ratio)
    return x * keep


def to_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B·windows, w, w, C)."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(-1, w, w, c)


def from_windows(win: torch.Tensor, w: int, h: int, wd: int, released: bool) -> torch.Tensor:
    """(B·windows, w, w, C) -> (B, H, W, C); ``released`` recovers B with int()."""
    if released:
        b = int(win.shape[0] / (h * wd / w / w))
        x = win.view(b, h // w, wd // w, w, w, -1)
    else:
        x = win.view(-1, h // w, wd // w, w, w, win.shape[-1])
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, wd, x.shape[-1])


class SpikingWindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int, ratio: float,
                 released_masks: bool) -> None:
        super().__init__()
        self.heads, self.ratio, self.released_masks = heads, ratio, released_masks
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        grid = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                          indexing="ij")).flatten(1)
        off = grid[:, :, None] - grid[:, None, :] + (window - 1)
        self.register_buffer("relative_position_index", off[0] * (2 * window - 1) + off[1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_if, self.k_if, self.v_if = _if(), _if(), _if()
        self.attn_if, self.attn_v_if = _if(), _if()
        self.mask_q, self.mask_k = SpikeMask(ratio, role="q"), SpikeMask(ratio, role="k")
        self.mask_attn = SpikeMask(ratio, role="score")
        self.proj, self.proj_if = nn.Linear(dim, dim), _if()
        self.proj_drop = nn.Dropout(0.0)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = self.q_if(q), self.k_if(k)
        if self.released_masks:
            q, k = random_spike_mask(q, self.ratio), random_spike_mask(k, self.ratio)
        else:
            q, k = self.mask_q(q), self.mask_k(k)
        attn = self.attn_if((q @ k.transpose(-2, -1)) * self.scale)
        if self.released_masks:
            attn = random_spike_mask(attn, self.ratio)
        else:
            attn = self.mask_attn(attn)
        v = self.v_if(v)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = self.softmax(attn)
        y = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj_if(self.proj(self.attn_v_if(y))))


class SpikingMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc1_if = nn.Linear(dim, hidden), _if()
        self.fc2, self.fc2_if = nn.Linear(hidden, dim), _if()
        self.drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.fc1_if(self.fc1(x)))
        return self.drop(self.fc2_if(self.fc2(x)))


class MaskedSpikingTransformerBlock(nn.Module):
    def __init__(self, dim: int, res: int, heads: int, window: int, shift: int, ratio: float,
                 released_masks: bool, released_reverse: bool, released_assert: bool) -> None:
        super().__init__()
        self.res, self.window, self.shift = res, window, shift
        self.released_reverse, self.released_assert = released_reverse, released_assert
        self.norm1, self.shortcut1_if = nn.BatchNorm1d(dim), _if()
        self.attn = SpikingWindowAttention(dim, window, heads, ratio, released_masks)
        self.drop_path = nn.Identity()
        self.norm2, self.shortcut2_if = nn.BatchNorm1d(dim), _if()
        self.mlp = SpikingMlp(dim, 2 * dim)
        attn_mask = None
        if shift > 0:
            regions = torch.zeros(1, res, res, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for i, rows in enumerate(cuts):
                for j, cols in enumerate(cuts):
                    regions[:, rows, cols, :] = 3 * i + j
            ids = to_windows(regions, window).view(-1, window * window)
            diff = ids.unsqueeze(1) - ids.unsqueeze(2)
            attn_mask = diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)
        self.register_buffer("attn_mask", attn_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = w = self.res
        b, length, c = x.shape
        if self.released_assert:
            assert length == h * w, "input feature has wrong size"
        shortcut = x
        x = self.norm1(x.transpose(1, 2).contiguous()).transpose(1, 2).contiguous()
        x = self.shortcut1_if(x).view(b, h, w, c)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = to_windows(x, self.window).view(-1, self.window * self.window, c)
        win = self.attn(win, mask=self.attn_mask).view(-1, self.window, self.window, c)
        x = from_windows(win, self.window, h, w, self.released_reverse)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + self.drop_path(x.view(b, h * w, c))
        x = self.norm2(x.transpose(1, 2).contiguous()).transpose(1, 2).contiguous()
        return x + self.drop_path(self.mlp(self.shortcut2_if(x)))


class ReleasedLayoutMST(nn.Module):
    """Patch embed (conv, BN1d, QCFS) -> W-MSA block -> SW-MSA block -> LayerNorm ->
    mean over tokens -> Linear, on 8x8 inputs (a 4x4 grid, window 2)."""

    def __init__(self, ratio: float = 0.0, released_masks: bool = False,
                 released_reverse: bool = False, released_assert: bool = False) -> None:
        super().__init__()
        dim, res = 8, 4
        self.patch_embed = nn.Conv2d(1, dim, 2, stride=2)
        self.patch_norm, self.proj_if = nn.BatchNorm1d(dim), _if()
        flags = (released_masks, released_reverse, released_assert)
        self.layers = nn.Sequential(
            MaskedSpikingTransformerBlock(dim, res, 2, 2, 0, ratio, *flags),
            MaskedSpikingTransformerBlock(dim, res, 2, 2, 1, ratio, *flags))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2)
        x = self.proj_if(self.patch_norm(x)).transpose(1, 2)
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=1))


def randomized(seed: int = 0, **flags: bool) -> ReleasedLayoutMST:
    """A ReleasedLayoutMST with random weights, BN statistics and λ (eval mode)."""
    torch.manual_seed(seed)
    return randomize_(ReleasedLayoutMST(**flags), seed)
