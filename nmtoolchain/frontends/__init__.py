"""Model loaders: turn a file (TorchScript, nmtc checkpoint, pickled module,
ONNX, NIR, lava-dl netx HDF5, nmtc IR) into an IR :class:`~nmtoolchain.ir.Graph`.

:func:`load_model` sniffs the format from the file's bytes (not only its
suffix), so a renamed file is still read correctly and a file of the wrong
format gets an error naming it. Each loader module imports its library lazily.

Every loader returns a graph whose shapes are inferred, with
``graph.metadata['source'] = {'path': ..., 'format': ...}``, and raises only
:class:`~nmtoolchain.errors.NmtcError` subclasses for bad input.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from nmtoolchain.errors import BadInputError, NmtcError
from nmtoolchain.ir import Graph

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
FORMATS = ("torchscript", "torch", "onnx", "nir", "netx", "nmir")


def detect_format(path: Union[str, Path]) -> str:
    """Name the format of ``path``: one of :data:`FORMATS`.

    Raises BadInputError for a missing, empty, unreadable or unknown file.
    """
    from nmtoolchain.fileio import require_regular_file

    path = require_regular_file(path, "model file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None
    if not head:
        raise BadInputError(f"{path}: file is empty")
    if head.startswith(HDF5_MAGIC):
        return _hdf5_kind(path)
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    if head[:1] == b"\x80":  # a legacy (non-zip) torch.save / raw pickle
        return "torch"
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(path):
        return "onnx"
    raise BadInputError(
        f"{path}: unrecognized model format (expected TorchScript, a torch checkpoint, "
        "ONNX, NIR, lava-dl netx .net or nmtc .nmir)")


def _hdf5_kind(path: Path) -> str:
    import h5py

    from nmtoolchain.fileio import probe_hdf5

    probe_hdf5(path)

    try:
        with h5py.File(path, "r") as f:
            if "layer" in f:
                return "netx"
            if "node" in f:
                return "nir"
            keys = list(f.keys())
    except OSError as e:
        raise BadInputError(f"{path}: truncated or corrupt HDF5 file ({e})") from None
    raise BadInputError(
        f"{path}: HDF5 file is neither NIR (no 'node' group) nor lava-dl netx "
        f"(no 'layer' group); top-level keys: {keys}")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BadInputError(f"{path}: truncated or corrupt archive ({e})") from None
    if "graph.json" in names:
        return "nmir"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "torch"
    raise BadInputError(f"{path}: zip archive is not a TorchScript, torch or nmtc IR file")


def _looks_like_onnx(path: Path) -> bool:
    # ONNX is a protobuf without magic bytes; a ModelProto begins with field 1
    # (ir_version, varint) -> tag byte 0x08.
    with open(path, "rb") as f:
        return f.read(1) == b"\x08"


def load_model(path: Union[str, Path], *, allow_pickle: bool = False,
               input_shape: Optional[Sequence[int]] = None,
               dt: Optional[float] = None, arch: Optional[str] = None,
               config: Optional[Mapping[str, Any]] = None) -> Graph:
    """Load any supported model file into an IR graph with inferred shapes.

    ``allow_pickle`` permits unpickling a fully pickled ``nn.Module`` (which
    runs code from the file). ``input_shape`` (per sample, e.g. ``(1, 8, 8)``)
    is needed for torch models that do not record it. ``dt`` (``--dt``): the
    simulation step a NIR file's continuous time constants assume (e.g. 1e-4
    for snnTorch); other formats count time in steps and accept only their own.
    ``arch``/``config`` (``--arch NAME --config JSON``): the nmtc architecture a
    torch ``state_dict`` file holds the weights of.
    """
    path = Path(path)
    fmt = detect_format(path)
    if (arch is not None or config is not None) and fmt != "torch":
        raise BadInputError(f"{path}: --arch/--config apply to a torch state_dict file; this "
                            f"is a {fmt} file, which describes its own network")
    if fmt == "nmir":
        from nmtoolchain.ir import load_graph

        graph = load_graph(path)
        try:
            graph.infer_shapes()
        except NmtcError as e:
            raise type(e)(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
        except (ValueError, TypeError, IndexError, OverflowError) as e:
            raise BadInputError(f"{path}: inconsistent graph ({type(e).__name__}: "
                                f"{' '.join(str(e).split())[:160]})") from None
    elif fmt == "onnx":
        from nmtoolchain.frontends.onnx_loader import load_onnx

        graph = load_onnx(path)
    elif fmt == "nir":
        from nmtoolchain.frontends.nir_loader import load_nir

        graph = load_nir(path, dt=dt)
    elif fmt == "netx":
        from nmtoolchain.frontends.netx_loader import load_netx

        graph = load_netx(path)
    else:  # torchscript or torch
        from nmtoolchain.frontends.torch_loader import load_torch_file

        graph = load_torch_file(path, allow_pickle=allow_pickle, input_shape=input_shape,
                                arch=arch, config=config)
    graph.metadata.setdefault("source", {"path": str(path), "format": fmt})
    if dt is not None and fmt != "nir":
        own = float(graph.metadata.get("dt", 1.0))
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or float(dt) != own:
            raise BadInputError(f"{path}: --dt {dt} does not apply: a {fmt} model counts time "
                                f"in steps (dt = {own:g}); --dt is the step of a NIR file's "
                                "time constants")
    graph.loaded_from = str(path)
    return graph


def parse_shape(text: str) -> Tuple[int, ...]:
    """Parse ``"1,8,8"`` (or ``1x8x8``) into a shape tuple; BadInputError otherwise."""
    parts = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise BadInputError(f"--input-shape {text!r}: expected positive integers like 1,8,8")
    return shape


__all__ = ["detect_format", "load_model", "parse_shape", "FORMATS"]
