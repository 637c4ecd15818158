"""nmtc's Python API: the entry points behind the ``nmtc`` commands.

``import nmtoolchain as nmtc`` exposes these functions lazily (importing the
package stays cheap). Each takes the model as an ``nn.Module`` (with
``input_shape``), a file path (any format :func:`load` reads) or an IR
:class:`~nmtoolchain.ir.Graph`, and data as numpy arrays or torch tensors as
well as files::

    import nmtoolchain as nmtc
    run = nmtc.simulate("model.onnx", x, timesteps=16, profile="loihi2")
    run.energy_pj("loihi2")

The CLI parses options and renders what these return; nothing here prints.
Bad input raises a :class:`~nmtoolchain.errors.NmtcError` subclass.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph

if TYPE_CHECKING:  # for annotations only: importing these pulls in torch or a vendor
    from nmtoolchain.targets.base import ExportResult
    from exporters.loihi2.verify import VerifyResult
    from nmtoolchain.accuracy import AccuracyCheck
    from nmtoolchain.inputs import RunInputs
    from simulators.cycle import RunCounts, SimResult

#: a model: an IR graph, a file nmtc reads, or a torch ``nn.Module`` (needs ``input_shape``)
Model = Union[Graph, str, "os.PathLike[str]", Any]
#: data: an array or tensor (N, *shape) / (N, T, *shape), or a file (.npz with x[, y], .npy)
Data = Union[np.ndarray, Any, str, "os.PathLike[str]"]

#: samples the CLI's simulate, report and verify take by default (one default
#: everywhere: stable per-sample rates, a Lava run of about a minute); the API
#: takes all the data it is given, and this many random-spike samples without data
DEFAULT_SAMPLES = 16
DEFAULT_PROFILES = ("loihi2", "loihi1", "speck", "cmos45nm")
CONVERT_METHODS = ("mst", "threshold")
#: calibration samples threshold balancing measures activations on (at most)
CONVERT_CALIB_SAMPLES = 1024


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # an nn.Module exists only if torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def _array(data: Any) -> np.ndarray:
    if hasattr(data, "detach"):  # a torch tensor
        data = data.detach().cpu().numpy()
    return np.asarray(data)


def load(model: Model, *, input_shape: Optional[Sequence[int]] = None,
         allow_pickle: bool = False, dt: Optional[float] = None,
         arch: Optional[str] = None, config: Optional[Dict[str, Any]] = None) -> Graph:
    """The IR graph of ``model``, shapes inferred.

    A Graph is returned itself (its shapes inferred); a file is read by its format (TorchScript, nmtc
    checkpoint, ONNX, NIR, netx, .nmir; a pickled module only with
    ``allow_pickle``); an ``nn.Module`` is traced with torch.fx and needs
    ``input_shape`` per sample (e.g. ``(1, 8, 8)``; without the time axis for
    modules on (batch, time, ...) tensors). ``dt``: the simulation step a NIR
    file's time constants assume, in their unit (e.g. 1e-4 for snnTorch's
    files; 1e-6 for norse 1.1.0's, which store dt times tau); recorded as
    ``graph.metadata['nir_dt']``. ``arch``/``config``: a torch ``state_dict``
    file's nmtc architecture (:data:`nmtoolchain.models.ARCHITECTURES`) and the
    config it was built with; the input shape defaults to the architecture's.
    """
    if (arch is not None or config is not None) and not isinstance(model, (str, os.PathLike)):
        raise BadInputError("arch/config describe the network of a state_dict file; pass the "
                            "file's path")
    if dt is not None and not isinstance(model, (str, os.PathLike)):
        raise BadInputError(f"dt={dt}: the time step applies to a NIR file; a "
                            f"{type(model).__name__} already counts time in steps")
    if isinstance(model, Graph):
        return model.infer_shapes()  # fills in derived shapes only, as the simulator does
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    if _is_module(model):
        if shape is None:
            raise BadInputError(f"load({type(model).__name__}): an nn.Module needs input_shape "
                                "(per sample, e.g. (1, 8, 8))")
        from nmtoolchain.frontends.torch_fx import graph_from_module

        return graph_from_module(model, shape, origin=type(model).__name__)
    if isinstance(model, (str, os.PathLike)):
        from nmtoolchain.frontends import load_model

        return load_model(Path(model), allow_pickle=allow_pickle, input_shape=shape, dt=dt,
                          arch=arch, config=config)
    raise BadInputError(f"expected a model file, an nn.Module or an nmtc Graph, got "
                        f"{type(model).__name__}")


def convert(model: Model, *, method: str = "mst", timesteps: Optional[int] = None,
            precharge: bool = True, calib: Any = None, percentile: float = 99.9,
            input_max: Optional[float] = None, input_shape: Optional[Sequence[int]] = None,
            allow_pickle: bool = False, dt: Optional[float] = None) -> Graph:
    """Convert an ANN into an IF SNN graph.

    ``method='mst'``: a QCFS ANN by the MST/QCFS rule (``precharge`` starts
    membranes at λ/2). ``method='threshold'``: a plain ReLU CNN/MLP by threshold
    balancing with data-based normalization
    (:func:`nmtoolchain.convert.convert_relu_to_if`): each layer's scale λ is the
    ``percentile`` of its ReLU outputs on ``calib`` ('digits': the digits train
    split; a .npz with ``x`` or a .npy; an array (N, *shape)), the input is
    rate-coded with ``input_max`` (default: the largest calibration value) as
    full rate, IF neurons reset to 0 (Loihi's rule). BatchNorm is folded first;
    max pooling is refused (use average pooling). ``timesteps`` is only recorded.
    """
    if method not in CONVERT_METHODS:
        raise BadInputError(f"--method {method!r}: unknown conversion method; choose one of: "
                            f"{', '.join(CONVERT_METHODS)}")
    if timesteps is not None and (isinstance(timesteps, bool) or int(timesteps) < 1):
        raise BadInputError(f"--timesteps must be >= 1, got {timesteps}")
    if method == "mst" and calib is not None:
        raise BadInputError("--calib applies to --method threshold (MST needs no data)")
    if method == "threshold" and calib is None:
        raise BadInputError("--method threshold needs calibration data for its normalization: "
                            "--calib digits or --calib FILE.npz (x: samples as the model takes "
                            "them)")
    graph = load(model, input_shape=input_shape, allow_pickle=allow_pickle, dt=dt)
    if method == "mst":
        from nmtoolchain.convert.mst import convert_mst

        return convert_mst(graph, timesteps=timesteps, precharge=precharge)
    return threshold_balance(graph, calib, timesteps=timesteps, percentile=percentile,
                             input_max=input_max)


def threshold_balance(graph: Graph, calib: Any, *, timesteps: Optional[int] = None,
                      percentile: float = 99.9, input_max: Optional[float] = None) -> Graph:
    """:func:`convert`'s ``method='threshold'`` on a loaded graph: calibration
    samples read, checked (a rate code carries values in [0, input_max] only),
    then :func:`~nmtoolchain.convert.convert_relu_to_if`; the graph records the
    calibration data and steps in ``metadata['conversion']``."""
    from nmtoolchain.convert import convert_relu_to_if

    x, origin = analog_calibration(graph, calib, CONVERT_CALIB_SAMPLES)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0:
        raise BadInputError(f"--calib {origin}: inputs go down to {lo:g}; a rate code carries "
                            "values in [0, input_max] only (feed inputs scaled to [0, 1])")
    if input_max is None:
        if hi <= 0:
            raise BadInputError(f"--calib {origin}: every input is 0; nothing to normalize by")
        input_max = hi
    snn, _ = convert_relu_to_if(graph, x, steps=int(timesteps or 32),
                                percentile=float(percentile), input_max=float(input_max))
    snn.metadata["conversion"].update(calibration=origin, samples=int(len(x)))
    return snn


def analog_calibration(graph: Graph, calib: Any, limit: int) -> Tuple[np.ndarray, str]:
    """(x, description) of at most ``limit`` analog calibration samples shaped for
    ``graph``'s input: 'digits' (train split), a .npz with ``x``, a .npy, or an array."""
    from nmtoolchain.calibration import read_calibration_x
    from nmtoolchain.inputs import arrange_samples

    if len(graph.inputs()) != 1:
        raise BadInputError(f"model has {len(graph.inputs())} inputs; calibration feeds one")
    if isinstance(calib, (str, os.PathLike)):
        x, origin = read_calibration_x(calib, int(limit))
    else:
        x, origin = _array(calib), "array"
    x = arrange_samples(np.asarray(x, np.float32), tuple(graph.inputs()[0].shape), str(origin))
    if x.ndim != len(graph.inputs()[0].shape) + 1:
        raise BadInputError(f"--calib {origin}: expected static samples (N, "
                            f"{tuple(graph.inputs()[0].shape)}), got {tuple(x.shape)}")
    x = x[:int(limit)]
    return x, origin if str(calib) == "digits" else f"{origin}, {len(x)} samples"


#: measurement -> (its input file in lava-dl's installed tests/lava/lib/dl/netx, axis order to C,H,W)
MEASURED_INPUTS = {"pilotnet_lif": ("gts/pilotnet_lif/image.npy", (2, 1, 0))}


def _measured_input(name: str) -> np.ndarray:
    """The input a stored board measurement was made with (Intel's image for
    pilotnet_lif), so that ``--measured`` without data estimates the same work."""
    import sysconfig

    if name not in MEASURED_INPUTS:
        raise BadInputError(f"--measured {name}: nmtc does not know this measurement's input; "
                            "pass it with --data")
    rel, axes = MEASURED_INPUTS[name]
    for key in ("purelib", "platlib"):
        path = Path(sysconfig.get_paths()[key]) / "tests" / "lava" / "lib" / "dl" / "netx" / rel
        if path.exists():
            return np.load(path).transpose(axes).astype(np.float32)
    raise BadInputError(f"--measured {name}: its input {rel} ships with lava-dl's wheel, which "
                        "is not installed here; pass the input with --data")


def _inputs(graph: Graph, x: Optional[Data], y: Optional[Data], dataset: Optional[str],
            samples: Optional[int]) -> "RunInputs":
    """RunInputs from arrays, a file, a bundled data set, or seeded random spikes."""
    from nmtoolchain.inputs import RunInputs, arrange_samples, load_run_inputs

    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise BadInputError(f"--samples must be a positive integer, got {samples}")
    if x is not None and dataset is not None:
        raise BadInputError("give either data (x) or a dataset, not both")
    if x is None and dataset is None:  # seeded random spikes: a count is needed
        n = DEFAULT_SAMPLES if samples is None else int(samples)
    else:
        n = 10 ** 12 if samples is None else int(samples)
    if x is None or isinstance(x, (str, os.PathLike)):
        inputs = load_run_inputs(graph, dataset=dataset,
                                 data=Path(x) if x is not None else None, samples=n)
    else:
        if len(graph.inputs()) != 1:
            raise BadInputError(f"model has {len(graph.inputs())} inputs; nmtc feeds exactly one")
        arr = _array(x).astype(np.float32)
        shape = tuple(graph.inputs()[0].shape)
        arr = arrange_samples(arr, shape, "x", one_sample=True)[:n]
        inputs = RunInputs(arr, None, f"array, {len(arr)} samples")
    if y is not None:
        labels = np.load(y) if isinstance(y, (str, os.PathLike)) else _array(y)
        labels = np.asarray(labels).reshape(-1)[:n]
        if len(labels) != len(inputs.x):
            raise BadInputError(f"{len(inputs.x)} samples but {len(labels)} labels")
        inputs = RunInputs(inputs.x, labels, inputs.description)
    return inputs


@dataclass
class Simulation:
    """A simulator run and its cost report.

    ``result`` is the simulator's :class:`~simulators.cycle.SimResult` (outputs
    per step, ``counts``: events, synaptic operations, neuron updates and
    spikes per layer and step); ``report`` is the plain-data report the
    ``simulate``/``report`` commands print as JSON (energy and latency per
    profile, per-layer counts per sample, accuracy when labels were given).
    """

    graph: Graph
    result: "SimResult"
    report: Dict[str, Any]
    inputs: "RunInputs"

    @property
    def counts(self) -> "RunCounts":
        """The run's :class:`~simulators.cycle.RunCounts`."""
        return self.result.counts

    @property
    def outputs(self) -> Dict[str, Any]:
        """Output node name -> (batch, T, *shape) tensor."""
        return self.result.outputs

    @property
    def accuracy(self) -> Optional[float]:
        """Accuracy of the summed output against the labels, or None without labels."""
        return self.report.get("accuracy")

    def energy_pj(self, profile: Optional[str] = None) -> float:
        """Energy per inference in pJ under ``profile`` (default: the first priced)."""
        rows = self.report["profiles"]
        key = profile if profile is not None else next(iter(rows))
        if key not in rows:
            raise BadInputError(f"profile {key!r} was not priced; this run has {list(rows)}")
        return float(rows[key]["energy_per_inference_pj"])


def _run(model: Model, x: Optional[Data], y: Optional[Data], dataset: Optional[str],
         timesteps: int, numerics: str, samples: Optional[int], reset_interval: Optional[int],
         profiles: Sequence[str], reference: str, measured: Optional[str],
         input_shape: Optional[Sequence[int]], allow_pickle: bool,
         progress: Optional[Callable[[int], None]],
         rules: Optional[Sequence[str]] = None, device: str = "cpu",
         dt: Optional[float] = None, record: Any = None) -> Simulation:
    from hardware_profiles import load_profile
    from nmtoolchain.inputs import encode_for_graph
    from nmtoolchain.limits import check_run_size
    from nmtoolchain.numerics.loihi import readout_outputs
    from nmtoolchain.report.simulation import build_report
    from simulators.cycle import Simulator

    if isinstance(timesteps, bool) or int(timesteps) < 1:
        raise BadInputError(f"--timesteps must be >= 1, got {timesteps}")
    if not profiles:
        raise BadInputError("--profile: no profile given")
    for p in list(profiles) + [reference]:
        load_profile(p)  # an unknown profile fails before a long run, not after it
    from nmtoolchain.energy import RULES
    for r in rules or []:
        if r not in RULES:
            raise BadInputError(f"--rule {r!r} is not one of {', '.join(RULES)}")
    graph = load(model, input_shape=input_shape, allow_pickle=allow_pickle, dt=dt)
    own = measured is not None and x is None and dataset is None
    raw = _inputs(graph, _measured_input(measured) if own else x, y, dataset, samples)
    if own:  # estimate and measurement describe the same work
        raw = replace(raw, description=f"the '{measured}' measurement's own input "
                                       f"({MEASURED_INPUTS[measured][0]} from lava-dl's tests)")
    check_run_size(graph, int(timesteps), len(raw.x))  # before encoding allocates T steps
    inputs = encode_for_graph(graph, raw, int(timesteps))
    # a Loihi readout never fires: its v is kept to decode the answer (step schedule)
    readouts = readout_outputs(graph) if numerics == "loihi" and inputs.y is not None else []
    sim = Simulator(graph, numerics, reset_interval=reset_interval, device=device,
                    record=record, record_state=readouts)
    result = sim.run(inputs.x, int(timesteps), progress=progress).to_cpu()
    rep = build_report(graph, result, list(profiles), reference=reference, measured=measured,
                       labels=inputs.y, inputs=inputs.description, rules=rules)
    return Simulation(graph, result, rep, inputs)


def simulate(model: Model, x: Optional[Data] = None, *, y: Optional[Data] = None,
             dataset: Optional[str] = None, timesteps: int = 16, numerics: str = "float",
             samples: Optional[int] = None, profile: str = "loihi2",
             reset_interval: Optional[int] = None,
             input_shape: Optional[Sequence[int]] = None, allow_pickle: bool = False,
             progress: Optional[Callable[[int], None]] = None,
             rule: Optional[str] = None, device: str = "cpu",
             dt: Optional[float] = None, record: Any = None) -> Simulation:
    """Simulate ``model`` for ``timesteps`` steps and price the run under one profile.

    Inputs: ``x`` (N, *shape) applied at every step or (N, T, *shape) per
    step, or a file; ``dataset='digits'``; or, with neither, seeded random
    spikes (the report says so). At most ``samples`` of them (None: all the
    data given, or :data:`DEFAULT_SAMPLES` random-spike samples).
    ``numerics``: 'float' or 'loihi' (bit-exact fixed point).
    ``reset_interval``: netx's LIFReset interval (loihi numerics).
    ``rule``: counting rule (fanout, neurobench, neurobench-sample, syops, spikformer; None: the
    profile's default); the report's rows say which rule produced them.
    ``device``: where the simulator's tensors live ('cpu', 'cuda', 'cuda:1').
    ``dt``: a NIR file's simulation step (see :func:`load`).
    ``record``: layers whose outputs are kept per step in ``result.recorded``
    (None, 'neurons', 'all' or node names; :func:`save_run` writes them).
    """
    return _run(model, x, y, dataset, timesteps, numerics, samples, reset_interval, [profile],
                profile, None, input_shape, allow_pickle, progress,
                [rule] if rule else None, device, dt, record)


def report(model: Model, x: Optional[Data] = None, *, y: Optional[Data] = None,
           dataset: Optional[str] = None, profiles: Sequence[str] = DEFAULT_PROFILES,
           reference: str = "cmos45nm", measured: Optional[str] = None, timesteps: int = 16,
           numerics: str = "float", samples: Optional[int] = None,
           reset_interval: Optional[int] = None, input_shape: Optional[Sequence[int]] = None,
           allow_pickle: bool = False,
           progress: Optional[Callable[[int], None]] = None,
           rules: Optional[Sequence[str]] = None, device: str = "cpu",
           dt: Optional[float] = None) -> Simulation:
    """Like :func:`simulate`, priced under several ``profiles`` and compared with
    ``reference``; ``measured`` adds a board measurement stored in a profile
    (e.g. 'pilotnet_lif'). ``rules``: counting rules; the first prices the
    profile rows, each is reported under ``by_rule``."""
    if isinstance(profiles, str):
        profiles = [p.strip() for p in profiles.split(",") if p.strip()]
    if isinstance(rules, str):
        rules = [r.strip() for r in rules.split(",") if r.strip()]
    return _run(model, x, y, dataset, timesteps, numerics, samples, reset_interval,
                list(profiles), reference, measured, input_shape, allow_pickle, progress, rules,
                device, dt)


def export(model: Model, target: str, output: Optional[Union[str, "os.PathLike[str]"]] = None,
           **options: Any) -> "ExportResult":
    """Export ``model`` for ``target`` (a registered target: loihi2, nir, onnx, nmir)
    to ``output`` through the target's pass pipeline; returns the
    :class:`~nmtoolchain.targets.ExportResult` (``path``, ``files``, ``report``,
    ``lines``). ``options``: ``profile``, ``calib``, ``timesteps``, ``force`` where
    the target uses them (anything else goes to the target as ``extra``, e.g.
    ``opset`` for onnx, ``nir_version`` for nir); ``input_shape``, ``allow_pickle``
    and ``dt`` (a NIR file's simulation step) apply to loading."""
    from nmtoolchain.targets import ExportOptions, export as export_to

    load_opts = {k: options.pop(k) for k in ("input_shape", "allow_pickle", "dt")
                 if k in options}
    known = {k: options.pop(k) for k in ("profile", "calib", "timesteps", "force")
             if k in options}
    if not isinstance(model, (str, os.PathLike)):
        model = load(model, **load_opts)
        load_opts = {}
    shape = load_opts.get("input_shape")
    return export_to(model, target, output, ExportOptions(**known, extra=options),
                     allow_pickle=bool(load_opts.get("allow_pickle", False)),
                     input_shape=tuple(shape) if shape is not None else None,
                     dt=load_opts.get("dt"))


def verify(directory: Union[str, "os.PathLike[str]"], x: Optional[Data] = None, *,
           dataset: Optional[str] = None, timesteps: Optional[int] = None,
           samples: Optional[int] = None, reset_interval: Optional[int] = None
           ) -> "VerifyResult":
    """Run the referee of the target that wrote ``directory`` (loihi2: the export
    in Lava (fixed_pt) and in nmtc's simulator (loihi numerics), compared at every
    layer and step).

    ``timesteps`` defaults to the export's steps plus its pipeline depth;
    ``samples`` to all of an array ``x``, else :data:`DEFAULT_SAMPLES`. Returns
    the verifier's result (``identical``, ``lines()``, ``as_dict()``). Needs lava-nc
    and lava-dl.
    """
    from nmtoolchain.targets import verify as verify_export

    if samples is None:
        samples = len(_array(x)) if x is not None and not isinstance(x, (str, os.PathLike)) \
            else DEFAULT_SAMPLES
    if x is None or isinstance(x, (str, os.PathLike)):
        return verify_export(Path(directory), data=Path(x) if x is not None else None,
                             dataset=dataset, steps=timesteps, samples=samples,
                             reset_interval=reset_interval)
    with tempfile.TemporaryDirectory(prefix="nmtc_verify_") as tmp:
        path = Path(tmp) / "x.npy"  # the verifier reads inputs from a file
        np.save(path, _array(x).astype(np.float32))
        return verify_export(Path(directory), data=path, dataset=dataset, steps=timesteps,
                             samples=samples, reset_interval=reset_interval)


def check_accuracy(model: Model, x: Optional[Data] = None, y: Optional[Data] = None, *,
                   dataset: Optional[str] = None, timesteps: int = 32,
                   min_accuracy: Optional[float] = None, max_drop: Optional[float] = None,
                   target: Optional[str] = None, calib: Any = None, precharge: bool = True,
                   samples: Optional[int] = None, input_shape: Optional[Sequence[int]] = None,
                   allow_pickle: bool = False, seed: int = 0,
                   dt: Optional[float] = None, method: Optional[str] = None,
                   percentile: float = 99.9) -> "AccuracyCheck":
    """Accuracy of a QCFS ANN and of its MST-converted SNN against time step,
    gated (see :func:`nmtoolchain.accuracy.check_accuracy`).

    Data: labelled arrays ``x``, ``y``; a .npz file with x and y as ``x``; or
    ``dataset='digits'`` (its test split). ``samples``: at most this many
    (None: all, as a gate should measure). ``calib`` for ``target``: 'digits',
    a .npz, an array, or None (the digits train split with ``dataset='digits'``,
    else the evaluated data). ``seed``: run seed of the spike masks.
    ``method``: how an ANN becomes an SNN: 'mst' (QCFS), 'threshold' (ReLU, threshold
    balancing at ``percentile`` on ``calib``: the digits train split with
    ``dataset='digits'``, else the evaluated data), None: threshold for a network
    with ReLU and no QCFS, else mst. A spiking model is measured as it is. An ``nn.Module`` is traced at the shape of ``x``'s
    samples unless ``input_shape`` says otherwise. Returns an :class:`~nmtoolchain.accuracy.AccuracyCheck`.
    """
    from nmtoolchain.accuracy import _check_gate, check_accuracy as _check

    _check_gate(min_accuracy, max_drop)  # bad options fail before the model is loaded
    if isinstance(timesteps, bool) or int(timesteps) < 1:
        raise BadInputError(f"--timesteps must be >= 1, got {timesteps}")
    if dataset is None and x is None:
        raise BadInputError("give --dataset digits or --data FILE.npz (or arrays x, y)")
    if isinstance(x, (str, os.PathLike)) and Path(x).suffix != ".npz":
        raise BadInputError(f"--data {x}: needs a .npz with x and y (labels)")
    if input_shape is None and _is_module(model) and x is not None \
            and not isinstance(x, (str, os.PathLike)):
        input_shape = _array(x).shape[1:]  # static samples (N, *shape)
    graph = load(model, input_shape=input_shape, allow_pickle=allow_pickle, dt=dt)
    inputs = _inputs(graph, x, y, dataset, samples)
    if inputs.y is None:
        raise BadInputError(f"{inputs.description}: no labels (y) to measure accuracy")
    from nmtoolchain.limits import check_run_size

    check_run_size(graph, int(timesteps), len(inputs.x), "accuracy check")
    if method is not None and method not in CONVERT_METHODS:
        raise BadInputError(f"--method {method!r}: unknown conversion method; choose one of: "
                            f"{', '.join(CONVERT_METHODS)}")
    from nmtoolchain.accuracy import is_spiking_model

    ops = {n.op_name for n in graph}
    if method is None and not is_spiking_model(graph):
        method = "threshold" if "ReLU" in ops and "QCFS" not in ops else "mst"
    converted = None
    if method == "threshold" and not is_spiking_model(graph):
        norm = "digits" if dataset == "digits" and calib is None else \
            calib if calib is not None else inputs.x
        converted = threshold_balance(graph, norm, timesteps=timesteps, percentile=percentile)
    if calib is None and target is not None:
        calib = "digits" if dataset == "digits" else \
            str(x) if isinstance(x, (str, os.PathLike)) else None
    return _check(graph, inputs.x, inputs.y, timesteps=timesteps, min_accuracy=min_accuracy,
                  max_drop=max_drop, target=target, calib=calib, precharge=precharge,
                  data=inputs.description, seed=seed, converted=converted)


def search(space: str = "small", *, params: Sequence[float] = (11e6, 12e6),
           profile: str = "cmos45nm", energy_weight: float = 0.0,
           energy_budget_j: Optional[float] = None, fit: Optional[str] = None, seed: int = 0,
           workers: int = 1, ray_address: Optional[str] = None, energy: bool = False,
           energy_batch: int = 1, out_dir: Optional[Union[str, Path]] = None,
           progress: Optional[Callable[[int, int], None]] = None, **constants: Any) -> Any:
    """AutoST's training-free search (:mod:`nmtoolchain.methods.autost`).

    Fitness is the syops FLOPs proxy within the parameter window ``params``
    (100-class head); ``energy_weight`` (per mJ) and ``energy_budget_j`` add
    energy at initialisation on ``profile``; ``fit`` ("loihi2:K" or "speck")
    keeps only candidates that fit. ``energy`` measures energy at init for
    every evaluated candidate after the search (on ``workers`` local processes
    or the Ray cluster at ``ray_address``) on ``energy_batch`` all-ones images
    (recorded in the results). ``constants`` override the
    published ones (population, iterations, select, mutations, crossovers,
    s_prob, m_prob). Returns a
    :class:`~nmtoolchain.methods.autost.search.SearchResult`; with ``out_dir``
    also writes candidates.jsonl, best_config.json, best.pt, summary.json and
    the proxy/energy plot (their paths in ``result.notes``). ``progress(n, g)`` hears of n
    candidates evaluated by generation g, then (``energy``) of n of N energies
    measured as ``progress(n, -N)``."""
    from nmtoolchain.methods.autost.evaluate import EnergyJob, Scorer
    from nmtoolchain.methods.autost.search import FitConstraint, SearchConfig, run_search

    lo, hi = (float(v) for v in params)
    if not 0 <= lo <= hi:
        raise BadInputError(f"--params {lo:g}-{hi:g}: expected MIN <= MAX, both >= 0")
    known = {"population", "iterations", "select", "mutations", "crossovers", "s_prob",
             "m_prob", "num_classes"}
    unknown = sorted(set(constants) - known)
    if unknown:
        raise BadInputError(f"search: unknown setting(s) {unknown}; known: {sorted(known)}")
    cfg = SearchConfig(space=space, min_params=lo, max_params=hi, seed=int(seed),
                       energy_weight=float(energy_weight), energy_budget_j=energy_budget_j,
                       profile=profile, fit=FitConstraint.parse(fit) if fit else None,
                       **constants)
    job = EnergyJob(profile=profile, batch=int(energy_batch), seed=int(seed),
                    num_classes=cfg.num_classes)
    with Scorer(job, workers=int(workers), ray_address=ray_address) as scorer:
        result = run_search(cfg, scorer if cfg.needs_energy() else None, progress)
        if energy or cfg.needs_energy():
            result.energy_setup = job.describe()
        if energy and not cfg.needs_energy():
            import time

            t0 = time.perf_counter()
            todo = [ev for ev in result.evaluated if ev.energy_pj is None]
            step = max(1, 16 * int(workers))  # progress after every slice
            for i in range(0, len(todo), step):
                part = todo[i:i + step]
                for ev, e in zip(part, scorer([ev.candidate for ev in part])):
                    ev.energy_pj = float(e)
                if progress is not None:
                    progress(i + len(part), -len(todo))
            result.notes.append(f"energy at init of {len(todo)} candidates on {profile}: "
                                f"{time.perf_counter() - t0:.1f} s with "
                                + (f"Ray at {ray_address or 'local'}" if ray_address is not None
                                   else f"{workers} worker(s)"))
    if out_dir is not None:
        from nmtoolchain.methods.autost.outputs import write_results

        files = write_results(result, Path(out_dir))
        result.notes.extend(f"wrote {k}: {v}" for k, v in files.items())
    return result


__all__ = ["load", "convert", "simulate", "report", "export", "verify", "check_accuracy",
           "search", "Simulation", "DEFAULT_SAMPLES"]
