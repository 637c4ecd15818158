"""The ``nmtc`` command line: thin wrappers over :mod:`nmtoolchain.api`.

Commands parse options, call the API and render what it returns.

Exit codes: 0 success, 1 a failed check (e.g. accuracy below a gate),
2 bad input (any :class:`~nmtoolchain.errors.NmtcError`: one line on stderr,
no traceback unless ``--debug``), 3 an internal error (a bug in nmtc),
130 interrupted (Ctrl-C).

Global options (``--debug``, ``--quiet/-q``) may come before or after the
subcommand. With ``--json`` a command prints only JSON on stdout: anything
else written to stdout while it runs (by nmtc or by a library) goes to stderr.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import typer

from nmtoolchain import __version__
from nmtoolchain.errors import BadInputError, NmtcError

app = typer.Typer(
    name="nmtc",
    help="Deploy spiking neural networks onto neuromorphic hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state: dict = {"debug": False, "quiet": False, "json": None}
GLOBAL_FLAGS = ("--debug", "--quiet", "-q")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nmtc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug",
                               help="Show a traceback on errors (also after the subcommand)."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="Print only results: no progress, notes or warnings "
                                    "(errors still print)."),
) -> None:
    """nmtc: one IR, many passes, many back ends (Loihi 2 via Lava, Speck via sinabs, NIR)."""
    _state["debug"] = _state["debug"] or debug
    _state["quiet"] = _state["quiet"] or quiet
    if _state["quiet"]:
        warnings.simplefilter("ignore")


def _info(message: str) -> None:
    """What a command did, e.g. "wrote FILE", on stdout (silenced by --quiet)."""
    if not _state["quiet"]:
        typer.echo(message)


def _note(message: str) -> None:
    """A notice about the invocation itself, on stderr (silenced by --quiet)."""
    if not _state["quiet"]:
        typer.echo(message, err=True)


def _emit_json(obj: Any, default: Callable[[Any], Any] = float) -> None:
    """The command's JSON result; main() prints it on the real stdout."""
    _state["json"] = json.dumps(obj, indent=2, default=default)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output (CI logs, files) gets a wide table instead of rich's 80 columns
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 140)


def _shape(input_shape: Optional[str]):
    from nmtoolchain.frontends import parse_shape

    return parse_shape(input_shape) if input_shape else None


def _load(model: Path, allow_pickle: bool, input_shape: Optional[str],
          dt: Optional[float] = None, arch: Optional[str] = None,
          config: Optional[str] = None):
    from nmtoolchain.api import load

    return load(model, allow_pickle=allow_pickle, input_shape=_shape(input_shape), dt=dt,
                arch=arch, config=_config(config))


def _config(text: Optional[str]) -> Optional[Dict[str, Any]]:
    """``--config``: a JSON object, inline or in a .json file."""
    if text is None:
        return None
    raw = text
    if text.strip().endswith(".json") and Path(text.strip()).is_file():
        raw = Path(text.strip()).read_text()
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise BadInputError(f"--config {text!r}: not JSON ({e}); e.g. "
                            "'{\"sizes\": [64, 32, 10]}' or a .json file") from None
    if not isinstance(value, dict):
        raise BadInputError(f"--config {text!r}: expected a JSON object of settings")
    return value


def _with_arch(model: Path, arch: Optional[str], config: Optional[str], allow_pickle: bool,
               input_shape: Optional[str], dt: Optional[float]):
    """(model, input_shape, dt) for the API: with --arch/--config the state_dict
    file is loaded here into its graph (which then needs neither option)."""
    if arch is None and config is None:
        return model, input_shape, dt
    return _load(model, allow_pickle, input_shape, dt, arch, config), None, None


ALLOW_PICKLE = typer.Option(
    False, "--allow-code", "--allow-pickle",
    help="Consent to running code from the model file: unpickling a pickled nn.Module, or "
         "loading a TorchScript archive whose code runs at load (__setstate__) or reaches the "
         "file system. Without it such files are refused. Only for files you trust.")
INPUT_SHAPE = typer.Option(
    None, "--input-shape", help="Per-sample input shape, e.g. 1,8,8 (for torch files without one).")
ARCH = typer.Option(
    None, "--arch", help="A state_dict file's architecture, one of nmtc's own (mlp, cnn, "
                         "mini_mst, spikformer, atsnn); with --config.")
CONFIG = typer.Option(
    None, "--config", help="With --arch: the architecture's settings as JSON (inline or a .json "
                           "file), e.g. '{\"sizes\": [64, 32, 10]}'; missing keys take defaults.")
DT = typer.Option(
    None, "--dt", help="Simulation step of a NIR file's time constants, in their unit: 1e-4 for "
                       "snnTorch's files (norse 1.1.0 writes dt x tau: 1e-6 for its 1e-3 step); "
                       "1 reads them as steps.")


