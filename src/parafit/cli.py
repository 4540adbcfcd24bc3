"""Command-line interface: ``parafit optimize|sensitivity|select|single-point|plot|import``.

Thin: parse, load and validate the input, call a task. Bad input exits with code 2
and one line ``error: <message>`` on stderr (a traceback only with ``--debug``);
progress and logs go to stderr, results to the results directory.
"""

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from parafit.progress import ProgressBar

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Fit the parameters of atomistic models to reference data.",
    epilog="Run 'parafit COMMAND --help' for a command's options.",
)

InputFile = Annotated[
    Path,
    typer.Argument(
        help="Input file (parafit.yaml); paths inside it are relative to it.",
        show_default=False,
    ),
]
OutputDir = Annotated[
    Path,
    typer.Option(
        "-o",
        "--output",
        help="Results directory (created if missing; never overwritten silently).",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace an existing non-empty results directory."
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Worker processes (overrides parallel.workers)."
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("-q", "--quiet", help="No progress bar; only warnings and errors."),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "-v", "--verbose", help="Log every milestone (new best loss, optimizer stops)."
    ),
]
Debug = Annotated[
    bool, typer.Option("--debug", help="Show full tracebacks for errors.")
]


def _version(value: bool) -> None:
    if value:
        from parafit import __version__

        typer.echo(f"parafit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Fit the parameters of atomistic models to reference data."""


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _setup_logging(console: Any, *, quiet: bool, verbose: bool) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.INFO if verbose else logging.WARNING)
    handler = RichHandler(
        console=console, show_path=False, show_time=False, markup=False
    )
    root = logging.getLogger("parafit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _fail(console: Any, err: BaseException, debug: bool) -> None:
    if debug:
        console.print_exception()
    message = str(err).replace("\n", " ")
    console.print(
        f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True
    )
    raise typer.Exit(code=2)


def _user_errors() -> tuple[type[BaseException], ...]:
    from parafit.errors import InputError, ResultsError, UnknownNameError

    return (InputError, ResultsError, UnknownNameError)


def _enable_x64() -> None:
    try:
        import jax  # noqa: F401
    except ImportError:
        return
    import jax

    jax.config.update("jax_enable_x64", True)


@app.command()
def optimize(
    input_file: InputFile,
    output: OutputDir = Path("results"),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed or finished run in OUTPUT from its checkpoint (exit conditions may be raised).",
        ),
    ] = False,
    overwrite: Overwrite = False,
    workers: Workers = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Optimize the active parameters against the training set."""
    console = _console()
    _setup_logging(console, quiet=quiet, verbose=verbose)
    try:
        from parafit.config import load_config
        from parafit.tasks import optimization

        _enable_x64()
        config = load_config(input_file)
        if workers is not None:
            config = config.model_copy(
                update={
                    "parallel": config.parallel.model_copy(update={"workers": workers})
                }
            )
        with ProgressBar(console, disable=quiet or not console.is_terminal) as bar:
            result = optimization.run(
                config, output, resume=resume, overwrite=overwrite, progress=bar
            )
    except _user_errors() as err:
        _fail(console, err, debug)
    except KeyboardInterrupt:
        console.print("interrupted; resume with --resume")
        raise typer.Exit(code=130) from None
    console.print(
        f"best training loss {result.best_loss:.6g} at evaluation {result.best_evaluation} "
        f"({result.n_evaluations} evaluations; stopped: {', '.join(result.stop_reasons) or '-'})",
        highlight=False,
    )
    if result.best_validation_loss is not None:
        console.print(
            f"best validation loss {result.best_validation_loss:.6g}", highlight=False
        )
    console.print(f"results in {output}", highlight=False)


@app.command()
def sensitivity(
    input_file: InputFile,
    output: OutputDir = Path("results"),
    samples: Annotated[
        Path | None,
        typer.Option(
            "--samples",
            help="Analyse the samples of this earlier results directory instead of "
            "sampling (sets run_sampling: false; no engine runs).",
        ),
    ] = None,
    overwrite: Overwrite = False,
    workers: Workers = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Rank the active parameters by how much the loss depends on them (HSIC)."""
    console = _console()
    _setup_logging(console, quiet=quiet, verbose=False)
    try:
        from parafit.config import load_config
        from parafit.errors import ResultsError
        from parafit.tasks import sensitivity as task

        _enable_x64()
        config = load_config(input_file)
        if config.task != "sensitivity":
            config = config.model_copy(update={"task": "sensitivity"})
        updates: dict[str, Any] = {}
        if samples is not None:
            if not samples.is_dir():
                raise ResultsError(f"--samples {samples}: not a directory.")
            updates["sensitivity"] = config.sensitivity.model_copy(
                update={"run_sampling": False, "samples_directory": samples.resolve()}
            )
        if workers is not None:
            updates["parallel"] = config.parallel.model_copy(
                update={"workers": workers}
            )
        if updates:
            config = config.model_copy(update=updates)
        with ProgressBar(
            console, disable=quiet or not console.is_terminal, label="sampling"
        ) as bar:
            run = task.run(config, output, overwrite=overwrite, progress=bar)
    except _user_errors() as err:
        _fail(console, err, debug)
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(code=130) from None
    result = run.result
    if not quiet:
        _print_ranking(console, result)
    console.print(
        f"results in {output / 'sensitivity'}; make an interface with the top N active: "
        f"parafit select {output} --top N -o interface.yaml",
        highlight=False,
    )


