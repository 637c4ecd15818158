"""The ``nmtc`` command line: thin wrappers over library functions.

Exit codes: 0 success, 1 a failed check (e.g. accuracy below a gate),
2 bad input (any :class:`~nmtoolchain.errors.NmtcError`: one line on stderr,
no traceback unless ``--debug``), 3 an internal error (a bug in nmtc).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

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

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nmtc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show a traceback on errors."),
) -> None:
    """nmtc: one IR, many passes, many back ends (Loihi 2 via Lava, Speck via sinabs, NIR)."""
    _state["debug"] = debug


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output (CI logs, files) gets a wide table instead of rich's 80 columns
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 140)


def _load(model: Path, allow_pickle: bool, input_shape: Optional[str]):
    from nmtoolchain.frontends import load_model, parse_shape

    shape = parse_shape(input_shape) if input_shape else None
    return load_model(model, allow_pickle=allow_pickle, input_shape=shape)


ALLOW_PICKLE = typer.Option(
    False, "--allow-pickle",
    help="Allow unpickling a fully pickled nn.Module (this runs code from the file).")
INPUT_SHAPE = typer.Option(
    None, "--input-shape", help="Per-sample input shape, e.g. 1,8,8 (for torch files without one).")


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="Model file: TorchScript, nmtc checkpoint, ONNX, NIR, "
                                           "netx .net or nmtc .nmir."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    allow_pickle: bool = ALLOW_PICKLE,
    input_shape: Optional[str] = INPUT_SHAPE,
) -> None:
    """Show a model's nodes, parameter/synapse/MAC totals and which targets can take it."""
    from nmtoolchain.report.inspect import inspect_graph, render_inspection

    info = inspect_graph(_load(model, allow_pickle, input_shape))
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        render_inspection(info, _console())


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    target: str = typer.Option(..., "--target", "-t",
                               help="A registered target: loihi2, nir, nmir (nmtc inspect lists "
                                    "them with their verdicts)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="Output file (nir, nmir) or directory (loihi2; default: MODEL's name + '.loihi2')."),
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", help="Hardware profile, a bundled name or a .toml path "
                                      "(default: the target's own, e.g. loihi2)."),
    calib: Optional[str] = typer.Option(
        None, "--calib", help="Calibration data for quantization/adaptation: digits or FILE.npz."),
    timesteps: int = typer.Option(16, "--timesteps", "-T",
                                  help="Time steps per sample (calibration, verify advice)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    allow_pickle: bool = ALLOW_PICKLE,
    input_shape: Optional[str] = INPUT_SHAPE,
) -> None:
    """Export a model to a target, atomically (no partial output on failure).

    The target's pass pipeline runs first (loihi2: adapt a converted network, fold
    scales and pooling, quantize, map onto cores); report.txt lists what each pass did.
    loihi2 writes a directory: network.net (lava-dl netx), network.nmir, mapping.json,
    report.txt and report.json.
    """
    from nmtoolchain.frontends import parse_shape
    from nmtoolchain.targets import ExportOptions, export as export_to

    result = export_to(model, target, output,
                       ExportOptions(profile=profile, calib=calib, timesteps=timesteps,
                                     force=force),
                       allow_pickle=allow_pickle,
                       input_shape=parse_shape(input_shape) if input_shape else None)
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, default=str))
    elif result.path.is_dir():
        typer.echo("\n".join(result.lines))
        typer.echo(f"wrote {result.path}/ ({', '.join(result.files)})")
    else:
        typer.echo(f"wrote {result.path}")


def _export_target_of(directory: Path) -> Optional[Any]:
    """The registered target (other than loihi2) whose export ``directory`` is, from its
    report.json; None for a Loihi 2 export or anything else (the Lava referee decides)."""
    report = Path(directory) / "report.json"
    try:
        name = json.loads(report.read_text()).get("target")
    except (OSError, ValueError, AttributeError):
        return None
    from nmtoolchain.targets.registry import targets

    table = targets()
    return table[name] if isinstance(name, str) and name in table and name != "loihi2" else None


