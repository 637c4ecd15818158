"""NIR conventions nmtc follows when reading and writing NIR files.

The one home of two rules the NIR loader and the NIR exporter must agree on:

* what a neuron's reset means in a file, by the nir version that wrote it:
  nir <= 1.0.5 (and the 0.x files of the NIR paper) reset IF, LIF and
  CubaLIF by subtraction (v <- v - v_threshold; IR ``reset='subtract'``),
  nir >= 1.0.6 (NIR PR #143) reset them to ``v_reset`` (IR ``'to_reset'``);
* node names: nmtc writes IR names percent-encoded where HDF5 forbids a
  character (``/`` would nest groups) and says so in the graph metadata
  (``nmtc_name_encoding='percent'``), so names survive a round trip.

Pure Python: imports neither nir nor h5py.
"""
from __future__ import annotations

import re
from typing import Tuple
from urllib.parse import unquote

#: First nir release whose IF/LIF/CubaLIF reset to ``v_reset`` (NIR PR #143).
RESET_TO_V_RESET_SINCE = (1, 0, 6)
#: IR ops whose reset semantics changed between nir 1.0.5 and 1.0.6.
RESETTING_OPS = ("IF", "LIF", "CubaLIF")
#: Graph metadata key and value nmtc's exporter writes when it encoded names.
NAME_ENCODING_KEY = "nmtc_name_encoding"
NAME_ENCODING = "percent"


def parse_nir_version(version: str) -> Tuple[int, int, int]:
    """``"1.0.6"`` (also ``"1.0.6.dev1"``, ``"0.2"``) -> ``(1, 0, 6)``; ValueError otherwise."""
    m = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(version))
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def reset_semantics_for_version(version: str) -> str:
    """What IF/LIF/CubaLIF reset means in a file of this nir version.

    ``'subtract'`` for nir <= 1.0.5 (including 0.x), ``'to_reset'`` for >= 1.0.6.
    """
    return "to_reset" if parse_nir_version(version) >= RESET_TO_V_RESET_SINCE else "subtract"


def encode_name(name: str) -> str:
    """IR node name -> NIR node name, reversible with :func:`decode_name`.

    ``%``, ``/`` (HDF5's path separator) and control characters become
    ``%XX``; the names ``.`` and ``..`` (not valid HDF5 names) are fully
    encoded. Everything else, dots and non-ASCII included, is kept.
    """
    if name in (".", ".."):
        return name.replace(".", "%2E")
    return "".join(f"%{ord(c):02X}" if c in "%/" or ord(c) < 32 or ord(c) == 127 else c
                   for c in name)


def decode_name(name: str) -> str:
    """NIR node name written by :func:`encode_name` -> the IR name."""
    return unquote(name)


__all__ = ["RESET_TO_V_RESET_SINCE", "RESETTING_OPS", "NAME_ENCODING_KEY", "NAME_ENCODING",
           "parse_nir_version", "reset_semantics_for_version", "encode_name", "decode_name"]
