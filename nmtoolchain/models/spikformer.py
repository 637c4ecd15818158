"""Spikformer (Zhou et al., ICLR 2023) and AutoST's pre-activation PLIF variant.

Specification: ``seeds.md`` §1.3 (Spikformer) and §3.2 (AutoST). The modules
take (batch, time, C, H, W) images (the static image repeated T times: direct
encoding) and return (batch, time, classes) logits; the classifier's output is
their mean over time (:class:`TimeMean` wraps a model for training). Every
layer acts once per step, so the torch loader gives one IR node per layer.

Vanilla (``variant='spikformer'``)
  SPS: Conv3x3(C → D/8) BN LIF; Conv3x3(D/8 → D/4) BN LIF; Conv3x3(D/4 → D/2)
  BN LIF [MaxPool]; Conv3x3(D/2 → D) BN LIF [MaxPool]; relative position
  embedding RPE = Conv3x3(D → D) BN LIF; tokens = RPE(x) + x. No conv bias.
  Block: x = x + SSA(x); x = x + MLP(x).
  SSA: Q, K, V = LIF(BN(Linear(x))); A = Q·Kᵀ·scale (no softmax); Y = A·V;
  LIF(v_th 0.5); Linear proj → BN → LIF. MLP: Linear → BN → LIF, twice.
  Head: mean over tokens → Linear (then the mean over time outside).
  LIF: τ = 2, decay-input, hard reset to 0, v_th 1, Heaviside(0) = 1.
AutoST (``variant='autost'``)
  PLIF neurons (learnable τ, init 2); pre-activation blocks:
  SSA(x) = BN(proj(PLIF_0.5(Q·Kᵀ·scale·V))) with Q, K, V = PLIF(BN(Linear(PLIF(x))));
  MLP(x) = BN(fc2(PLIF(BN(fc1(PLIF(x)))))); SPS without a neuron after conv3
  and after the RPE conv. Per-block heads and MLP ratios.

``pools`` says after which of the four SPS convs a MaxPool(3, s2, p1) halves
the map: (F, F, T, T) gives 32x32 → 8x8 (64 tokens) as the CIFAR model and
8x8 → 4x4 needs one, e.g. (F, F, F, T) (16 tokens, the digits model).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import torch
from torch import nn

from nmtoolchain.errors import BadInputError
from nmtoolchain.nn import LIFNeuron, PLIFNeuron, StepWise, TokenBatchNorm

SPIKFORMER_DEFAULTS: Dict[str, Any] = {
    "variant": "spikformer",  # "spikformer" (vanilla) or "autost" (pre-activation PLIF)
    "in_channels": 3,
    "input_size": 32,  # input height = width
    "embed_dim": 384,  # D (divisible by 8 and by every head count)
    "depth": 4,  # encoder blocks
    "heads": 12,  # int, or one per block (AutoST)
    "mlp_ratio": 4,  # int, or one per block (AutoST)
    "pools": [False, False, True, True],  # MaxPool after SPS conv 0..3
    "num_classes": 10,
    "scale": 0.125,  # attention scale s (Spikformer CIFAR/ImageNet)
    "tau": 2.0,  # LIF τ (PLIF initial τ)
    "attn_threshold": 0.5,  # threshold of the neuron after A·V
    "qkv_bias": True,  # Linear bias of Q, K, V (Spikformer CIFAR code: True)
}

VARIANTS = ("spikformer", "autost")


def _resolve(config: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(config) - set(SPIKFORMER_DEFAULTS))
    if unknown:
        raise BadInputError(f"architecture 'spikformer': unknown config key(s) {unknown}; "
                            f"known: {sorted(SPIKFORMER_DEFAULTS)}")
    cfg = dict(SPIKFORMER_DEFAULTS)
    cfg.update(config)
    if cfg["variant"] not in VARIANTS:
        raise BadInputError(f"architecture 'spikformer': variant must be one of {VARIANTS}, "
                            f"got {cfg['variant']!r}")
    d, depth = int(cfg["embed_dim"]), int(cfg["depth"])
    if d < 8 or d % 8:
        raise BadInputError(f"architecture 'spikformer': embed_dim {d} must be a positive "
                            "multiple of 8 (the SPS widths are D/8, D/4, D/2)")
    cfg["heads"] = _per_block(cfg["heads"], depth, "heads")
    cfg["mlp_ratio"] = _per_block(cfg["mlp_ratio"], depth, "mlp_ratio")
    for h in cfg["heads"]:
        if h < 1 or d % h:
            raise BadInputError(f"architecture 'spikformer': embed_dim {d} is not divisible by "
                                f"heads {h}")
    pools = [bool(p) for p in cfg["pools"]]
    if len(pools) != 4:
        raise BadInputError(f"architecture 'spikformer': pools needs 4 flags, got {pools}")
    size = int(cfg["input_size"])
    for p in pools:
        size = (size - 1) // 2 + 1 if p else size
    if size < 1:
        raise BadInputError("architecture 'spikformer': input too small for the pools")
    cfg["pools"] = pools
    return cfg


def _per_block(value: Any, depth: int, name: str) -> List[int]:
    if isinstance(value, (int, float)):
        return [int(value)] * depth
    vals = [int(v) for v in value]
    if len(vals) != depth:
        raise BadInputError(f"architecture 'spikformer': {name} lists {len(vals)} values for "
                            f"depth {depth}")
    return vals


def _neuron(cfg: Mapping[str, Any], v_threshold: float = 1.0) -> nn.Module:
    if cfg["variant"] == "autost":
        return PLIFNeuron(init_tau=float(cfg["tau"]), v_threshold=v_threshold)
    return LIFNeuron(tau=float(cfg["tau"]), v_threshold=v_threshold, reset="to_reset",
                     v_reset=0.0, compare=">=")


class SPS(nn.Module):
    """Spiking patch splitting: four conv stages and the relative position embedding."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        d = int(cfg["embed_dim"])
        widths = [int(cfg["in_channels"]), d // 8, d // 4, d // 2, d]
        pre_act = cfg["variant"] == "autost"
        stages: List[nn.Module] = []
        for i in range(4):
            layers: List[nn.Module] = [
                StepWise(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False)),
                StepWise(nn.BatchNorm2d(widths[i + 1]))]
            if not (pre_act and i == 3):  # AutoST: no neuron after conv3
                layers.append(_neuron(cfg))
            if cfg["pools"][i]:
                layers.append(StepWise(nn.MaxPool2d(3, stride=2, padding=1)))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        rpe: List[nn.Module] = [StepWise(nn.Conv2d(d, d, 3, padding=1, bias=False)),
                                StepWise(nn.BatchNorm2d(d))]
        if not pre_act:
            rpe.append(_neuron(cfg))
        self.rpe = nn.Sequential(*rpe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)
        x = self.rpe(x) + x  # (B, T, D, H', W')
        return x.flatten(3).transpose(-1, -2)  # (B, T, N, D) tokens


