"""Architecture registry and nmtc checkpoints.

A bare ``state_dict`` cannot be loaded without the code that defines the
network, and a pickled ``nn.Module`` runs code from the file when unpickled.
An nmtc checkpoint avoids both: it stores the *name* of an architecture in
:data:`ARCHITECTURES`, the config dict its builder takes, the per-sample input
shape and the weights, and is read with ``torch.load(weights_only=True)``::

    {'nmtc_checkpoint': 1, 'architecture': 'cnn', 'config': {...},
     'input_shape': [1, 8, 8], 'state_dict': {...}}

Builders take a config dict (missing keys take their defaults, unknown keys
are an error so a typo does not silently change the network).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from nmtoolchain.errors import BadInputError
from nmtoolchain.nn import QCFS
from nmtoolchain.models.mst import MINI_MST_DEFAULTS, build_mini_mst
from nmtoolchain.models.spikformer import SPIKFORMER_DEFAULTS, build_spikformer
from nmtoolchain.models.atsnn import ATSNN_DEFAULTS, build_atsnn

CHECKPOINT_VERSION = 1

MLP_DEFAULTS: Dict[str, Any] = {
    "sizes": [64, 32, 10],  # features: flattened input, hidden..., classes
    "activation": "relu",  # "relu" or "qcfs", between Linear layers
    "levels": 8,  # QCFS L
    "threshold": 2.0,  # QCFS initial λ
}

CNN_DEFAULTS: Dict[str, Any] = {
    "in_channels": 1,  # input channels C
    "input_size": 8,  # input height = width (8 for sklearn's digits)
    "channels": [8, 16],  # output channels of each conv stage
    "kernel_size": 3,  # square kernel, padding kernel_size // 2 keeps H, W
    "batch_norm": True,  # BatchNorm2d after each conv
    "activation": "relu",  # "relu" or "qcfs"
    "pool": "max",  # "max" or "avg": 2x2, stride 2, after each stage
    "num_classes": 10,  # outputs of the final Linear
    "levels": 8,  # QCFS L
    "threshold": 2.0,  # QCFS initial λ
}


def _resolve(name: str, defaults: Mapping[str, Any], config: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise BadInputError(
            f"architecture '{name}': unknown config key(s) {unknown}; known: {sorted(defaults)}")
    out = dict(defaults)
    out.update(config)
    if out["activation"] not in ("relu", "qcfs"):
        raise BadInputError(
            f"architecture '{name}': activation must be 'relu' or 'qcfs', "
            f"got {out['activation']!r}")
    return out


def _activation(cfg: Mapping[str, Any]) -> nn.Module:
    if cfg["activation"] == "qcfs":
        return QCFS(levels=int(cfg["levels"]), threshold=float(cfg["threshold"]))
    return nn.ReLU()


def build_mlp(config: Mapping[str, Any]) -> nn.Module:
    """Flatten → (Linear → activation)* → Linear, layer sizes from ``config['sizes']``."""
    cfg = _resolve("mlp", MLP_DEFAULTS, config)
    sizes = [int(s) for s in cfg["sizes"]]
    if len(sizes) < 2 or min(sizes) < 1:
        raise BadInputError(f"architecture 'mlp': sizes must list >= 2 positive ints, got {sizes}")
    layers: list = [nn.Flatten()]
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(_activation(cfg))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """``features``: per stage Conv2d → [BatchNorm2d] → activation → 2x2 pool;
    ``classifier``: Flatten → Linear."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        cfg = _resolve("cnn", CNN_DEFAULTS, config)
        if cfg["pool"] not in ("max", "avg"):
            raise BadInputError(
                f"architecture 'cnn': pool must be 'max' or 'avg', got {cfg['pool']!r}")
        k = int(cfg["kernel_size"])
        size = int(cfg["input_size"])
        c_in = int(cfg["in_channels"])
        layers: list = []
        for c_out in (int(c) for c in cfg["channels"]):
            layers.append(nn.Conv2d(c_in, c_out, k, padding=k // 2))
            if cfg["batch_norm"]:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_activation(cfg))
            layers.append(nn.MaxPool2d(2) if cfg["pool"] == "max" else nn.AvgPool2d(2))
            c_in, size = c_out, size // 2
        if size < 1:
            raise BadInputError(
                f"architecture 'cnn': {len(cfg['channels'])} pooling stages shrink an input of "
                f"size {cfg['input_size']} to nothing")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in * size * size,
                                                                int(cfg["num_classes"])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_cnn(config: Mapping[str, Any]) -> nn.Module:
    """A small digits CNN (see :data:`CNN_DEFAULTS` for the config keys)."""
    return DigitsCNN(config)


#: architecture name -> builder(config dict) -> nn.Module
ARCHITECTURES: Dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "mini_mst": build_mini_mst,
    "spikformer": build_spikformer,  # vanilla Spikformer and AutoST's variant (config 'variant')
    "atsnn": build_atsnn,  # Spikformer with AT-SNN token halting and merging
}


