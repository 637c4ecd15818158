"""Multi-step wrappers: apply a per-step layer to (batch, time, ...) tensors.

nmtc's neurons work on (batch, time, ...) tensors; a convolution, a 2-D batch
norm or a max-pool does not accept the extra axis. :class:`StepWise` folds
time into the batch, runs the wrapped layer and unfolds again (spikingjelly's
``SeqToANNContainer`` idea); the loader translates it as the wrapped layer
itself, since an IR node already acts once per step. :class:`TokenBatchNorm`
is Spikformer's ``BatchNorm1d`` over the features of (…, tokens, features)
tokens (written as transpose → BN1d → transpose in the published code).
"""
import torch
from torch import nn


class StepWise(nn.Module):
    """``module`` applied to every step of a (batch, time, ...) tensor."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[1]
        y = self.module(x.flatten(0, 1))
        return y.reshape([b, t] + list(y.shape[1:]))


class TokenBatchNorm(nn.Module):
    """BatchNorm1d over the last axis (features) of (..., tokens, features) tensors."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = x.reshape([-1, shape[-2], shape[-1]]).transpose(1, 2)
        return self.bn(y).transpose(1, 2).reshape(shape)