class SSA(nn.Module):
    """Spiking self-attention without softmax (module docstring)."""

    def __init__(self, dim: int, heads: int, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.heads, self.dh, self.scale = heads, dim // heads, float(cfg["scale"])
        self.pre_act = cfg["variant"] == "autost"
        if self.pre_act:
            self.in_lif = _neuron(cfg)
        bias = bool(cfg["qkv_bias"])
        self.q_linear, self.q_bn, self.q_lif = nn.Linear(dim, dim, bias), TokenBatchNorm(dim), \
            _neuron(cfg)
        self.k_linear, self.k_bn, self.k_lif = nn.Linear(dim, dim, bias), TokenBatchNorm(dim), \
            _neuron(cfg)
        self.v_linear, self.v_bn, self.v_lif = nn.Linear(dim, dim, bias), TokenBatchNorm(dim), \
            _neuron(cfg)
        self.attn_lif = _neuron(cfg, float(cfg["attn_threshold"]))
        self.proj_linear, self.proj_bn = nn.Linear(dim, dim), TokenBatchNorm(dim)
        if not self.pre_act:
            self.proj_lif = _neuron(cfg)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        # (B, T, N, D) -> (B, T, heads, N, dh)
        return t.reshape(t.shape[0], t.shape[1], t.shape[2], self.heads, self.dh).permute(
            0, 1, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_act:
            x = self.in_lif(x)
        q = self._split(self.q_lif(self.q_bn(self.q_linear(x))))
        k = self._split(self.k_lif(self.k_bn(self.k_linear(x))))
        v = self._split(self.v_lif(self.v_bn(self.v_linear(x))))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        y = (attn @ v).permute(0, 1, 3, 2, 4)  # (B, T, N, heads, dh)
        y = self.attn_lif(y.reshape(y.shape[0], y.shape[1], y.shape[2], self.heads * self.dh))
        y = self.proj_bn(self.proj_linear(y))
        return y if self.pre_act else self.proj_lif(y)


class MLP(nn.Module):
    """Linear → BN → LIF twice (vanilla); LIF → Linear → BN twice (AutoST)."""

    def __init__(self, dim: int, ratio: int, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        hidden = int(ratio) * dim
        self.pre_act = cfg["variant"] == "autost"
        self.fc1_lif = _neuron(cfg)
        self.fc1_linear, self.fc1_bn = nn.Linear(dim, hidden), TokenBatchNorm(hidden)
        self.fc2_lif = _neuron(cfg)
        self.fc2_linear, self.fc2_bn = nn.Linear(hidden, dim), TokenBatchNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_act:
            h = self.fc1_bn(self.fc1_linear(self.fc1_lif(x)))
            return self.fc2_bn(self.fc2_linear(self.fc2_lif(h)))
        h = self.fc1_lif(self.fc1_bn(self.fc1_linear(x)))
        return self.fc2_lif(self.fc2_bn(self.fc2_linear(h)))


class Block(nn.Module):
    """x = x + SSA(x); x = x + MLP(x)."""

    def __init__(self, dim: int, heads: int, ratio: int, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.attn = SSA(dim, heads, cfg)
        self.mlp = MLP(dim, ratio, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    """Spikformer or AutoST's variant from a config (see :data:`SPIKFORMER_DEFAULTS`)."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = _resolve(config)
        self.config = cfg
        d = int(cfg["embed_dim"])
        self.patch_embed = SPS(cfg)
        self.blocks = nn.Sequential(*[Block(d, h, r, cfg)
                                      for h, r in zip(cfg["heads"], cfg["mlp_ratio"])])
        self.head = nn.Linear(d, int(cfg["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch_embed(x))
        return self.head(x.mean(2))  # mean over tokens; (B, T, classes)

    def reset_states(self) -> None:
        """Forget every neuron's membrane (call between independent batches)."""
        for m in self.modules():
            if isinstance(m, LIFNeuron):
                m.reset_states()


class TimeMean(nn.Module):
    """Training wrapper: repeat a (B, C, H, W) image ``steps`` times (direct
    encoding), run ``model``, average the logits over time, reset the neurons."""

    def __init__(self, model: Spikformer, steps: int) -> None:
        super().__init__()
        self.model, self.steps = model, int(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.model.reset_states()
        out = self.model(x.unsqueeze(1).expand(-1, self.steps, *x.shape[1:]))
        return out.mean(1)


def build_spikformer(config: Mapping[str, Any]) -> nn.Module:
    """The registry builder: :class:`Spikformer` from a config dict."""
    return Spikformer(**dict(config))


def spikformer_4_384_cifar(num_classes: int = 10) -> Dict[str, Any]:
    """The config of Spikformer-4-384 for 32x32 RGB (the paper's CIFAR model)."""
    return {"embed_dim": 384, "depth": 4, "heads": 12, "mlp_ratio": 4,
            "num_classes": num_classes}


def spikformer_digits(variant: str = "spikformer") -> Dict[str, Any]:
    """A small config for 8x8 digits: 16 tokens, D = 32, one block, 2 heads, MLP ratio 2."""
    return {"variant": variant, "in_channels": 1, "input_size": 8, "embed_dim": 32,
            "depth": 1, "heads": 2, "mlp_ratio": 2, "pools": [False, False, False, True],
            "num_classes": 10}


__all__ = ["SPIKFORMER_DEFAULTS", "Spikformer", "SPS", "SSA", "MLP", "Block", "TimeMean",
           "build_spikformer", "spikformer_4_384_cifar", "spikformer_digits"]