@app.command()
def verify(
    directory: Path = typer.Argument(
        ..., help="A directory written by nmtc export --target loihi2 or speck."),
    data: Optional[Path] = typer.Option(None, "--data", help="Inputs: .npz with x (and y)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Bundled data set: digits."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Time steps (default: the export's timesteps + pipeline depth)."),
    samples: int = typer.Option(4, "--samples", help="At most this many input samples."),
    reset_interval: Optional[int] = typer.Option(
        None, "--reset-interval", help="netx LIFReset interval, e.g. 16 for Intel's pilotnet."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> int:
    """Run an export in its referee and in nmtc; exit 1 if they differ.

    Loihi 2: Lava (fixed_pt) against nmtc's loihi numerics; Speck: sinabs against
    nmtc's speck numerics.

    Prints "identical" or the first divergence (layer, step, neuron, both values) per
    sample, and the ms/step of both.
    """
    from exporters.loihi2.verify import verify_export

    target = _export_target_of(directory)
    if target is not None:  # a registered back end's own referee (e.g. speck: sinabs)
        result = target.verify(directory, data=data, dataset=dataset, steps=steps,
                               samples=samples, reset_interval=reset_interval)
    else:
        result = verify_export(directory, data=data, dataset=dataset, steps=steps,
                               samples=samples, reset_interval=reset_interval)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=float))
    else:
        typer.echo("\n".join(result.lines()))
    return 0 if result.identical else 1


DATASET = typer.Option(None, "--dataset", help="Bundled data set: digits.")
DATA = typer.Option(None, "--data", help="Inputs: .npz with x (and y) or a raw .npy array.")
TIMESTEPS = typer.Option(16, "--timesteps", "-T", help="Time steps to simulate.")
NUMERICS = typer.Option("float", "--numerics",
                        help="float (reference), loihi (bit-exact with Lava) or speck (with sinabs).")
SAMPLES = typer.Option(16, "--samples", help="At most this many input samples.")
RESET = typer.Option(None, "--reset-interval",
                     help="netx LIFReset interval (Loihi numerics), e.g. 16 for Intel's pilotnet.")


def _simulate(model: Path, dataset, data, timesteps: int, numerics: str, samples: int,
              reset_interval, allow_pickle: bool, input_shape, quiet: bool):
    """Load, pick inputs, and run the simulator with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from nmtoolchain.inputs import encode_for_graph, load_run_inputs
    from simulators.cycle import Simulator

    if timesteps < 1:
        raise BadInputError(f"--timesteps must be >= 1, got {timesteps}")
    graph = _load(model, allow_pickle, input_shape)
    inputs = encode_for_graph(
        graph, load_run_inputs(graph, dataset=dataset, data=data, samples=samples), timesteps)
    sim = Simulator(graph, numerics, reset_interval=reset_interval)
    err = _console(stderr=True)
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=quiet or not sys.stderr.isatty()) as bar:
        task = bar.add_task("sim", total=timesteps)
        result = sim.run(inputs.x, timesteps, progress=lambda t: bar.update(task, completed=t))
    return graph, inputs, result


@app.command()
def simulate(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    profile: str = typer.Option("loihi2", "--profile", "-p",
                                help="Hardware profile: a bundled name or a .toml path."),
    dataset: Optional[str] = DATASET, data: Optional[Path] = DATA,
    timesteps: int = TIMESTEPS, numerics: str = NUMERICS, samples: int = SAMPLES,
    reset_interval: Optional[int] = RESET,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
) -> None:
    """Simulate a model step by step; print counts, energy and latency under one profile."""
    from nmtoolchain.report.simulation import build_report, render_report

    graph, inputs, result = _simulate(model, dataset, data, timesteps, numerics, samples,
                                      reset_interval, allow_pickle, input_shape, as_json)
    rep = build_report(graph, result, [profile], reference=profile, labels=inputs.y,
                       inputs=inputs.description)
    if as_json:
        typer.echo(json.dumps(rep, indent=2, default=float))
    else:
        render_report(rep, _console())


@app.command()
def report(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    profiles: str = typer.Option("loihi2,loihi1,speck,cmos45nm", "--profiles",
                                 help="Comma-separated profile names or .toml paths."),
    reference: str = typer.Option("cmos45nm", "--reference",
                                  help="Profile the others are compared against."),
    measured: Optional[str] = typer.Option(
        None, "--measured", help="Compare with a measurement stored in a profile, e.g. pilotnet_lif."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report."),
    dataset: Optional[str] = DATASET, data: Optional[Path] = DATA,
    timesteps: int = TIMESTEPS, numerics: str = NUMERICS, samples: int = SAMPLES,
    reset_interval: Optional[int] = RESET,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
) -> None:
    """Energy and latency per hardware profile, and where the profiles disagree."""
    from nmtoolchain.report.simulation import build_report, render_report, write_html

    names = [p.strip() for p in profiles.split(",") if p.strip()]
    if not names:
        raise BadInputError("--profiles is empty")
    graph, inputs, result = _simulate(model, dataset, data, timesteps, numerics, samples,
                                      reset_interval, allow_pickle, input_shape, as_json)
    rep = build_report(graph, result, names, reference=reference, measured=measured,
                       labels=inputs.y, inputs=inputs.description)
    if html_out is not None:
        write_html(rep, html_out)
    if as_json:
        typer.echo(json.dumps(rep, indent=2, default=float))
    else:
        render_report(rep, _console())
        if html_out is not None:
            typer.echo(f"wrote {html_out}")


@app.command()
def convert(
    model: Path = typer.Argument(..., help="ANN model file with QCFS activations."),
    method: str = typer.Option(..., "--method", help="Conversion rule: mst (QCFS -> IF)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output SNN graph (.nmir)."),
    timesteps: Optional[int] = typer.Option(
        None, "--timesteps", "-T", help="Intended time steps (recorded in the graph)."),
    no_precharge: bool = typer.Option(
        False, "--no-precharge", help="Start membranes at 0 instead of λ/2."),
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
) -> None:
    """Convert a QCFS ANN into an IF SNN graph (MST/QCFS rule) and write it atomically."""
    if method != "mst":
        raise BadInputError(f"--method {method!r}: unknown conversion method; choose one of: mst")
    from nmtoolchain.convert.mst import convert_mst
    from nmtoolchain.ir import save_graph

    graph = _load(model, allow_pickle, input_shape)
    snn = convert_mst(graph, timesteps=timesteps, precharge=not no_precharge)
    path = save_graph(snn, output)
    n_if = sum(1 for n in snn if n.op_name == "IF")
    typer.echo(f"wrote {path} ({n_if} IF layer(s), precharge {'off' if no_precharge else 'on'})")


@app.command("check-accuracy")
def check_accuracy(
    model: Path = typer.Argument(..., help="ANN model file with QCFS activations."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Bundled data set: digits."),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled data: .npz with x and y."),
    timesteps: int = typer.Option(32, "--timesteps", "-T", help="Largest number of time steps."),
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
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    allow_pickle: bool = ALLOW_PICKLE, input_shape: Optional[str] = INPUT_SHAPE,
) -> int:
    """Accuracy of the ANN and of its MST-converted SNN against time step; exit 1 if a gate fails.

    The test split of --dataset digits, or all of --data. The SNN sees the image at every
    step and predicts by the argmax of its summed logits. With --target loihi2 the network
    nmtc export would write is also run bit-exactly in Loihi fixed point.
    """
    from nmtoolchain.accuracy import accuracy_vs_timesteps, ann_accuracy
    from nmtoolchain.convert.mst import convert_mst
    from nmtoolchain.inputs import load_run_inputs

    if min_accuracy is not None and max_drop is not None:
        raise BadInputError("give either --min-accuracy or --max-drop, not both")
    if min_accuracy is not None and not 0.0 <= min_accuracy <= 1.0:
        raise BadInputError(f"--min-accuracy must be in [0, 1], got {min_accuracy}")
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise BadInputError(f"--max-drop must be in [0, 1], got {max_drop}")
    if timesteps < 1:
        raise BadInputError(f"--timesteps must be >= 1, got {timesteps}")
    if dataset is None and data is None:
        raise BadInputError("give --dataset digits or --data FILE.npz")
    if data is not None and data.suffix != ".npz":
        raise BadInputError(f"--data {data}: needs a .npz with x and y (labels)")
    graph = _load(model, allow_pickle, input_shape)
    inputs = load_run_inputs(graph, dataset=dataset, data=data, samples=10 ** 9)
    if inputs.y is None:
        raise BadInputError(f"{inputs.description}: no labels (y) to measure accuracy")
    if inputs.x.ndim != len(graph.inputs()[0].shape) + 1:
        raise BadInputError(f"{inputs.description}: expected static samples (N, "
                            f"{tuple(graph.inputs()[0].shape)}), got {inputs.x.shape}")
    if target not in (None, "loihi2"):
        from nmtoolchain.targets.base import Target
        from nmtoolchain.targets.registry import get_target

        if type(get_target(target)).accuracy is Target.accuracy:  # refused before any work
            raise BadInputError(f"--target {target}: no fixed-point accuracy for this target "
                                "(it has no chip numerics)")
    snn = convert_mst(graph, timesteps=timesteps, precharge=not no_precharge)
    ann = ann_accuracy(graph, inputs.x, inputs.y)
    curve = accuracy_vs_timesteps(snn, inputs.x, inputs.y, timesteps)
    snn_final = curve[-1][1]
    fixed = None
    if target == "loihi2":
        from nmtoolchain.targets.loihi2 import loihi_accuracy

        if calib is None:
            calib = "digits" if dataset == "digits" else str(data)
        fixed = loihi_accuracy(snn, inputs.x, inputs.y, steps=timesteps, calib=calib)
        snn_final = fixed["accuracy"]
    elif target is not None:  # another registered back end's chip numerics (e.g. speck)
        from nmtoolchain.targets.registry import get_target

        fixed = get_target(target).accuracy(snn, inputs.x, inputs.y, steps=timesteps)
        snn_final = fixed["accuracy"]
    what = f"{target} fixed-point SNN" if fixed else "SNN"
    if min_accuracy is not None:
        passed = snn_final >= min_accuracy
        gate = f"{what} accuracy at T={timesteps} {snn_final:.4f} >= {min_accuracy:.4f}"
    elif max_drop is not None:
        passed = ann - snn_final <= max_drop + 1e-12
        gate = f"drop ANN - {what}(T={timesteps}) {ann - snn_final:.4f} <= {max_drop:.4f}"
    else:
        passed, gate = True, "no gate given"
    verdict = "PASS" if passed else "FAIL"
    if as_json:
        typer.echo(json.dumps({
            "model": str(model), "data": inputs.description, "samples": int(len(inputs.x)),
            "ann_accuracy": ann, "snn_accuracy": [{"timesteps": t, "accuracy": a} for t, a in curve],
            "precharge": not no_precharge,
            "target": None if fixed is None else {
                "name": target, "timesteps": timesteps, "accuracy": fixed["accuracy"],
                "headroom": fixed.get("headroom"), "notes": fixed["notes"]},
            "gate": gate, "passed": passed}, indent=2))
    else:
        typer.echo(f"{model.name} on {inputs.description}: ANN accuracy {ann:.4f}")
        typer.echo(f"{'T':>6}  {'SNN acc':>8}  {'ANN - SNN':>9}")
        for t, a in curve:
            typer.echo(f"{t:>6}  {a:>8.4f}  {ann - a:>9.4f}")
        if fixed is not None:
            extra = f", headroom k={fixed['headroom']}" if fixed.get("headroom") is not None \
                else ""
            typer.echo(f"{target} export in fixed point (T={timesteps}, rate-coded input"
                       f"{extra}): {fixed['accuracy']:.4f}")
        typer.echo(f"gate: {gate}: {verdict}")
    return 0 if passed else 1


@app.command()
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Run the main job on the embedded default (bundled digits model and data)."""
    from nmtoolchain.demo import run_demo

    run_demo(as_json=as_json, console=_console())


def main(argv: Optional[List[str]] = None) -> int:
    """Console-script entry point; turns nmtc errors into one line and exit 2."""
    import click

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=args, prog_name="nmtc", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except NmtcError as e:
        if _state["debug"] or "--debug" in args:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"nmtc: error: {msg}", file=sys.stderr)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        print("nmtc: aborted", file=sys.stderr)
        return 1
    except click.ClickException as e:
        e.show()
        return 2
    except KeyboardInterrupt:
        print("nmtc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in nmtc: still one line, traceback on --debug
        if _state["debug"] or "--debug" in args:
            raise
        print(f"nmtc: internal error: {type(e).__name__}: {e} (re-run with --debug for a "
              "traceback and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
