"""A Swin-style MST written with plain torch, as people write Swin (test helper).

Windows by view/permute, shifted windows by ``torch.roll`` with Swin's -100
attention mask (built with ``masked_fill`` from a constant region map, in
``forward``), a fused qkv Linear split by ``.chunk``, the relative position
bias gathered from its table by a constant index, patch merging by strided
slicing ``x[:, 0::2, 0::2, :]`` and ``torch.cat``, BN in place of LN in the
blocks and LN before the head, and QCFS everywhere MST puts its IF neurons
(seeds.md §2.1) -- where Swin has GELU, MST has QCFS. Nothing from nmtc's own
mini-MST is used; only ``nmtoolchain.nn.QCFS`` (the activation MST trains with).
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from nmtoolchain.nn import QCFS


def _q() -> QCFS:
    return QCFS(levels=16, threshold=2.0)


class BlockBN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class SwinMSTBlock(nn.Module):
    def __init__(self, dim: int, res: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        if res <= window:  # Swin: no partition or shift when one window covers the grid
            window, shift = res, 0
        self.dim, self.res, self.heads, self.window, self.shift = dim, res, heads, window, shift
        self.n = window * window
        self.nw = (res // window) ** 2
        self.scale = (dim // heads) ** -0.5
        self.norm1, self.shortcut1_if = BlockBN(dim), _q()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_if, self.k_if, self.v_if, self.attn_if = _q(), _q(), _q(), _q()
        self.attn_v_if, self.proj, self.proj_if = _q(), nn.Linear(dim, dim), _q()
        self.rpb_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1])
        # Swin's region map for the shifted-window mask: region id per token, per window
        img = torch.zeros(1, res, res, 1)
        cnt = 0
        for hs in (slice(0, -window), slice(-window, -shift or None), slice(-shift or res, None)):
            for ws in (slice(0, -window), slice(-window, -shift or None),
                       slice(-shift or res, None)):
                img[:, hs, ws, :] = cnt
                cnt += 1
        regions = img.view(1, res // window, window, res // window, window, 1)
        regions = regions.permute(0, 1, 3, 2, 4, 5).reshape(self.nw, self.n)
        self.register_buffer("regions", regions)
        self.norm2, self.shortcut2_if = BlockBN(dim), _q()
        self.fc1, self.fc1_if = nn.Linear(dim, 2 * dim), _q()
        self.fc2, self.fc2_if = nn.Linear(2 * dim, dim), _q()

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b = t.shape[0]
        return t.reshape(b, self.nw, self.n, self.heads, self.dim // self.heads).permute(
            0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, r, w, c = x.shape[0], self.res, self.window, self.dim
        shortcut = x
        h = self.shortcut1_if(self.norm1(x)).view(b, r, r, c)
        if self.shift > 0:
            h = torch.roll(h, shifts=[-self.shift, -self.shift], dims=[1, 2])
        h = h.view(b, r // w, w, r // w, w, c).permute(0, 1, 3, 2, 4, 5)
        h = h.reshape(b, self.nw, self.n, c)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q = self.q_if(self._heads(q))
        k = self.k_if(self._heads(k))
        v = self.v_if(self._heads(v))
        attn = self.attn_if((q @ k.transpose(-2, -1)) * self.scale)
        bias = self.rpb_table[self.rel_index.view(-1)].view(self.n, self.n, self.heads)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if self.shift > 0:
            m = self.regions.unsqueeze(1) - self.regions.unsqueeze(2)
            m = m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)
            attn = attn + m.unsqueeze(1)
        attn = torch.softmax(attn, dim=-1)
        y = (attn @ v).permute(0, 1, 3, 2, 4).reshape(b, self.nw, self.n, c)
        y = self.proj_if(self.proj(self.attn_v_if(y)))
        y = y.view(b, r // w, r // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, r, r, c)
        if self.shift > 0:
            y = torch.roll(y, shifts=[self.shift, self.shift], dims=[1, 2])
        x = shortcut + y.reshape(b, r * r, c)
        x = self.norm2(x)
        return x + self.fc2_if(self.fc2(self.fc1_if(self.fc1(self.shortcut2_if(x)))))


class PatchMergingBySlicing(nn.Module):
    def __init__(self, dim: int, res: int) -> None:
        super().__init__()
        self.dim, self.res = dim, res
        self.norm = BlockBN(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.reduction_if = _q()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, r, c = x.shape[0], self.res, self.dim
        x = x.view(b, r, r, c)
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = torch.cat([x0, x1, x2, x3], -1).view(b, -1, 4 * c)
        return self.reduction_if(self.reduction(self.norm(x)))


class SwinMST(nn.Module):
    """Patch embed (conv, BN, QCFS) -> W-MSA block -> SW-MSA block -> patch merging
    -> block -> LayerNorm -> mean over tokens -> Linear."""

    def __init__(self, size: int = 16, patch: int = 2, dim: int = 8, heads: int = 2,
                 window: int = 4, classes: int = 10) -> None:
        super().__init__()
        res = size // patch
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.patch_norm = BlockBN(dim)
        self.patch_if = _q()
        blocks: List[nn.Module] = [SwinMSTBlock(dim, res, heads, window, 0),
                                   SwinMSTBlock(dim, res, heads, window, window // 2),
                                   PatchMergingBySlicing(dim, res),
                                   SwinMSTBlock(2 * dim, res // 2, heads, window, window // 2)]
        self.layers = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(2 * dim)
        # mean over tokens as a product with a constant averaging column (TorchScript's
        # aten::mean is issue #11's handler; fx reads x.mean(dim=1) already)
        self.register_buffer("token_mean", torch.full((res * res // 4, 1), 4.0 / (res * res)))
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = self.patch_if(self.patch_norm(x))
        x = self.layers(x)
        pooled = self.norm(x).transpose(1, 2) @ self.token_mean
        return self.head(pooled.flatten(1))


def randomized(seed: int = 0) -> SwinMST:
    """A SwinMST with random weights, BN statistics and QCFS λ (eval mode)."""
    torch.manual_seed(seed)
    return randomize_(SwinMST(), seed)


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and affine parameters and QCFS λ in ``model``; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            if isinstance(m, QCFS):
                m.threshold.fill_(float(torch.rand(1, generator=gen)) + 0.5)
    return model.eval()
