"""Deployment targets: one registered back end each, one answer for inspect and export.

* :mod:`nmtoolchain.targets.base`: :class:`Target` (what it accepts, its
  passes, what it builds and writes), :class:`TargetVerdict`,
  :class:`ExportOptions`, :class:`ExportResult`;
* :mod:`nmtoolchain.targets.registry`: the table of targets (built-ins and
  ``nmtc.targets`` entry points), :func:`check_targets` and :func:`export`;
* one module per built-in target: ``loihi2``, ``nir``, ``onnx``, ``nmir``.
"""
from nmtoolchain.targets.base import (ExportOptions, ExportResult, Refusal, Target,
                                      TargetVerdict)
from nmtoolchain.targets.registry import check_targets, export, get_target, targets, verify

__all__ = ["Target", "TargetVerdict", "ExportOptions", "ExportResult", "Refusal",
           "check_targets", "export", "get_target", "targets", "verify"]
