"""Torch front end: TorchScript archives, nmtc checkpoints and (with consent)
pickled modules into an IR :class:`~nmtoolchain.ir.Graph`.

This module reads files and decides how to translate them; the walkers live
apart and share one builder (:mod:`~nmtoolchain.frontends.torch_builder`) and
the leaf registry (:mod:`~nmtoolchain.frontends.torch_leaves`):

* :func:`graph_from_module` (:mod:`~nmtoolchain.frontends.torch_fx`) traces a
  Python ``nn.Module`` with torch.fx, treating registered leaves as opaque;
* :func:`graph_from_torchscript` (:mod:`~nmtoolchain.frontends.torchscript`)
  walks a TorchScript graph without inlining.

Both interpret the model abstractly: a tensor is an IR node with a per-sample
shape, shape arithmetic (``x.shape``, ``x.size(0)``) is evaluated with the
batch (and time) size kept symbolic, so a reshape that moves the batch axis
is caught and named. Only :class:`~nmtoolchain.errors.NmtcError` subclasses
escape for bad input; every message is one line naming the file and the
module or op at fault. This module never unpickles without ``allow_pickle``.
"""
from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

from nmtoolchain.errors import BadInputError, PickleRefusedError, UnsupportedOpError
from nmtoolchain.ir import Graph
from nmtoolchain.frontends.archive_safety import pickle_globals, refuse_code_without_consent
from nmtoolchain.frontends.torch_builder import EXTRA_FILE, _first_line
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.frontends.torchscript import graph_from_torchscript, save_torchscript