#: a checkpoint config may not describe a network with more parameters than this
#: (float32: 400 MB), so a mistyped size cannot exhaust memory while building
MAX_CONFIG_PARAMETERS = 100_000_000
_DEFAULTS_OF = {"mlp": MLP_DEFAULTS, "cnn": CNN_DEFAULTS, "mini_mst": MINI_MST_DEFAULTS,
                "spikformer": SPIKFORMER_DEFAULTS, "atsnn": ATSNN_DEFAULTS}
#: config keys that take one positive integer or one per block (AutoST's per-block search)
_INT_OR_LIST = ("heads", "mlp_ratio")
#: numeric config keys that may be 0 (all other ints must be >= 1)
_MAY_BE_ZERO = ("mask_p", "mlp_mask_p", "depth", "merge_r", "merge_block")


def _check_value(name: str, key: str, value: Any, default: Any) -> None:
    def bad(expected: str) -> BadInputError:
        return BadInputError(f"architecture '{name}': config '{key}' is {value!r}; "
                             f"expected {expected}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    low = 0 if key in _MAY_BE_ZERO else 1
    if key in _INT_OR_LIST:
        if not (is_int(value) and value >= 1) and not (
                isinstance(value, list) and value and all(is_int(v) and v >= 1 for v in value)):
            raise bad("a positive integer or a list of them (one per block)")
        return
    if isinstance(default, list) and default and all(isinstance(v, bool) for v in default):
        if not isinstance(value, list) or not all(isinstance(v, bool) for v in value):
            raise bad("a list of true/false flags")
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif is_int(default):
        if not is_int(value) or value < low:
            raise bad(f"an integer >= {low}")
    elif isinstance(default, float):
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not np.isfinite(value) or value < 0):
            raise bad("a finite number >= 0")
        if key == "threshold" and value <= 0:
            raise bad("a positive number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
    elif isinstance(default, list):
        if not isinstance(value, list) or not all(is_int(v) and v >= 1 for v in value):
            raise bad("a list of positive integers")


def _estimated_parameters(name: str, cfg: Mapping[str, Any]) -> int:
    """An upper estimate of the network's weights, from its config alone."""
    if name == "mlp":
        sizes = list(cfg["sizes"])
        return sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    if name == "cnn":
        k, c_in, total = cfg["kernel_size"], cfg["in_channels"], 0
        for c in cfg["channels"]:
            total += c_in * c * k * k + 4 * c
            c_in = c
        return total + c_in * cfg["input_size"] ** 2 * cfg["num_classes"]
    if name in ("spikformer", "atsnn"):
        d, depth = cfg["embed_dim"], cfg["depth"]
        ratios = cfg["mlp_ratio"] if isinstance(cfg["mlp_ratio"], list) else [cfg["mlp_ratio"]] * depth
        sps = 9 * (cfg["in_channels"] * d // 8 + d * d // 32 + d * d // 8 + d * d // 2 + d * d)
        return sps + sum((4 + 2 * r) * d * d for r in ratios) + d * cfg["num_classes"]
    c = cfg["dim"]
    blocks = cfg["depth"] + (1 if cfg["merge"] else 0)
    return (cfg["in_channels"] * c * cfg["patch"] ** 2
            + blocks * (4 + 2 * cfg["mlp_ratio"]) * (2 * c) ** 2
            + 2 * c * cfg["num_classes"] + (cfg["input_size"] // max(cfg["patch"], 1)) ** 2 * c)


def validate_config(name: Any, config: Any) -> Dict[str, Any]:
    """Check a checkpoint's architecture name and config before building anything.

    Every value must have its default's type and range; the network the config
    describes must stay under :data:`MAX_CONFIG_PARAMETERS` weights (the
    estimate is in the message). Returns the config with defaults filled in.
    """
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise BadInputError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    if not isinstance(config, dict):
        raise BadInputError(f"architecture '{name}': config is a {type(config).__name__}, "
                            "expected a dict of settings")
    defaults = _DEFAULTS_OF[name]
    unknown = sorted(map(str, set(config) - set(defaults)))
    if unknown:
        raise BadInputError(
            f"architecture '{name}': unknown config key(s) {unknown}; known: {sorted(defaults)}")
    for key, value in config.items():
        _check_value(name, key, value, defaults[key])
    cfg = {**defaults, **config}
    estimate = _estimated_parameters(name, cfg)
    if estimate > MAX_CONFIG_PARAMETERS:
        raise BadInputError(
            f"architecture '{name}': this config describes about {estimate:.3g} weights "
            f"({estimate * 4 / 2**30:.1f} GiB as float32), over the limit of "
            f"{MAX_CONFIG_PARAMETERS:.0e}")
    return cfg


def build_model(name: str, config: Mapping[str, Any]) -> nn.Module:
    """Build architecture ``name`` from ``config``; BadInputError for an unknown name."""
    if name not in ARCHITECTURES:
        raise BadInputError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](dict(config))


def save_checkpoint(model_name: str, config: Mapping[str, Any], module: nn.Module,
                    path: Union[str, Path], input_shape: Sequence[int]) -> Path:
    """Write an nmtc checkpoint of ``module`` (built as ``model_name`` from ``config``).

    Checks first that the weights load into a freshly built model, so a
    checkpoint that exists can be loaded. The file appears atomically
    (written to a temporary file in the same folder, then renamed).
    """
    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    fresh = build_model(model_name, config)
    try:
        fresh.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise BadInputError(
            f"{path}: the module's weights do not fit architecture '{model_name}' with this "
            f"config ({' '.join(l.strip() for l in first[:3])})") from None
    shape = [int(s) for s in input_shape]
    if not shape or min(shape) < 1:
        raise BadInputError(f"{path}: input_shape must be positive ints, got {list(input_shape)}")
    payload = {
        "nmtc_checkpoint": CHECKPOINT_VERSION,
        "architecture": model_name,
        "config": dict(config),
        "input_shape": shape,
        "state_dict": state,
    }
    from nmtoolchain.fileio import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return path


def is_checkpoint(obj: Any) -> bool:
    """True for a dict written by :func:`save_checkpoint`."""
    return isinstance(obj, dict) and "nmtc_checkpoint" in obj


def module_from_checkpoint(ckpt: Mapping[str, Any],
                           origin: str) -> Tuple[nn.Module, Tuple[int, ...]]:
    """Rebuild the module and its per-sample input shape from a loaded checkpoint dict.

    ``origin`` (the file name) starts every error message.
    """
    version = ckpt.get("nmtc_checkpoint")
    if version != CHECKPOINT_VERSION:
        raise BadInputError(
            f"{origin}: nmtc checkpoint version {version!r} is not supported (expected "
            f"{CHECKPOINT_VERSION})")
    missing = [k for k in ("architecture", "config", "input_shape", "state_dict") if k not in ckpt]
    if missing:
        raise BadInputError(f"{origin}: nmtc checkpoint lacks field(s) {missing}")
    name = ckpt["architecture"]
    raw_shape = ckpt["input_shape"]
    if (not isinstance(raw_shape, (list, tuple)) or not raw_shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s < 2**20
                       for s in raw_shape)):
        raise BadInputError(
            f"{origin}: input_shape {raw_shape!r} is not a list of positive ints")
    shape = tuple(int(s) for s in raw_shape)
    state = ckpt["state_dict"]
    if not isinstance(state, dict):
        raise BadInputError(f"{origin}: state_dict is a {type(state).__name__}, expected a dict "
                            "of tensors")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise BadInputError(f"{origin}: state_dict['{key}'] is a {type(value).__name__}, "
                                "not a tensor")
        if value.is_complex():
            raise BadInputError(f"{origin}: state_dict['{key}'] is complex ({value.dtype}); "
                                "weights must be real")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise BadInputError(f"{origin}: state_dict['{key}'] holds NaN or Inf values")
    try:
        validate_config(name, ckpt["config"])
        module = build_model(name, ckpt["config"])
    except BadInputError as e:
        raise BadInputError(f"{origin}: {e}") from None
    except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as e:
        raise BadInputError(f"{origin}: config cannot build architecture '{name}' "
                            f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = " ".join(l.strip() for l in str(e).strip().splitlines()[:3])
        raise BadInputError(
            f"{origin}: weights do not fit architecture '{name}' ({first})") from None
    for key, value in state.items():
        if not value.is_floating_point() and key.endswith(("weight", "bias")):
            raise BadInputError(f"{origin}: state_dict['{key}'] has dtype {value.dtype}; "
                                "weights must be floating point")
    module.eval()
    return module, shape


def default_input_shape(name: str, config: Mapping[str, Any]) -> Tuple[int, ...]:
    """The per-sample input shape architecture ``name`` with ``config`` takes:
    (sizes[0],) for 'mlp', (in_channels, input_size, input_size) for the others."""
    cfg = validate_config(name, dict(config))
    if name == "mlp":
        return (int(cfg["sizes"][0]),)
    return (int(cfg["in_channels"]), int(cfg["input_size"]), int(cfg["input_size"]))


def checkpoint_from_state_dict(state: Mapping[str, Any], name: str, config: Mapping[str, Any],
                               input_shape: Any = None) -> Dict[str, Any]:
    """An nmtc checkpoint dict for a bare ``state_dict`` of architecture ``name``
    built from ``config`` (``--arch NAME --config JSON``); the input shape
    defaults to :func:`default_input_shape`. Read with :func:`module_from_checkpoint`,
    which checks the config and that the weights fit."""
    shape = list(input_shape) if input_shape is not None else \
        list(default_input_shape(name, config))
    return {"nmtc_checkpoint": CHECKPOINT_VERSION, "architecture": name,
            "config": dict(config), "input_shape": shape, "state_dict": dict(state)}


def load_checkpoint(path: Union[str, Path]) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load an nmtc checkpoint (safely, ``weights_only=True``): (module in eval mode, metadata)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, OSError
        raise BadInputError(f"{path}: cannot read as a torch checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'truncated'})") from None
    if not is_checkpoint(ckpt):
        raise BadInputError(f"{path}: not an nmtc checkpoint (no 'nmtc_checkpoint' field)")
    module, shape = module_from_checkpoint(ckpt, str(path))
    meta = {k: ckpt[k] for k in ("architecture", "config")}
    meta["input_shape"] = list(shape)
    return module, meta


__all__ = ["ARCHITECTURES", "CNN_DEFAULTS", "MLP_DEFAULTS", "DigitsCNN", "build_cnn",
           "build_mlp", "build_model", "save_checkpoint", "load_checkpoint",
           "module_from_checkpoint", "is_checkpoint", "CHECKPOINT_VERSION", "validate_config",
           "MAX_CONFIG_PARAMETERS", "default_input_shape", "checkpoint_from_state_dict"]
