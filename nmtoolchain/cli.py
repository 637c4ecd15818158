"""The ``nmtc`` command line: thin wrappers over library functions.

Exit codes: 0 success, 1 a failed check (e.g. accuracy below a gate),
2 bad input (any :class:`~nmtoolchain.errors.NmtcError`: one line on stderr,
no traceback unless ``--debug``), 3 an internal error (a bug in nmtc).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

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


EXPORT_TARGETS = ("nir", "nmir")


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model file (any format nmtc reads)."),
    target: str = typer.Option(..., "--target", "-t", help=f"One of: {', '.join(EXPORT_TARGETS)}."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file."),
    allow_pickle: bool = ALLOW_PICKLE,
    input_shape: Optional[str] = INPUT_SHAPE,
) -> None:
    """Export a model to a target format (written atomically: no partial file on failure)."""
    if target not in EXPORT_TARGETS:
        raise BadInputError(f"--target {target!r}: unknown target; choose one of "
                            f"{', '.join(EXPORT_TARGETS)}")
    graph = _load(model, allow_pickle, input_shape)
    if target == "nir":
        from exporters.nir import export_nir

        path = export_nir(graph, output)
    else:
        from nmtoolchain.ir import save_graph

        path = save_graph(graph, output)
    typer.echo(f"wrote {path}")


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