# ======================================================================
# files
def _is_torchscript_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _shape_from_extra(raw: Any, path: Path) -> Optional[Tuple[int, ...]]:
    if not raw:
        return None
    try:
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        return tuple(int(s) for s in data["input_shape"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: {EXTRA_FILE} in the archive is malformed ({e})") from None


def _refused_global(e: BaseException) -> bool:
    """weights_only loading failed because the pickle names a class or function."""
    text = str(e)
    return "Unsupported class" in text or "Unsupported global" in text


def _newer_protocol(e: BaseException) -> bool:
    """weights_only loading failed on an opcode of pickle protocol 4 or 5 (FRAME,
    SHORT_BINUNICODE, ...), which torch's safe unpickler does not read: the file
    may well be intact, only the full unpickler (code from the file) can read it."""
    return "Unsupported operand" in str(e)


#: where the README says how to save a model nmtc reads
SAVING_HINT = "README: 'Saving a model for nmtc'"
#: keys a training loop's checkpoint dict commonly keeps its state dict under
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def _main_classes(path: Path) -> List[str]:
    """Classes a pickle names in ``__main__`` (the script that saved it), read
    without unpickling; such a class cannot be imported by any other program."""
    data = b""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member is not None else b""
        else:
            data = path.read_bytes()
    except (zipfile.BadZipFile, OSError, EOFError, KeyError):
        return []
    return sorted({g.split(" ", 1)[1] for g in pickle_globals(data)
                   if g.startswith("__main__ ")})


def _refuse_main_pickle(path: Path, classes: Sequence[str]) -> None:
    raise BadInputError(
        f"{path}: a pickled module whose class ({', '.join(classes)}) lives in the script that "
        "saved it (__main__), which no other program can import; save it as TorchScript "
        "(with its input shape), ONNX, or its state_dict (with --arch NAME --config JSON for "
        f"nmtc's architectures) ({SAVING_HINT})")


def _bare_state_dict(obj: Any) -> Optional[Mapping[str, Any]]:
    """``obj`` itself when it is a dict of tensors, or the dict of tensors a training
    checkpoint keeps under one of :data:`STATE_DICT_KEYS`; else None."""
    def tensors(d: Any) -> bool:
        return isinstance(d, dict) and bool(d) and all(hasattr(v, "shape") for v in d.values())

    if tensors(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if tensors(obj.get(key)):
                return obj[key]
    return None


def load_torch_file(path: Union[str, Path], *, allow_pickle: bool = False,
                    input_shape: Optional[Sequence[int]] = None,
                    arch: Optional[str] = None,
                    config: Optional[Mapping[str, Any]] = None) -> Graph:
    """Load a TorchScript archive, an nmtc checkpoint, a ``state_dict`` of one of
    nmtc's architectures (``arch`` and ``config``, :mod:`nmtoolchain.models`), or
    (only with ``allow_pickle``) a pickled ``nn.Module`` into an IR graph.

    ``input_shape`` (per sample) overrides the shape recorded in the file; it
    is required for a pickled module and for TorchScript saved without
    :func:`save_torchscript` (a state dict's defaults to the architecture's).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: file is empty")
    if arch is None and config is not None:
        raise BadInputError(f"{path}: --config describes an architecture; pass --arch NAME too")
    if _is_torchscript_archive(path):
        if arch is not None:
            raise BadInputError(f"{path}: a TorchScript archive holds its own code; --arch "
                                "applies to a state_dict file")
        # torch.jit.load runs the archive's __setstate__ code: read it as data first
        refuse_code_without_consent(path, allow_pickle)
        extra = {EXTRA_FILE: ""}
        try:
            scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as e:
            raise BadInputError(
                f"{path}: truncated or corrupt TorchScript archive ({_first_line(e)})") from None
        shape = input_shape if input_shape is not None else _shape_from_extra(extra[EXTRA_FILE],
                                                                               path)
        graph = graph_from_torchscript(scripted, shape, str(path))
        graph.metadata["source"] = {"path": str(path), "format": "torchscript"}
        return graph

    fmt = "checkpoint"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        newer = _newer_protocol(e)
        if not (newer or _refused_global(e)):
            raise BadInputError(
                f"{path}: truncated or corrupt torch file ({_first_line(e)})") from None
        main = _main_classes(path)
        if main:  # consent would not help: the class cannot be imported
            _refuse_main_pickle(path, main)
        if not allow_pickle:
            what = ("is pickled with protocol 4 or 5, which only the full unpickler reads"
                    if newer else "holds a pickled Python object")
            raise PickleRefusedError(
                f"{path}: {what}; unpickling runs code from the file. "
                "Re-run with --allow-code if you trust it") from None
        obj = _unpickle(path)
        fmt = "pickle"
    except Exception as e:  # RuntimeError (zip), EOFError, OSError, ValueError
        raise BadInputError(
            f"{path}: truncated or corrupt torch file ({type(e).__name__}: {_first_line(e)})"
        ) from None

    from nmtoolchain.models import (ARCHITECTURES, checkpoint_from_state_dict, is_checkpoint,
                                    module_from_checkpoint)

    if arch is not None:
        state = _bare_state_dict(obj) if fmt == "checkpoint" and not is_checkpoint(obj) else None
        if state is None:
            raise BadInputError(f"{path}: --arch {arch} applies to a state_dict (a dict of "
                                f"tensors); this file holds "
                                f"{'an nmtc checkpoint, which names its own architecture' if is_checkpoint(obj) else 'a ' + type(obj).__name__}")
        obj = checkpoint_from_state_dict(state, arch, dict(config or {}), input_shape)
    if is_checkpoint(obj):
        module, recorded = module_from_checkpoint(obj, str(path))
        shape = input_shape if input_shape is not None else recorded
        fmt = "checkpoint"
        if obj.get("architecture") == "atsnn":  # data-dependent halting: not traceable
            from nmtoolchain.frontends.atsnn_graph import graph_from_atsnn

            graph = graph_from_atsnn(module, shape, origin=str(path))
            graph.metadata["source"] = {"path": str(path), "format": fmt}
            return graph
    elif fmt == "pickle":
        if isinstance(obj, torch.jit.ScriptModule):
            graph = graph_from_torchscript(obj, input_shape, str(path))
            graph.metadata["source"] = {"path": str(path), "format": "pickle"}
            return graph
        if not isinstance(obj, torch.nn.Module):
            raise BadInputError(
                f"{path}: the pickled object is a {type(obj).__name__}, not a torch nn.Module")
        if input_shape is None:
            raise BadInputError(
                f"{path}: a pickled module does not record its input shape; pass --input-shape "
                "(per sample, e.g. 1,8,8)")
        module, shape = obj.eval(), input_shape
    elif isinstance(obj, dict):
        state = _bare_state_dict(obj)
        what = (f"a bare state dict ({len(state)} tensors)" if state is obj else
                f"a training checkpoint with a state dict ({len(state)} tensors)" if state
                else f"a dict (keys: {', '.join(map(str, list(obj)[:5]))}) but no 'architecture'")
        raise BadInputError(
            f"{path}: holds {what}, which does not say which network it belongs to; for nmtc's "
            f"architectures ({', '.join(sorted(ARCHITECTURES))}) pass --arch NAME --config JSON, "
            f"else save the model as TorchScript with its input shape or ONNX ({SAVING_HINT})")
    else:
        raise BadInputError(
            f"{path}: holds a {type(obj).__name__}, not a model (expected TorchScript, an nmtc "
            "checkpoint or a pickled nn.Module)")
    try:
        graph = graph_from_module(module, shape, origin=str(path))
    except UnsupportedOpError as fx_error:
        if fmt != "pickle":
            raise
        graph = _graph_by_tracing(module, shape, path, fx_error)
    graph.metadata["source"] = {"path": str(path), "format": fmt}
    return graph


def _graph_by_tracing(module: Any, shape: Sequence[int], path: Path,
                      fx_error: UnsupportedOpError) -> Graph:
    """A pickled module torch.fx cannot trace (e.g. a neuron looping over the time
    steps of published multi-step code), traced by torch.jit.trace on a zero input
    and walked as TorchScript. Only after consent: tracing runs the module's code,
    as unpickling it already did."""
    import torch

    from nmtoolchain.frontends.time_major import reset_spikingjelly
    from nmtoolchain.frontends.torch_builder import _check_shape

    example = torch.zeros((2,) + _check_shape(shape, str(path)))
    reset_spikingjelly(module)  # a membrane left from before pickling would be traced in
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning: the loop is unrolled on purpose
            scripted = torch.jit.trace(module, example, check_trace=False)
    except Exception as e:
        raise UnsupportedOpError(f"{fx_error}; torch.jit.trace failed too "
                                 f"({type(e).__name__}: {_first_line(e)})") from None
    try:
        return graph_from_torchscript(scripted, shape, str(path), live=module)
    except UnsupportedOpError as e:
        raise UnsupportedOpError(f"{fx_error}; traced by torch.jit.trace instead: "
                                 f"{str(e).split(': ', 1)[-1]}") from None


def _unpickle(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as e:
        main = _main_classes(path)
        if main:
            _refuse_main_pickle(path, main)
        raise BadInputError(
            f"{path}: the pickled object needs code that cannot be imported here "
            f"({_first_line(e)})") from None
    except Exception as e:
        raise BadInputError(
            f"{path}: cannot unpickle ({type(e).__name__}: {_first_line(e)})") from None


__all__ = ["load_torch_file", "graph_from_module", "graph_from_torchscript", "save_torchscript",
           "EXTRA_FILE"]
