"""Loihi 2 back end: lava-dl netx HDF5 export, the export directory, and verify.

* :mod:`exporters.loihi2.netx_writer`: :func:`export_netx` writes a quantized
  IR graph as a netx ``.net`` file (a table from IR op to layer builder).
* :mod:`exporters.loihi2.bundle`: :func:`export_loihi2`, the whole
  ``nmtc export --target loihi2`` job (fold pooling, quantize, map, write a
  directory atomically).
* :mod:`exporters.loihi2.verify`: :func:`verify_export`, ``nmtc verify``:
  Lava against nmtc's simulator on the same inputs.

Lava is imported only inside the functions that run it.
"""
from exporters.loihi2.netx_writer import NetxLayer, NetxPlan, export_netx, plan_netx

__all__ = ["export_netx", "plan_netx", "NetxPlan", "NetxLayer"]