def _print_ranking(console: Any, result: Any, limit: int = 15) -> None:
    from rich.table import Table

    table = Table(title="parameter sensitivity (HSIC)", title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("parameter")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    mean, std = result.sensitivity_mean, result.sensitivity_std
    order = result.order()
    for rank, i in enumerate(order[:limit], start=1):
        table.add_row(str(rank), result.labels[i], f"{mean[i]:.4f}", f"{std[i]:.4f}")
    if len(order) > limit:
        table.add_row("...", f"{len(order) - limit} more", "", "")
    console.print(table)


@app.command()
def select(
    results: Annotated[
        Path,
        typer.Argument(
            help="A sensitivity results directory (or its calculation_result.npz)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Parameter interface YAML to write."),
    ],
    top: Annotated[
        int | None,
        typer.Option("--top", min=1, help="Keep the N most sensitive active."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", help="Keep those with mean sensitivity >= this (0..1)."
        ),
    ] = None,
    interface: Annotated[
        Path | None,
        typer.Option(
            "--interface",
            help="Interface to start from (default: the run's "
            "parameter_interface_with_sensitivities.yaml).",
        ),
    ] = None,
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Write a parameter interface with only the most sensitive parameters active."""
    console = _console()
    try:
        from parafit.errors import ResultsError
        from parafit.sensitivity.select import select_interface

        if output.exists() and not overwrite:
            raise ResultsError(f"{output} exists; pass --overwrite to replace it.")
        chosen, written = select_interface(
            results, output, top=top, threshold=threshold, interface=interface
        )
    except _user_errors() as err:
        _fail(console, err, debug)
    typer.echo(f"{written}: {len(chosen)} active: {', '.join(chosen)}")


@app.command("single-point")
def single_point(
    input_file: InputFile,
    output: OutputDir = Path("results"),
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Evaluate the data sets once with the current parameter values."""
    console = _console()
    _setup_logging(console, quiet=quiet, verbose=False)
    try:
        from parafit.config import load_config
        from parafit.tasks import single_point as task

        _enable_x64()
        config = load_config(input_file)
        result = task.run(config, output, overwrite=overwrite)
    except _user_errors() as err:
        _fail(console, err, debug)
    typer.echo(f"training loss: {result.training_loss:.10g}")
    if result.validation_loss is not None:
        typer.echo(f"validation loss: {result.validation_loss:.10g}")
    if not quiet:
        console.print(result.stats["training"], highlight=False)


@app.command()
def plot(
    results: Annotated[
        Path, typer.Argument(help="A results directory (or its optimization/ folder).")
    ],
    debug: Debug = False,
) -> None:
    """Redraw every plot of a results directory from its files."""
    console = _console()
    try:
        from parafit.errors import ResultsError
        from parafit.plots import redraw

        if not results.is_dir():
            raise ResultsError(f"{results}: not a directory.")
        written = redraw(results)
    except _user_errors() as err:
        _fail(console, err, debug)
    for path in written:
        typer.echo(str(path))


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(
            help="An ASE-readable file (extxyz, ASE db, ...) with reference energies/forces, "
            "a ParAMS job_collection.yml / data_set.yml, or (with --reaxff) a ReaxFF "
            "training directory."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Directory for job_collection.yaml and training_set.yaml "
            "(and validation_set.yaml with --reaxff and a valSet/ folder).",
        ),
    ] = Path("."),
    reaxff: Annotated[
        bool,
        typer.Option(
            "--reaxff",
            help="SOURCE is a classic ReaxFF directory: geo + trainset.in, optional "
            "control and valSet/ (its own geo + trainset.in).",
        ),
    ] = False,
    prefix: Annotated[
        str | None,
        typer.Option(
            help="Job id prefix for frames without an id (default: file stem)."
        ),
    ] = None,
    forces: Annotated[
        bool, typer.Option(help="Add forces entries when the file has forces.")
    ] = True,
    stress: Annotated[
        bool, typer.Option(help="Add stress entries when the file has stress.")
    ] = False,
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Convert reference data into a parafit job collection and data set."""
    console = _console()
    try:
        from parafit.errors import InputError, ResultsError

        if not source.exists():
            raise InputError(f"file not found: {str(source)!r}.", path=source)
        if source.is_dir() and not reaxff:
            raise InputError(
                "a directory; pass --reaxff to import a ReaxFF training directory "
                "(geo + trainset.in).",
                path=source,
            )
        output.mkdir(parents=True, exist_ok=True)
        jobs_out, data_out, val_out = (
            output / "job_collection.yaml",
            output / "training_set.yaml",
            output / "validation_set.yaml",
        )
        outputs = (jobs_out, data_out, val_out) if reaxff else (jobs_out, data_out)
        if not overwrite and any(p.exists() for p in outputs):
            names = ", ".join(p.name for p in outputs)
            raise ResultsError(
                f"{output} already holds one of {names}; pass --overwrite."
            )
        if reaxff:
            from parafit.io.reaxff_import import import_reaxff_directory

            jc, ds, val = import_reaxff_directory(source)
            jc.save(jobs_out)
            ds.save(data_out)
            typer.echo(f"{jobs_out}: {len(jc)} jobs")
            typer.echo(f"{data_out}: {len(ds)} entries")
            if val is not None:
                val.save(val_out)
                typer.echo(f"{val_out}: {len(val)} entries")
            return
        text_head = source.read_bytes()[:4096] if source.is_file() else b""
        if source.suffix in (".yml", ".yaml") and b"Expression" in text_head:
            from parafit.dataset import DataSet

            ds = DataSet.load(source)
            ds.save(data_out)
            typer.echo(f"{data_out}: {len(ds)} entries")
            return
        if source.suffix in (".yml", ".yaml"):
            from parafit.jobs import JobCollection

            jc = JobCollection.load(source)
            jc.save(jobs_out)
            typer.echo(f"{jobs_out}: {len(jc)} jobs")
            return
        from parafit.io.ase_import import import_ase_file

        jc, ds = import_ase_file(source, id_prefix=prefix, forces=forces, stress=stress)
        jc.save(jobs_out)
        ds.save(data_out)
        typer.echo(f"{jobs_out}: {len(jc)} jobs")
        typer.echo(f"{data_out}: {len(ds)} entries")
    except _user_errors() as err:
        _fail(console, err, debug)


def main() -> None:
    """Entry point of the ``parafit`` command."""
    try:
        app()
    except BrokenPipeError:  # pragma: no cover
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
