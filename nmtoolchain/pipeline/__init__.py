"""The compiler pipeline: one pass contract, a driver, and the catalogue of passes.

* :mod:`nmtoolchain.pipeline.contract`: :class:`GraphPass` (graph in, new
  graph plus notes and a typed result out), :class:`PassContext`,
  :class:`PassRecord`;
* :mod:`nmtoolchain.pipeline.driver`: :func:`run_pipeline`, which a target
  configures with its list of passes and whose records go into the export
  report;
* :mod:`nmtoolchain.pipeline.catalog`: the library's transforms (fold
  batch-norm, pooling and scales, MST conversion, RSM, Loihi adaptation and
  quantization, core mapping) as passes with that one contract.
"""
from nmtoolchain.pipeline.contract import (CalibSource, GraphPass, NeedsInput, PassContext,
                                           PassOutput, PassRecord)
from nmtoolchain.pipeline.driver import PipelineResult, run_pipeline

__all__ = ["GraphPass", "PassContext", "PassOutput", "PassRecord", "NeedsInput", "CalibSource",
           "PipelineResult", "run_pipeline"]
