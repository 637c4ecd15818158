"""Decide, before any loader runs, whether opening a model file would run code from it.

A TorchScript archive carries TorchScript source (``<name>/code/**.py``) and
pickles (``data.pkl``, ``constants.pkl``). ``torch.jit.load`` runs a class's
``__setstate__`` while it loads, and TorchScript can call ops that open, map
or write files (``torch.from_file(..., shared=True)``, ``torch.save``). This
module reads the archive as data only (``zipfile``, :mod:`ast` on the code
files, :mod:`pickletools` on the pickles, nothing imported or executed) and
names what would run. The loader refuses such a file unless the user gave
consent (``--allow-code``, also spelled ``--allow-pickle``).

Also checks an archive's size before decompressing it (zip bombs).
It must never import torch or execute anything read from the file.
"""
from __future__ import annotations

import ast
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List

from nmtoolchain.errors import BadInputError, PickleRefusedError

#: refuse an archive that would decompress to more than this many bytes
MAX_UNCOMPRESSED_BYTES = 4 << 30
#: ... or whose members decompress to more than this ratio of their stored size
MAX_COMPRESSION_RATIO = 1000

#: methods the TorchScript loader calls while it loads
_RUN_AT_LOAD = ("__setstate__",)
#: TorchScript calls that reach the file system, processes or foreign code
_UNSAFE_CALLS = ("from_file", "save", "load", "_load_for_lite_interpreter", "_load_from_bytes",
                 "_save_for_lite_interpreter", "_C", "system", "popen", "open")
#: op namespaces a plain network's code calls through ``ops.<ns>.<op>``
_SAFE_OP_NAMESPACES = ("aten", "prim", "quantized")
#: pickle globals a TorchScript archive (or an nmtc checkpoint) may name
_SAFE_GLOBAL_PREFIXES = ("__torch__.", "torch._utils._rebuild", "torch.jit._pickle.",
                         "collections OrderedDict", "torch._tensor._rebuild",
                         "torch.device", "torch.Size")
_SAFE_STORAGES = ("Storage",)


class CodeRefusedError(PickleRefusedError):
    """A model file would run code from itself when loaded, without consent."""


@dataclass(frozen=True)
class CodeFinding:
    """One place in an archive where loading would run code or touch files."""

    member: str  # archive member, e.g. "net/code/__torch__.py"
    what: str    # e.g. "defines __setstate__ (runs at load)"

    def __str__(self) -> str:
        return f"{self.member}: {self.what}"


def check_zip_size(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse an archive that would decompress to an absurd size (zip bomb)."""
    total = sum(i.file_size for i in zf.infolist())
    stored = sum(max(i.compress_size, 1) for i in zf.infolist())
    if total > MAX_UNCOMPRESSED_BYTES:
        raise BadInputError(f"{path}: archive would decompress to {total / 2**30:.1f} GiB "
                            f"(limit {MAX_UNCOMPRESSED_BYTES / 2**30:.0f} GiB)")
    if total > (64 << 20) and total / stored > MAX_COMPRESSION_RATIO:
        raise BadInputError(f"{path}: archive members expand {total / stored:.0f}-fold "
                            f"(limit {MAX_COMPRESSION_RATIO}); refusing a likely zip bomb")


def _dotted(node: ast.AST) -> str:
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _code_findings(member: str, source: str) -> List[CodeFinding]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as e:
        why = e.msg if isinstance(e, SyntaxError) else str(e)
        return [CodeFinding(member, f"code that cannot be parsed as TorchScript ({why})")]
    found: List[CodeFinding] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in _RUN_AT_LOAD:
            found.append(CodeFinding(member, f"defines {node.name} (runs while the file loads)"))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            parts = name.split(".")
            if parts[0] in ("torch", "ops") and parts[-1] in _UNSAFE_CALLS:
                found.append(CodeFinding(member, f"calls {name} (reaches the file system)"))
            elif "ops" in parts[:-2]:
                ns = parts[parts.index("ops") + 1]
                if ns not in _SAFE_OP_NAMESPACES:
                    found.append(CodeFinding(member, f"calls the custom op {name}"))
            elif parts[0] in ("open", "exec", "eval", "__import__"):
                found.append(CodeFinding(member, f"calls {name}"))
    return found


def pickle_globals(data: bytes) -> List[str]:
    """The ``module name`` pairs a pickle's GLOBAL/STACK_GLOBAL opcodes name, read
    without unpickling (:mod:`pickletools`); STACK_GLOBAL takes the two most recent
    string pushes."""
    names: List[str] = []
    strings: List[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name == "GLOBAL":
                names.append(str(arg))
            elif op.name == "STACK_GLOBAL":
                names.append(" ".join(strings[-2:]) if len(strings) >= 2 else "?")
            elif isinstance(arg, str) and ("UNICODE" in op.name or "BINSTRING" in op.name):
                strings.append(str(arg))
    except Exception as e:  # a truncated or garbled pickle: the loader reports it as corrupt
        names.append(f"<unreadable pickle: {type(e).__name__}>")
    return names


def _safe_global(name: str) -> bool:
    module, _, attr = name.partition(" ")
    dotted = f"{module}.{attr}"
    if name.startswith("<unreadable"):
        return True  # not code: the loader's own error names the corruption
    if module == "torch" and attr.endswith(_SAFE_STORAGES):
        return True
    if module == "collections" and attr == "OrderedDict":
        return True
    return any(dotted.startswith(p) or name.startswith(p) for p in _SAFE_GLOBAL_PREFIXES)


def torchscript_findings(path: Path) -> List[CodeFinding]:
    """Everything in the TorchScript archive ``path`` that would run code on load.

    Raises BadInputError for an unreadable archive or one too large to inspect.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_size(path, zf)
            found: List[CodeFinding] = []
            for info in zf.infolist():
                name = info.filename
                if "/code/" in name and name.endswith(".py"):
                    source = zf.read(info).decode("utf-8", errors="replace")
                    found.extend(_code_findings(name, source))
                elif name.endswith(".pkl") and not name.endswith(".debug_pkl"):
                    for g in pickle_globals(zf.read(info)):
                        if not _safe_global(g):
                            found.append(CodeFinding(name, f"pickle names {g.replace(' ', '.')}"))
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as e:
        raise BadInputError(f"{path}: truncated or corrupt archive ({e})") from None
    return found


def refuse_code_without_consent(path: Path, allow_code: bool) -> None:
    """Raise CodeRefusedError naming the first finding unless ``allow_code``."""
    found = torchscript_findings(path)
    if found and not allow_code:
        rest = [str(f) for f in found[1:4]]
        more = (f" (and {len(found) - 1} more: {'; '.join(rest)}"
                f"{'; ...' if len(found) > 4 else ''})" if len(found) > 1 else "")
        raise CodeRefusedError(
            f"{path}: loading would run code from the file: {found[0]}{more}. Re-run with "
            "--allow-code if you trust it")


__all__ = ["CodeFinding", "CodeRefusedError", "pickle_globals", "torchscript_findings",
           "refuse_code_without_consent", "check_zip_size", "MAX_UNCOMPRESSED_BYTES"]
