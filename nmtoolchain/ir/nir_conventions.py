"""NIR conventions nmtc follows when reading and writing NIR files.

The one home of two rules the NIR loader and the NIR exporter must agree on:

* what a neuron's reset means in a file, by the nir version that wrote it:
  nir <= 1.0.5 (and the 0.x files of the NIR paper) reset IF, LIF and
  CubaLIF by subtraction (v <- v - v_threshold; IR ``reset='subtract'``),
  nir >= 1.0.6 (NIR PR #143) reset them to ``v_reset`` (IR ``'to_reset'``);
* the time step: NIR's time constants are continuous (snnTorch, norse,
  rockpool and the NIR paper write them in seconds, with a simulation step
  of 1e-4 or 1e-3); the IR counts time in steps. A reader needs the step the
  producer simulated with (``--dt``); nmtc's exporter records it in the file
  (graph metadata ``nmtc_dt``) so its own files need no option. A time
  constant shorter than one step (tau < 1 read as steps) cannot be a step
  count, so such a file without ``--dt`` is refused;
* CubaLIF / CubaLI: NIR's equations (tau_syn dI/dt = -I + w_in x, tau_mem
  dv/dt = v_leak - v + r I) are taken one forward-Euler step at a time
  (the new I drives v, as snnTorch's Synaptic does):
  I <- (1 - 1/tau_syn) I + (w_in/tau_syn) x;  v <- (1 - 1/tau_mem) v +
  v_leak/tau_mem + (r/tau_mem) I (taus in steps). The IR's CubaLIF is
  Loihi's form, I <- a_syn I + w_in x; v <- v_leak + a_mem (v - v_leak) +
  r I with a = exp(-1/tau). The two are the same update with
  a = 1 - 1/tau_NIR, w_in_IR = w_in/tau_syn and r_IR = r/tau_mem
  (:func:`cuba_from_nir`, :func:`cuba_to_nir`); a NIR tau below one step
  (forward Euler overshoots) has no such form and is refused;
* node names: nmtc writes IR names percent-encoded where HDF5 forbids a
  character (``/`` would nest groups) and says so in the graph metadata
  (``nmtc_name_encoding='percent'``), so names survive a round trip.

Imports neither nir nor h5py (numpy only).
"""
from __future__ import annotations

import re
from typing import Any, Tuple

import numpy as np
from urllib.parse import unquote

#: First nir release whose IF/LIF/CubaLIF reset to ``v_reset`` (NIR PR #143).
RESET_TO_V_RESET_SINCE = (1, 0, 6)
#: IR ops whose reset semantics changed between nir 1.0.5 and 1.0.6.
RESETTING_OPS = ("IF", "LIF", "CubaLIF")
#: NIR time-constant fields (continuous time, in the file's unit).
TAU_FIELDS = ("tau", "tau_syn", "tau_mem")
#: NIR neurons whose ``r`` multiplies the input of dv/dt = r x with no tau:
#: one step of length dt adds dt * r * x.
INTEGRATING_OPS = ("I", "IF")
#: Graph metadata key in which nmtc's exporter records the time step (the
#: file's time unit per simulation step) its time constants assume.
DT_KEY = "nmtc_dt"
#: Below this, a time constant read as steps is shorter than one step: the
#: file's taus are in a continuous unit (seconds) and need ``--dt``.
SECONDS_BELOW = 1.0
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


def check_dt(dt: float) -> float:
    """``dt`` as a float; ValueError unless it is finite and > 0."""
    import math

    if isinstance(dt, bool):
        raise ValueError(f"--dt must be a positive number, got {dt!r}")
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"--dt must be a positive number, got {dt!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--dt must be a positive, finite number, got {dt!r}")
    return value


def cuba_from_nir(tau_syn: Any, tau_mem: Any, r: Any, w_in: Any
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NIR CubaLIF/CubaLI fields (taus in steps) -> the IR's (tau_syn, tau_mem,
    r, w_in) with the same per-step update (module docstring).

    ValueError if a time constant is below one step.
    """
    ts, tm = (np.asarray(v, np.float64) for v in (tau_syn, tau_mem))
    for name, tau in (("tau_syn", ts), ("tau_mem", tm)):
        if np.any(tau < 1.0):
            raise ValueError(f"{name} {float(np.min(tau)):.4g} is shorter than one time step; "
                             "a forward-Euler step of NIR's CubaLIF overshoots (is --dt right?)")

    def ir_tau(tau: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(tau == 1.0, 0.0, -1.0 / np.log1p(-1.0 / tau))

    return (ir_tau(ts), ir_tau(tm), np.asarray(r, np.float64) / tm,
            np.asarray(w_in, np.float64) / ts)


def cuba_to_nir(tau_syn: Any, tau_mem: Any, r: Any, w_in: Any
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The IR's CubaLIF/CubaLI fields -> NIR's (tau_syn, tau_mem, r, w_in) in
    steps, the inverse of :func:`cuba_from_nir`. ValueError where a decay is
    1 (tau = inf: no NIR time constant says it)."""
    def nir_tau(tau: Any, name: str) -> np.ndarray:
        tau = np.asarray(tau, np.float64)
        with np.errstate(divide="ignore"):
            a = np.where(tau == 0.0, 0.0, np.exp(-1.0 / np.where(tau == 0.0, 1.0, tau)))
        if np.any(a >= 1.0):
            raise ValueError(f"{name} = inf (no decay) has no NIR CubaLIF time constant")
        return 1.0 / (1.0 - a)

    ts, tm = nir_tau(tau_syn, "tau_syn"), nir_tau(tau_mem, "tau_mem")
    return ts, tm, np.asarray(r, np.float64) * tm, np.asarray(w_in, np.float64) * ts


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


__all__ = ["RESET_TO_V_RESET_SINCE", "RESETTING_OPS", "TAU_FIELDS", "INTEGRATING_OPS", "DT_KEY",
           "SECONDS_BELOW", "check_dt", "cuba_from_nir", "cuba_to_nir", "NAME_ENCODING_KEY", "NAME_ENCODING",
           "parse_nir_version", "reset_semantics_for_version", "encode_name", "decode_name"]
