"""Test helper: the spiking Spikformer written the way the published code is
(ZK-Zhou/spikformer ``cifar10/model.py``, AutoST's repository; seeds.md §1.3),
in our own words and in plain torch, without spikingjelly.

Tensors are time-major, ``(T, B, ...)``: the image is repeated over time with
``x.unsqueeze(0).repeat(T, 1, 1, 1, 1)``; each layer works on
``x.flatten(0, 1)`` and reshapes back to ``(T, B, ...)``; every neuron is
spikingjelly's ``MultiStepLIFNode(tau=2.0, detach_reset=True)`` written as a
loop over dim 0 (decay_input, hard reset to 0, Heaviside ``v - v_th >= 0``;
threshold 1.0, 0.5 for the attention LIF); attention is ``q @ k.transpose``
scaled by 0.125 without softmax; BatchNorm1d acts on transposed tokens; the
token mean is ``x.flatten(3).mean(3)`` and the head reads ``x.mean(0)``, the
mean over time. Module names follow the published ones, so each LIF records
its spikes in ``.last_spikes`` for spike-for-spike tests.
"""
from __future__ import annotations

import torch
from torch import nn


class MultiStepLIF(nn.Module):
    """spikingjelly's multi-step LIF (torch backend) as a plain loop over time."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 detach_reset: bool = True) -> None:
        super().__init__()
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.detach_reset = detach_reset
        self.record = False
        self.last_spikes: torch.Tensor = torch.zeros(0)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v = torch.full_like(x_seq[0], self.v_reset)
        spikes = []
        for t in range(x_seq.shape[0]):
            h = v + (x_seq[t] - (v - self.v_reset)) / self.tau  # charge, decay_input
            spike = (h - self.v_threshold >= 0).to(x_seq.dtype)  # Heaviside
            s_reset = spike.detach() if self.detach_reset else spike
            v = h * (1.0 - s_reset) + self.v_reset * s_reset  # hard reset
            spikes.append(spike)
        out = torch.stack(spikes)
        if self.record:
            self.last_spikes = out.detach().clone()
        return out


class SPS(nn.Module):
    """Spiking patch splitting: 4 conv-BN-LIF stages, then the relative-position conv."""

    def __init__(self, in_channels: int, dim: int, pools: tuple) -> None:
        super().__init__()
        widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        self.pools = pools
        for i, s in enumerate(["", "1", "2", "3"]):
            setattr(self, f"proj_conv{s}", nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1,
                                                     bias=False))
            setattr(self, f"proj_bn{s}", nn.BatchNorm2d(widths[i + 1]))
            setattr(self, f"proj_lif{s}", MultiStepLIF(tau=2.0))
            if pools[i]:
                setattr(self, f"maxpool{s}", nn.MaxPool2d(3, 2, 1))
        self.rpe_conv = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        self.rpe_lif = MultiStepLIF(tau=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = x.flatten(0, 1)
        for i, s in enumerate(["", "1", "2", "3"]):
            x = getattr(self, f"proj_conv{s}")(x)
            x = getattr(self, f"proj_bn{s}")(x)
            x = x.reshape(T, B, -1, H, W).contiguous()
            x = getattr(self, f"proj_lif{s}")(x).flatten(0, 1).contiguous()
            if self.pools[i]:
                x = getattr(self, f"maxpool{s}")(x)
                H, W = H // 2, W // 2
        x_feat = x.reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_bn(self.rpe_conv(x)).reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_lif(x)
        x = x + x_feat
        return x  # (T, B, C, H, W)


class SSA(nn.Module):
    """Spiking self-attention: Q, K, V spikes, ``q @ k^T @ v`` scaled, no softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.scale = heads, 0.125
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_linear", nn.Linear(dim, dim))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{n}_lif", MultiStepLIF(tau=2.0))
        self.attn_lif = MultiStepLIF(tau=2.0, v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = MultiStepLIF(tau=2.0)

    def _heads(self, x_for_qkv: torch.Tensor, n: str, T: int, B: int) -> torch.Tensor:
        _, N, C = x_for_qkv.shape
        y = getattr(self, f"{n}_linear")(x_for_qkv)
        y = getattr(self, f"{n}_bn")(y.transpose(-1, -2)).transpose(-1, -2)
        y = getattr(self, f"{n}_lif")(y.reshape(T, B, N, C).contiguous())
        return y.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)
        q, k, v = (self._heads(x_for_qkv, n, T, B) for n in ("q", "k", "v"))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn @ v
        x = x.transpose(2, 3).reshape(T, B, N, C).contiguous()
        x = self.attn_lif(x).flatten(0, 1)
        x = self.proj_bn(self.proj_linear(x).transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x.reshape(T, B, N, C))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.c_hidden = hidden
        self.fc1_linear, self.fc1_bn = nn.Linear(dim, hidden), nn.BatchNorm1d(hidden)
        self.fc1_lif = MultiStepLIF(tau=2.0)
        self.fc2_linear, self.fc2_bn = nn.Linear(hidden, dim), nn.BatchNorm1d(dim)
        self.fc2_lif = MultiStepLIF(tau=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x = self.fc1_linear(x.flatten(0, 1))
        x = self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2)
        x = self.fc1_lif(x.reshape(T, B, N, self.c_hidden).contiguous())
        x = self.fc2_linear(x.flatten(0, 1))
        x = self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2)
        return self.fc2_lif(x.reshape(T, B, N, C).contiguous())


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.attn = SSA(dim, heads)
        self.mlp = MLP(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class PublishedSpikformerSNN(nn.Module):
    """(B, C, H, W) images -> (B, classes): repeated over ``T`` steps, time-major."""

    def __init__(self, in_channels: int = 3, dim: int = 384, depth: int = 4, heads: int = 12,
                 mlp_ratio: int = 4, num_classes: int = 10,
                 pools: tuple = (False, False, True, True), T: int = 4) -> None:
        super().__init__()
        self.T = T
        self.patch_embed = SPS(in_channels, dim, pools)
        self.block = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (T, B, C, H, W)
        x = x.flatten(3).transpose(-1, -2)  # (T, B, N, C)
        for blk in self.block:
            x = blk(x)
        return x.transpose(-1, -2).flatten(3).mean(3)  # token mean: (T, B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        return self.head(x.mean(0))


def lif_modules(model: nn.Module) -> dict:
    """The model's LIF modules by dotted name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiStepLIF)}


def randomize(model: nn.Module, seed: int = 0, gain: float = 2.0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, scaled so every LIF fires
    sometimes (a wrong axis or neuron constant then shows in the spikes)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.25)
            m.weight.data.copy_(torch.rand(n, generator=g) * gain + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.5 + 0.3)
    return model.eval()
