"""Progress display for long tasks (a rich progress bar on stderr)."""

from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """A rich progress bar fed by the ``progress`` callbacks of the tasks.

    Use as a context manager and pass it as ``progress=`` to
    :func:`parafit.tasks.optimization.run` or :func:`parafit.tasks.sensitivity.run`;
    it shows evaluations, the best loss, the rate and the time left.
    """

    def __init__(
        self, console: Any, *, disable: bool, label: str = "optimizing"
    ) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            TextColumn("{task.completed:>8.0f}{task.fields[total_text]} evals"),
            TextColumn("best {task.fields[best]}"),
            TextColumn("{task.fields[rate]} evals/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=disable,
            transient=False,
        )
        self.task = self.progress.add_task(
            "opt", total=None, best="-", rate="-", total_text=""
        )

    def __enter__(self) -> "ProgressBar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        total = event.max_evaluations
        if total is None and event.time_limit is not None:
            total = None
        self.progress.update(
            self.task,
            completed=event.n_evaluations,
            total=total,
            best=f"{event.best_loss:.6g}",
            rate=f"{event.evaluations_per_second:.1f}",
            total_text=f"/{total}" if total else "",
        )