# Shared options. --samples has one default (16) in simulate, report and verify:
# enough samples for stable per-sample rates and energies, and a Lava run that
# stays around a minute; check-accuracy measures all samples unless told.
DATASET = typer.Option(None, "--dataset", help="Bundled data set: digits (scikit-learn's 8x8 "
                                                 "digits; test split: 25%, stratified, seed 0).")
DATA = typer.Option(None, "--data", help="Inputs: a .npz with x (y optional, other arrays "
                                           "ignored) or a .npy array; static (N, *shape) or "
                                           "per-step (N, T, *shape), detected by the model's "
                                           "input shape.")
TIMESTEPS = typer.Option(16, "--timesteps", "-T", help="Time steps to simulate.")
NUMERICS = typer.Option("float", "--numerics",
                        help="float (reference), loihi (bit-exact with Lava) or speck (with sinabs).")
SAMPLES = typer.Option(16, "--samples", help="At most this many input samples.")
RESET = typer.Option(None, "--reset-interval",
                     help="netx LIFReset interval (Loihi numerics), e.g. 16 for Intel's pilotnet.")
JSON = typer.Option(False, "--json", help="Print only JSON on stdout.")
DEVICE = typer.Option("cpu", "--device", help="Where the simulator runs: cpu or cuda[:N].")


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="Model file: TorchScript, nmtc checkpoint, ONNX, NIR, "
                                           "netx .net or nmtc .nmir."),
    as_json: bool = JSON,
    allow_pickle: bool = ALLOW_PICKLE,
    input_shape: Optional[str] = INPUT_SHAPE,
    dt: Optional[float] = DT,
    arch: Optional[str] = ARCH, config: Optional[str] = CONFIG,
) -> None:
    """Show a model's nodes, parameter/synapse/MAC totals and which targets can take it."""
    from nmtoolchain.report.inspect import inspect_graph, render_inspection

    info = inspect_graph(_load(model, allow_pickle, input_shape, dt, arch, config))
    if as_json:
        _emit_json(info, default=str)
    else:
        render_inspection(info, _console())


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    target: str = typer.Option(..., "--target", "-t",
                               help="A registered target: loihi2, nir, onnx, nmir (nmtc inspect lists "
                                    "them with their verdicts)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="Output file (nir, nmir) or directory (loihi2; default: MODEL's name + '.loihi2')."),
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", help="Hardware profile, a bundled name or a .toml path "
                                      "(default: the target's own, e.g. loihi2)."),
    calib: Optional[str] = typer.Option(
        None, "--calib", help="Calibration data for quantization/adaptation: digits (its train "
                              "split) or a .npz with x (y optional) or a .npy array."),
    timesteps: int = typer.Option(16, "--timesteps", "-T",
                                  help="Time steps per sample (calibration, verify advice)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output (file or "
                                                      "directory); without it nmtc refuses."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print JSON (a directory target: the report; a file: the path)."),
    allow_pickle: bool = ALLOW_PICKLE,
    input_shape: Optional[str] = INPUT_SHAPE,
    dt: Optional[float] = DT,
    nir_version: Optional[str] = typer.Option(
        None, "--nir-version", help="--target nir: the NIR version to write (default: the "
                                    "installed nir's); 1.0.5 and older reset by subtraction."),
    min_agreement: Optional[float] = typer.Option(
        None, "--min-agreement",
        help="--target loihi2 with --calib: exit 1 when fewer than this fraction of the "
             "calibration samples predict the same class as the source model (in [0, 1])."),
    arch: Optional[str] = ARCH, config: Optional[str] = CONFIG,
) -> int:
    """Export a model to a target, atomically (no partial output on failure).

    The target's pass pipeline runs first (loihi2: adapt a converted network, fold
    scales and pooling, quantize, map onto cores); report.txt lists what each pass did.
    loihi2 writes a directory: network.net (lava-dl netx), network.nmir, mapping.json,
    report.txt and report.json.
    """
    from nmtoolchain.frontends import parse_shape
    from nmtoolchain.targets import ExportOptions, export as export_to

    if nir_version is not None and target != "nir":
        raise BadInputError(f"--nir-version applies to --target nir, not {target}")
    if min_agreement is not None and (target != "loihi2" or calib is None
                                      or not 0.0 <= min_agreement <= 1.0):
        raise BadInputError("--min-agreement takes a fraction in [0, 1] and applies to "
                            "--target loihi2 with --calib (the data it is measured on)")
    extra = {"nir_version": nir_version} if nir_version is not None else {}
    model, input_shape, dt = _with_arch(model, arch, config, allow_pickle, input_shape, dt)
    with _progress(timesteps):  # calibration runs show their steps on a terminal
        result = export_to(model, target, output,
                           ExportOptions(profile=profile, calib=calib, timesteps=timesteps,
                                         force=force, extra=extra),
                           allow_pickle=allow_pickle,
                           input_shape=parse_shape(input_shape) if input_shape else None,
                           dt=dt)
    if as_json:
        _emit_json(result.report if result.path.is_dir()
                   else {"target": result.target, "path": str(result.path)}, default=str)
    elif result.path.is_dir():
        if not _state["quiet"]:
            typer.echo("\n".join(result.lines))
            typer.echo(f"wrote {result.path}/ ({', '.join(result.files)})")
    else:
        _info(f"wrote {result.path}")
    return _agreement_gate(result.report, min_agreement)


def _agreement_gate(report: Any, min_agreement: Optional[float]) -> int:
    """Exit 1 (and say so on stderr) when the export's agreement with its source is
    below ``--min-agreement``; the export is written either way, for inspection."""
    if min_agreement is None:
        return 0
    ag = report.get("agreement") if isinstance(report, dict) else None
    if ag is None:
        raise BadInputError("--min-agreement: this export measured no agreement (a netx "
                            "export with --calib measures it)")
    if ag["agreement"] >= min_agreement:
        return 0
    typer.echo(f"nmtc: agreement with the source model {ag['agreement']:.3f} is below "
               f"--min-agreement {min_agreement:g} (the export was written; see its report)",
               err=True)
    return 1


@app.command()
def verify(
    directory: Path = typer.Argument(
        ..., help="A directory written by nmtc export (--target loihi2 or speck)."),
    data: Optional[Path] = DATA,
    dataset: Optional[str] = DATASET,
    timesteps: Optional[int] = typer.Option(
        None, "--timesteps", "-T",
        help="Time steps (default: the export's timesteps + pipeline depth)."),
    steps: Optional[int] = typer.Option(None, "--steps", hidden=True,
                                        help="Deprecated name of --timesteps."),
    samples: int = SAMPLES,
    reset_interval: Optional[int] = RESET,
    as_json: bool = JSON,
    against: Optional[Path] = typer.Option(
        None, "--against", help="The source model: also measure how often the export "
                                "predicts what the source predicts (float), on --data or "
                                "--dataset (default: the digits test split)."),
    min_agreement: Optional[float] = typer.Option(
        None, "--min-agreement", help="With --against: exit 1 below this agreement."),
    dt: Optional[float] = DT,
) -> int:
    """Run an export in its referee and in nmtc; exit 1 if they differ.

    Loihi 2: Lava (fixed_pt) against nmtc's loihi numerics; Speck: sinabs against
    nmtc's speck numerics.

    Prints "identical" or the first divergence (layer, step, neuron, both values) per
    sample, and the ms/step of both.
    """
    from nmtoolchain.api import verify as verify_export

    if steps is not None:
        if timesteps is not None:
            raise BadInputError("give -T/--timesteps (--steps is its deprecated name), not both")
        _note("nmtc: note: --steps is deprecated; use -T/--timesteps")
        timesteps = steps
    if min_agreement is not None and against is None:
        raise BadInputError("--min-agreement applies with --against MODEL")
    result = verify_export(directory, data, dataset=dataset, timesteps=timesteps,
                           samples=samples, reset_interval=reset_interval)
    agreement = _against(directory, against, data, dataset, samples, dt) \
        if against is not None else None
    if as_json:
        out = result.as_dict()
        if agreement is not None:
            out = {"agreement": agreement.as_dict(), **out}
        _emit_json(out)
    else:
        typer.echo("\n".join((agreement.lines() if agreement is not None else [])
                              + result.lines()))
    per_sample = getattr(result, "samples", None)  # loihi2: one record per sample
    events = [getattr(s, "events", None) for s in per_sample] \
        if isinstance(per_sample, (list, tuple)) else []
    silent = [i for i, e in enumerate(events) if e == 0]
    if events and len(silent) == len(events):
        _note("nmtc: warning: no sample produced a single event (spike) in any layer; "
              "'identical' compares silent networks (check the input data and scaling)")
    elif silent:
        _note(f"nmtc: warning: {len(silent)} of {len(events)} samples produced no event (spike) "
              f"in any layer (first: sample {silent[0]}); 'identical' says nothing about them")
    rc = 0 if result.identical else 1
    if agreement is not None and min_agreement is not None and \
            agreement.agreement < min_agreement:
        typer.echo(f"nmtc: agreement with the source model {agreement.agreement:.3f} is below "
                   f"--min-agreement {min_agreement:g}", err=True)
        rc = 1
    return rc


def _against(directory: Path, model: Path, data: Optional[Path], dataset: Optional[str],
             samples: int, dt: Optional[float]) -> Any:
    """Source-vs-export agreement for ``verify --against``."""
    from nmtoolchain.api import _inputs, load
    from nmtoolchain.targets.agreement import against_source

    source = load(model, dt=dt)
    if data is None and dataset is None:
        return against_source(directory, source, None, None, "")
    inputs = _inputs(source, data, None, dataset, samples)
    return against_source(directory, source, inputs.x, inputs.y, inputs.description)


class _LazyBar:
    """A rich progress bar on stderr that appears only when a run reports its first
    step: a command failing before (bad file, bad option) prints its one error
    line and nothing else, not a bar's teardown. Each run (what, total) gets its
    own line of progress, replacing the previous one."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._key: Any = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total} steps"),
                                 TimeRemainingColumn(), console=_console(stderr=True),
                                 transient=True)
            self._bar.start()
        if self._key != (what, total):
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(what, total=total)
            self._key = (what, total)
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _progress_wanted() -> bool:
    """Progress bars: on a terminal only, never with --quiet or --json."""
    return not (_state["quiet"] or _state.get("json_mode") or not sys.stderr.isatty())


@contextlib.contextmanager
def _progress(timesteps: int) -> Iterator[Optional[Callable[[int], None]]]:
    """The progress of a command's runs on stderr (see :class:`_LazyBar`): yields
    a callback for the command's own simulation (``timesteps`` steps) and listens
    to runs started deeper down (calibration, accuracy curves); None and no
    listener where no bar is wanted."""
    if not _progress_wanted():
        yield None
        return
    from nmtoolchain.progress import listening

    bar = _LazyBar()
    try:
        with listening(bar):
            yield lambda t: bar("simulating", t, timesteps)
    finally:
        bar.close()


PROFILE = typer.Option("loihi2", "--profile", "-p",
                       help="Hardware profile: a bundled name or a .toml path.")
RULE_HELP = ("Counting rule: fanout (hardware), neurobench (NeuroBench 2.3 SynapticOperations; "
             "its MAC/AC split is decided per step over the simulated batch, as NeuroBench "
             "decides per forward call), neurobench-sample (the same split per sample, as "
             "NeuroBench at batch size 1), syops or spikformer. Default: the profile's own.")


@app.command()
def simulate(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    profile: str = PROFILE,
    dataset: Optional[str] = DATASET, data: Optional[Path] = DATA,
    timesteps: int = TIMESTEPS, numerics: str = NUMERICS, samples: int = SAMPLES,
    reset_interval: Optional[int] = RESET,
    as_json: bool = JSON,
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
    rule: Optional[str] = typer.Option(None, "--rule", help=RULE_HELP),
    device: str = DEVICE, dt: Optional[float] = DT,
    arch: Optional[str] = ARCH, config: Optional[str] = CONFIG,
    save: Optional[Path] = typer.Option(
        None, "--save", help="Also write the run to this .npz: output.NAME (N, T, ...) per "
                             "output, layer.NAME per recorded layer (see --record), x, and y "
                             "when labels were given."),
    record: str = typer.Option(
        "neurons", "--record", help="With --save: the layers to keep, per step: neurons "
                                    "(every neuron layer), all, none, or names (comma-separated)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --save file."),
) -> None:
    """Simulate a model step by step; print counts, energy and latency under one profile."""
    from nmtoolchain.api import simulate as run_simulation
    from nmtoolchain.report.simulation import render_report

    if save is not None:
        from nmtoolchain.fileio import refuse_existing_output

        refuse_existing_output(save, force, "--save")
        if save.suffix != ".npz":
            raise BadInputError(f"--save {save}: expected a .npz file name")
    source, input_shape, dt = _with_arch(model, arch, config, allow_pickle, input_shape, dt)
    with _progress(timesteps) as progress:
        run = run_simulation(source, data, dataset=dataset, timesteps=timesteps,
                             numerics=numerics, samples=samples, profile=profile,
                             reset_interval=reset_interval, input_shape=_shape(input_shape),
                             allow_pickle=allow_pickle, progress=progress, rule=rule,
                             device=device, dt=dt, record=_record(record) if save else None)
    if save is not None:
        from nmtoolchain.report.saved_run import save_run

        save_run(run, save)
        _info(f"wrote {save}")
    if as_json:
        _emit_json(run.report)
    else:
        render_report(run.report, _console())


DEFAULT_REPORT_PROFILES = "loihi2,loihi1,speck,cmos45nm"


@app.command()
def report(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    profile: Optional[List[str]] = typer.Option(
        None, "--profile", "-p",
        help="Hardware profiles to price: bundled names or .toml paths, comma-separated or "
             f"repeated (default: {DEFAULT_REPORT_PROFILES})."),
    profiles: Optional[str] = typer.Option(None, "--profiles", hidden=True,
                                           help="Old name of --profile."),
    reference: str = typer.Option("cmos45nm", "--reference",
                                  help="Profile the others are compared against."),
    measured: Optional[str] = typer.Option(
        None, "--measured", help="Compare with a measurement stored in a profile, e.g. pilotnet_lif."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --html file."),
    rule: Optional[List[str]] = typer.Option(
        None, "--rule", help=RULE_HELP + " Several (comma-separated or repeated): the first "
        "prices the table, all are listed under by_rule."),
    dataset: Optional[str] = DATASET, data: Optional[Path] = DATA,
    timesteps: int = TIMESTEPS, numerics: str = NUMERICS, samples: int = SAMPLES,
    reset_interval: Optional[int] = RESET,
    as_json: bool = JSON,
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
    device: str = DEVICE, dt: Optional[float] = DT,
    arch: Optional[str] = ARCH, config: Optional[str] = CONFIG,
) -> None:
    """Energy and latency per hardware profile, and where the profiles disagree."""
    from nmtoolchain.api import report as run_report
    from nmtoolchain.report.simulation import render_report, write_html

    given = list(profile or []) + ([profiles] if profiles is not None else [])
    if not given:
        given = [DEFAULT_REPORT_PROFILES]
    names = [p.strip() for text in given for p in text.split(",") if p.strip()]
    if not names:
        raise BadInputError("--profile is empty")
    if html_out is not None:
        from nmtoolchain.fileio import refuse_existing_output

        refuse_existing_output(html_out, force, "--html")
    source, input_shape, dt = _with_arch(model, arch, config, allow_pickle, input_shape, dt)
    with _progress(timesteps) as progress:
        run = run_report(source, data, dataset=dataset, profiles=names, reference=reference,
                         measured=measured, timesteps=timesteps, numerics=numerics,
                         samples=samples, reset_interval=reset_interval,
                         input_shape=_shape(input_shape), allow_pickle=allow_pickle,
                         progress=progress,
                         rules=[r.strip() for t in (rule or []) for r in t.split(",")
                                if r.strip()] or None,
                         device=device, dt=dt)
    if html_out is not None:
        write_html(run.report, html_out)
    if as_json:
        _emit_json(run.report)
    else:
        render_report(run.report, _console())
        if html_out is not None:
            _info(f"wrote {html_out}")


@app.command()
def convert(
    model: Path = typer.Argument(..., help="ANN model file: QCFS activations (--method mst) or "
                                           "ReLU (--method threshold)."),
    method: str = typer.Option(..., "--method", help="Conversion rule: mst (QCFS -> IF) or "
                                                     "threshold (ReLU -> IF, threshold balancing)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output SNN graph (.nmir)."),
    timesteps: Optional[int] = typer.Option(
        None, "--timesteps", "-T", help="Intended time steps (recorded in the graph)."),
    no_precharge: bool = typer.Option(
        False, "--no-precharge", help="--method mst: start membranes at 0 instead of λ/2."),
    calib: Optional[str] = typer.Option(
        None, "--calib", help="--method threshold: data the activation scales are measured on: "
                              "digits (train split) or a .npz with x (or a .npy), inputs in "
                              "[0, max]."),
    percentile: float = typer.Option(
        99.9, "--percentile", help="--method threshold: each layer's scale is this percentile "
                                   "of its ReLU outputs on --calib (100: the maximum, Diehl et "
                                   "al. 2015; 99.9: Rueckauer et al. 2017's robust "
                                   "normalization)."),
    input_max: Optional[float] = typer.Option(
        None, "--input-max", help="--method threshold: the input value coded as one spike per "
                                  "step (default: the largest --calib value)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
    dt: Optional[float] = DT,
    arch: Optional[str] = ARCH, config: Optional[str] = CONFIG,
) -> None:
    """Convert an ANN into an IF SNN graph and write it atomically.

    mst: a QCFS-trained ANN (MST/QCFS rule). threshold: a plain ReLU CNN or MLP
    (Conv2d/Linear, ReLU, average pooling, flatten; BatchNorm folded) by
    data-based normalization; its input is rate-coded and its class is the output
    neuron that spikes most. Max pooling is refused (use average pooling).
    """
    from nmtoolchain.api import convert as convert_model
    from nmtoolchain.fileio import refuse_existing_output
    from nmtoolchain.ir import save_graph

    refuse_existing_output(output, force)
    if method != "threshold" and (input_max is not None or percentile != 99.9):
        raise BadInputError("--percentile and --input-max apply to --method threshold")
    if method == "threshold" and no_precharge:
        raise BadInputError("--no-precharge applies to --method mst")

    source, input_shape, dt = _with_arch(model, arch, config, allow_pickle, input_shape, dt)
    snn = convert_model(source, method=method, timesteps=timesteps, precharge=not no_precharge,
                        calib=calib, percentile=percentile, input_max=input_max,
                        input_shape=_shape(input_shape), allow_pickle=allow_pickle, dt=dt)
    path = save_graph(snn, output)
    n_if = sum(1 for n in snn if n.op_name == "IF")
    if method == "threshold":
        conv = snn.metadata["conversion"]
        lams = ", ".join(f"{k} {v:.3g}" for k, v in conv["lambdas"].items())
        _info(f"wrote {path} ({n_if} IF layer(s), reset to 0; λ = {conv['percentile']:g}th "
              f"percentile on {conv['calibration']}: {lams}; input rate-coded, x_max "
              f"{snn.metadata['input_encoding']['x_max']:g})")
    else:
        _info(f"wrote {path} ({n_if} IF layer(s), precharge {'off' if no_precharge else 'on'})")


@app.command("check-accuracy")
def check_accuracy(
    model: Path = typer.Argument(..., help="Model file: an ANN (QCFS or ReLU) or a spiking "
                                           "network."),
    dataset: Optional[str] = DATASET,
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled data: .npz with x and y."),
    timesteps: int = typer.Option(32, "--timesteps", "-T", help="Largest number of time steps."),
    samples: Optional[int] = typer.Option(
        None, "--samples", help="At most this many samples (default: all; a gate should "
                                "measure the whole split)."),
    min_accuracy: Optional[float] = typer.Option(
        None, "--min-accuracy", help="Gate: SNN accuracy at T_max must be >= A (in [0, 1])."),
    max_drop: Optional[float] = typer.Option(
        None, "--max-drop", help="Gate: ANN accuracy minus SNN accuracy at T_max must be <= D."),
    no_precharge: bool = typer.Option(
        False, "--no-precharge", help="Start membranes at 0 instead of λ/2."),
    target: Optional[str] = typer.Option(
        None, "--target", help="Also measure the target's fixed-point export (loihi2, speck) at T_max; "
                               "the gate then applies to it."),
    calib: Optional[str] = typer.Option(
        None, "--calib", help="Calibration data for --target: digits or a .npz with x "
                              "(default: the digits train split with --dataset digits, else --data)."),
    seed: int = typer.Option(0, "--seed", help="Run seed of the spike masks (RSM); recorded."),
    method: Optional[str] = typer.Option(
        None, "--method", help="How an ANN becomes an SNN: mst (QCFS) or threshold (ReLU, "
                               "threshold balancing on --calib, else the digits train split "
                               "or --data); default: threshold for ReLU networks, else mst."),
    percentile: float = typer.Option(99.9, "--percentile",
                                     help="--method threshold: activation percentile."),
    as_json: bool = JSON,
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
    dt: Optional[float] = DT,
    arch: Optional[str] = ARCH, config: Optional[str] = CONFIG,
) -> int:
    """Accuracy of the ANN and of its converted SNN against time step; exit 1 if a gate fails.

    Without --min-accuracy or --max-drop it reports the accuracies with no verdict (exit 0).

    The test split of --dataset digits, or all of --data. The SNN sees the image at every
    step (rate-coded for a threshold-balanced network) and predicts by the argmax of its
    summed output. With --target loihi2 the network
    nmtc export would write is also run bit-exactly in Loihi fixed point.
    """
    from nmtoolchain.api import check_accuracy as run_check

    source, input_shape, dt = _with_arch(model, arch, config, allow_pickle, input_shape, dt)
    with _progress(timesteps):  # each accuracy run shows its steps on a terminal
        res = run_check(source, data, dataset=dataset, timesteps=timesteps, samples=samples,
                        min_accuracy=min_accuracy, max_drop=max_drop, target=target,
                        calib=calib, precharge=not no_precharge,
                        input_shape=_shape(input_shape), allow_pickle=allow_pickle, seed=seed,
                        dt=dt, method=method, percentile=percentile)
    res = dataclasses.replace(res, model=str(model))
    if as_json:
        _emit_json(res.as_dict())
    else:
        if not _state["quiet"]:
            ref = "float SNN accuracy at T_max (a spiking model: no conversion)" \
                if res.spiking else f"ANN accuracy (SNN by {res.method} conversion)"
            typer.echo(f"{model.name} on {res.data}: {ref} {res.ann_accuracy:.4f}")
            typer.echo(f"{'T':>6}  {'SNN acc':>8}  {'ANN - SNN' if not res.spiking else 'ref - SNN':>9}")
            for t, a in res.curve:
                typer.echo(f"{t:>6}  {a:>8.4f}  {res.ann_accuracy - a:>9.4f}")
            if res.target is not None:
                k = (f", headroom k={res.target.headroom}" if res.target.headroom is not None
                     else "")
                coded = "rate-coded input" if res.rate_coded or not res.spiking \
                    else "graded input"
                typer.echo(f"{res.target.name} export in fixed point (T={res.timesteps}, "
                           f"{coded}{k}): {res.target.accuracy:.4f}")
        verdict = {"pass": "PASS", "fail": "FAIL", "none": "accuracy reported, nothing judged"}
        typer.echo(f"gate: {res.gate}: {verdict[res.verdict]} (mask seed {res.seed})")
    return 1 if res.passed is False else 0


@app.command()
def search(
    space: str = typer.Option("small", "--space", help="AutoST search space: tiny, small or base."),
    params: str = typer.Option("11-12", "--params",
                               help="Parameter window MIN-MAX in millions (100-class head)."),
    profile: str = typer.Option("cmos45nm", "--profile", "-p",
                                help="Profile that prices energy at initialisation."),
    energy_budget: Optional[float] = typer.Option(
        None, "--energy-budget", help="Energy budget in J per inference (measured at init)."),
    energy_weight: float = typer.Option(
        0.0, "--energy-weight", help="Fitness = GFLOPs - weight x energy at init (mJ)."),
    fit: Optional[str] = typer.Option(None, "--fit",
                                      help="Hardware fit: loihi2:K (at most K chips) or speck."),
    energy: bool = typer.Option(False, "--energy",
                                help="Measure energy at init of every evaluated candidate."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw."),
    workers: int = typer.Option(1, "--workers", help="Local processes scoring energy."),
    ray: Optional[str] = typer.Option(None, "--ray",
                                      help="Score energy on this Ray cluster ('' or auto)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder for the results."),
    as_json: bool = JSON,
) -> None:
    """AutoST: training-free evolutionary search of a spiking transformer (FLOPs proxy)."""
    from nmtoolchain.api import search as run_search
    from nmtoolchain.methods.autost.outputs import summary

    lo, sep, hi = params.partition("-")
    try:
        window = (float(lo) * 1e6, float(hi) * 1e6)
    except ValueError:
        raise BadInputError(f"--params {params!r}: expected MIN-MAX in millions, e.g. 11-12") \
            from None
    with _search_progress() as progress:
        result = run_search(space, params=window, profile=profile, energy_weight=energy_weight,
                            energy_budget_j=energy_budget, fit=fit, seed=seed, workers=workers,
                            ray_address=ray, energy=energy, out_dir=out, progress=progress)
    info = summary(result)
    if as_json:
        _emit_json(info)
        return
    best = info["best"]
    _info(f"AutoST {space} space, seed {seed}: {info['evaluated']} candidates evaluated "
          f"({info['draws']} drawn) in {result.wall_s:.1f} s")
    _info(f"best {best['label']}: {best['gflops_syops']:.3f} GFLOPs (syops), "
          f"{best['parameters'] / 1e6:.3f} M parameters, {best['macs_clean'] / 1e9:.3f} G MACs")
    for line in result.notes:
        _info(line)


@contextlib.contextmanager
def _search_progress() -> Iterator[Optional[Callable[[int, int], None]]]:
    """A progress bar of evaluated candidates (a terminal only, not with --quiet)."""
    if _state["quiet"] or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(TextColumn("searching"), BarColumn(), TextColumn("{task.description}"),
                  console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=None)
        yield lambda n, gen: bar.update(
            task, description=f"{n} evaluated, generation {gen}" if gen >= 0
            else f"energy at init: {n} of {-gen}")


@app.command()
def demo(as_json: bool = JSON) -> None:
    """Run the main job on the embedded default (bundled digits model and data)."""
    from nmtoolchain.demo import _plain, run_demo

    if as_json:
        _emit_json(run_demo(as_json=False, console=None), default=_plain)
    else:
        run_demo(as_json=False, console=_console())


def _record(text: str) -> Any:
    """``--record``: 'neurons', 'all', None for 'none', or a list of node names."""
    text = text.strip()
    if text in ("neurons", "all"):
        return text
    if text in ("none", ""):
        return None
    return [n.strip() for n in text.split(",") if n.strip()]


def _hoist_global_flags(args: List[str]) -> List[str]:
    """Move --debug/--quiet/-q found after the subcommand in front of it (up to a
    ``--``), so ``nmtc inspect x.onnx --debug`` works like ``nmtc --debug inspect``."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return flags + rest + args[end:]


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """While a --json command runs, send stdout (Python's and file descriptor 1,
    which child processes inherit) to stderr, so only the JSON reaches stdout."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved, saved_fd = sys.stdout, None
    try:
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no real descriptor 1 (embedded use): Python-level redirect only
        saved_fd = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = saved
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


class _Interrupted(BaseException):
    """Ctrl-C as nmtc's own SIGINT handler raises it: not a KeyboardInterrupt, so no CLI
    framework turns it into a silent exit code (newer typer returns 130 without a word)
    before nmtc can say what happened."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise _Interrupted()


@contextlib.contextmanager
def _sigint_as_interrupted() -> Iterator[None]:
    """Route SIGINT to :class:`_Interrupted` while a command runs, only where Python's
    default handler is in place (a caller that ignores SIGINT keeps ignoring it)."""
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous = signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_raising(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` with a KeyboardInterrupt raised inside it (Ctrl-C caught by a
    library, or raised by hand) re-raised as :class:`_Interrupted`, which typer passes on."""
    if getattr(callback, "_nmtc_interrupts", False):
        return callback

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Interrupted() from e

    run._nmtc_interrupts = True  # type: ignore[attr-defined]
    return run


def _route_interrupts() -> None:
    """Every command's callback hands Ctrl-C to :func:`main` (see :class:`_Interrupted`)."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = _interrupt_raising(info.callback)


def _cli_exception_types() -> Tuple[tuple, tuple, tuple]:
    """(exit, abort, usage-error) exception classes of the click that typer runs on.

    typer up to 0.1x runs on click and raises click's classes; newer typer carries its
    own copy (``typer._click``) with its own ``Exit``/``Abort``, which click's classes do
    not catch. Both are collected so either install gives one-line errors."""
    exits, aborts, usage = [typer.Exit], [typer.Abort], []
    try:
        import click
    except ImportError:  # newer typer does not need click
        pass
    else:
        exits.append(click.exceptions.Exit)
        aborts.append(click.exceptions.Abort)
        usage.append(click.ClickException)
    try:
        from typer import _click as typer_click  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        usage.append(typer_click.exceptions.ClickException)
    return tuple(exits), tuple(aborts), tuple(usage)


def main(argv: Optional[List[str]] = None) -> int:
    """Console-script entry point; turns nmtc errors into one line and exit 2."""
    exit_types, abort_types, usage_types = _cli_exception_types()
    _route_interrupts()
    args = _hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    head = args[:args.index("--")] if "--" in args else args
    debug = "--debug" in head
    json_mode = "--json" in head and not ({"-h", "--help"} & set(head))
    _state.update(debug=debug, quiet=False, json=None, json_mode=json_mode)
    try:
        with _sigint_as_interrupted(), _stdout_to_stderr(json_mode), warnings.catch_warnings():
            if not debug:
                # library warnings (torch, numpy casts) are not nmtc's words: a failure
                # prints one line; what matters is checked and refused by nmtc itself
                warnings.simplefilter("ignore")
            rv = app(args=args, prog_name="nmtc", standalone_mode=False)
        if _state["json"] is not None:
            sys.stdout.write(_state["json"] + "\n")
            sys.stdout.flush()
        return int(rv) if isinstance(rv, int) else 0
    except NmtcError as e:
        if debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"nmtc: error: {msg}", file=sys.stderr)
        return e.exit_code
    except exit_types as e:  # newer typer turns Ctrl-C into Exit(130)
        if isinstance(e.__cause__, KeyboardInterrupt):
            print("nmtc: interrupted", file=sys.stderr)
            return 130
        return e.exit_code
    except abort_types as e:  # click's wrapping of Ctrl-C (and of EOF at a prompt)
        if isinstance(e.__cause__, KeyboardInterrupt):
            print("nmtc: interrupted", file=sys.stderr)
            return 130
        print("nmtc: aborted", file=sys.stderr)
        return 1
    except usage_types as e:  # usage errors: one line, not click's three
        where = getattr(getattr(e, "ctx", None), "command_path", None) or "nmtc"
        msg = " ".join(e.format_message().split())
        print(f"nmtc: error: {msg} (see '{where} --help')", file=sys.stderr)
        return 2
    except (_Interrupted, KeyboardInterrupt):
        print("nmtc: interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:  # a run too large for this machine: the user can shrink it
        if debug:
            raise
        print(f"nmtc: error: out of memory ({' '.join(str(e).split())[:200]}); use fewer "
              "--timesteps or --samples", file=sys.stderr)
        return 2
    except Exception as e:  # a bug in nmtc: still one line, traceback on --debug
        if debug:
            raise
        print(f"nmtc: internal error: {type(e).__name__}: {e} (re-run with --debug for a "
              "traceback and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
