"""Test helper: keyword arguments that pick torch's TorchScript-based ONNX exporter.

torch >= 2.9 exports with the dynamo exporter by default. Tests that read the
TorchScript-based exporter's graphs (scope names, the time-major Reshape/Gather
patterns of published spiking code) ask for it explicitly where torch has both;
tests/test_onnx_dynamo.py covers the dynamo exporter's files."""
from __future__ import annotations

import inspect
from typing import Any, Dict

import torch


def torchscript_exporter() -> Dict[str, Any]:
    """``{"dynamo": False}`` where ``torch.onnx.export`` has the switch, else ``{}``."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters \
        else {}
