"""Test helper: a Spikformer written the way the published CIFAR code is
structured (ZK-Zhou/spikformer ``cifar10/model.py``, seeds.md §1.3), in our
own words, as an ANN twin: ReLU where the published code has a multi-step LIF,
and no time axis (an ANN has no time). Module names follow the published
ones (``proj_conv``/``proj_bn``/``proj_lif``..., ``q_linear``/``q_bn``/``q_lif``),
BatchNorm1d acts on transposed tokens, attention is ``@`` without softmax
scaled by 0.125, the token mean is a ``mean`` over the token axis. Used to
check that files saved from such code (TorchScript, ONNX) load into the IR.
"""
from __future__ import annotations

import torch
from torch import nn


class PublishedSPS(nn.Module):
    def __init__(self, in_channels: int, dim: int, pools: tuple) -> None:
        super().__init__()
        widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        suffix = ["", "1", "2", "3"]
        self.pools = pools
        for i, s in enumerate(suffix):
            setattr(self, f"proj_conv{s}", nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1,
                                                     bias=False))
            setattr(self, f"proj_bn{s}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{s}", nn.ReLU())
            if pools[i]:
                setattr(self, f"maxpool{s}", nn.MaxPool2d(3, 2, 1))
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, s in enumerate(["", "1", "2", "3"]):
            x = getattr(self, f"proj_conv{s}")(x)
            x = getattr(self, f"proj_bn{s}")(x)
            x = getattr(self, f"proj_lif{s}")(x)
            if self.pools[i]:
                x = getattr(self, f"maxpool{s}")(x)
        x_feat = x
        x = self.rpe_lif(self.rpe_bn(self.rpe_conv(x)))
        x = x + x_feat
        return x.flatten(-2).transpose(-1, -2)  # (B, N, C)


class PublishedSSA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, 0.125
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_linear", nn.Linear(dim, dim))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{n}_lif", nn.ReLU())
        self.attn_lif = nn.ReLU()
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = nn.ReLU()

    def _qkv(self, x: torch.Tensor, n: str) -> torch.Tensor:
        b, t, c = x.shape
        y = getattr(self, f"{n}_linear")(x)
        y = getattr(self, f"{n}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
        y = getattr(self, f"{n}_lif")(y)
        return y.reshape(b, t, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._qkv(x, "q"), self._qkv(x, "k"), self._qkv(x, "v")
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn @ v
        x = self.attn_lif(x.transpose(1, 2).reshape(b, t, c))
        x = self.proj_bn(self.proj_linear(x).transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x)


class PublishedMLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1_linear, self.fc1_bn, self.fc1_lif = nn.Linear(dim, hidden), \
            nn.BatchNorm1d(hidden), nn.ReLU()
        self.fc2_linear, self.fc2_bn, self.fc2_lif = nn.Linear(hidden, dim), \
            nn.BatchNorm1d(dim), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1_linear(x)
        x = self.fc1_lif(self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2))
        x = self.fc2_linear(x)
        return self.fc2_lif(self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2))


class PublishedBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.attn = PublishedSSA(dim, heads)
        self.mlp = PublishedMLP(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class PublishedSpikformerANN(nn.Module):
    """The ANN twin: (B, C, H, W) images -> (B, classes)."""

    def __init__(self, in_channels: int = 3, dim: int = 384, depth: int = 4, heads: int = 12,
                 mlp_ratio: int = 4, num_classes: int = 10,
                 pools: tuple = (False, False, True, True)) -> None:
        super().__init__()
        self.patch_embed = PublishedSPS(in_channels, dim, pools)
        self.block = nn.ModuleList([PublishedBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return self.head(x.mean(1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, so a wrong BN axis shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()
