"""Recorder: writes the results directory of an optimization (ParAMS layout).

Append-only logs (``running_loss.txt``, ``running_active_parameters.txt``,
``running_stats.txt`` and a binary journal of every evaluation) get one write per
batch, flushed; snapshots (``initial/``, ``best/``, ``latest/``), ``evaluations.h5``
and the checkpoint are replaced atomically (temp file + rename). A run killed at any
moment leaves a directory that reads back consistently: readers drop an unterminated
last line, and a resumed run truncates the logs to its checkpoint.

Layout (``root`` is e.g. ``results/optimization``)::

    training_set_results/   running_loss.txt running_active_parameters.txt
                            running_stats.txt initial/ best/ latest/
    validation_set_results/ same layout
    evaluations.h5          every evaluation (see :func:`write_evaluations_h5`)
    checkpoint.pkl          state to resume from
"""

import io
import logging
import os
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from parafit._atomic import (
    append_lines,
    read_complete_lines,
    write_bytes_atomic,
    write_text_atomic,
)
from parafit.errors import ResultsError

__all__ = [
    "BatchRecord",
    "DirectoryRecorder",
    "MemoryRecorder",
    "Recorder",
    "Snapshot",
    "read_evaluations",
    "read_residuals",
    "read_running_loss",
    "residual_layout",
]

logger = logging.getLogger(__name__)

SET_DIRS = {"training": "training_set_results", "validation": "validation_set_results"}
JOURNAL = ".evaluations.journal"
JOURNAL_HEADER = ".evaluations.journal.header"


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """Every evaluation of one batch.

    Attributes:
        evaluation: (n,) global evaluation numbers (0 = initial point).
        optimizer: (n,) id of the optimizer that asked for each point (-1: initial).
        elapsed: (n,) seconds since the run started (summed over restarts).
        active_values: (n, n_active) active parameter values (model units).
        training_loss: (n,) training loss (+inf: failed or infeasible).
        validation_loss: (n,) validation loss, NaN where not evaluated.
        stats: optional per-evaluation rows for running_stats.txt: {evaluation: {name: value}}.
        training_residuals: optional (n, n_values) residuals to keep in evaluations.h5.
        validation_residuals: optional (n, n_values) validation-set residuals (rows
            of evaluations without a validation loss are NaN).
    """

    evaluation: np.ndarray
    optimizer: np.ndarray
    elapsed: np.ndarray
    active_values: np.ndarray
    training_loss: np.ndarray
    validation_loss: np.ndarray
    stats: Mapping[str, Mapping[int, Mapping[str, float]]] = field(default_factory=dict)
    training_residuals: np.ndarray | None = None
    validation_residuals: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``initial/``, ``best/`` and ``latest/`` hold for one data set.

    Attributes:
        evaluation: evaluation number.
        loss: the data set's loss.
        files: file name -> text (parameter_interface.yaml, model files, stats.txt,
            data_set_predictions.yaml, pes_predictions/<job>.txt, ...).
        figures: file name -> callable(path) drawing a PNG (run after the files).
    """

    evaluation: int
    loss: float
    files: Mapping[str, str]
    figures: Mapping[str, Any] = field(default_factory=dict)


class Recorder(Protocol):
    """Where an optimization writes. Append-only: a record is never changed later."""

    def start(
        self,
        *,
        active_names: Sequence[str],
        stats_names: Sequence[str],
        has_validation: bool,
        resume_at: int | None,
    ) -> None: ...

    def record(self, batch: BatchRecord) -> None: ...

    def snapshot(self, kind: str, data_set: str, snapshot: Snapshot) -> None: ...

    def save_checkpoint(self, state: Mapping[str, Any]) -> None: ...

    def load_checkpoint(self) -> dict[str, Any] | None: ...

    def finish(self) -> None: ...


class MemoryRecorder:
    """Keeps everything in memory (the API default when no directory is given)."""

    def __init__(self) -> None:
        self.batches: list[BatchRecord] = []
        self.snapshots: dict[tuple[str, str], Snapshot] = {}
        self.checkpoint: dict[str, Any] | None = None

    def start(self, **kwargs: Any) -> None:
        pass

    def record(self, batch: BatchRecord) -> None:
        self.batches.append(batch)

    def snapshot(self, kind: str, data_set: str, snapshot: Snapshot) -> None:
        self.snapshots[(kind, data_set)] = snapshot

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        self.checkpoint = pickle.loads(pickle.dumps(dict(state)))

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self.checkpoint

    def finish(self) -> None:
        pass


def _fmt(v: float) -> str:
    return (
        f"{v:.10g}"
        if np.isfinite(v)
        else ("inf" if v > 0 else ("-inf" if v < 0 else "nan"))
    )


class DirectoryRecorder:
    """Writes the ParAMS-style layout under ``root`` (e.g. ``results/optimization``).

    Args:
        root: the optimization directory.
        sync_every_seconds: fsync the logs at most this often (a killed process
            loses nothing either way; fsync guards against a machine crash).
        h5_growth: rewrite ``evaluations.h5`` when the number of evaluations grew by
            this fraction since the last write (keeps total cost linear), and always
            at :meth:`finish` and on checkpoints.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        sync_every_seconds: float = 10.0,
        h5_growth: float = 0.25,
    ) -> None:
        self.root = Path(root)
        self.sync_every_seconds = sync_every_seconds
        self.h5_growth = h5_growth
        self._active_names: tuple[str, ...] = ()
        self._stats_names: dict[str, tuple[str, ...]] = {}
        self._has_validation = False
        self._n_rows = 0
        self._h5_rows = 0
        self._record_size = 0
        self._journal: io.BufferedWriter | None = None

    # ---- set-up -------------------------------------------------------------------
    def _set_dir(self, data_set: str) -> Path:
        return self.root / SET_DIRS[data_set]

    def start(
        self,
        *,
        active_names: Sequence[str],
        stats_names: Mapping[str, Sequence[str]] | Sequence[str] = (),
        has_validation: bool = False,
        resume_at: int | None = None,
    ) -> None:
        """Create the layout, or (``resume_at`` = n evaluations) truncate logs to it."""
        self._active_names = tuple(active_names)
        if not isinstance(stats_names, Mapping):
            stats_names = {"training": tuple(stats_names)}
        self._stats_names = {k: tuple(v) for k, v in stats_names.items()}
        self._has_validation = has_validation
        self._record_size = 5 + len(self._active_names)
        sets = ["training"] + (["validation"] if has_validation else [])
        for s in sets:
            self._set_dir(s).mkdir(parents=True, exist_ok=True)
        headers = {
            "running_loss.txt": "# evaluation loss optimizer elapsed_s",
            "running_active_parameters.txt": "# evaluation "
            + " ".join(self._active_names),
        }
        for s in sets:
            d = self._set_dir(s)
            stat_cols = " ".join(self._stats_names.get(s, ()))
            files = dict(headers)
            files["running_stats.txt"] = "# evaluation " + stat_cols
            for name, header in files.items():
                path = d / name
                if resume_at is None or not path.exists():
                    write_text_atomic(path, header + "\n")
                else:
                    self._truncate_log(path, resume_at)
        journal = self.root / JOURNAL
        if resume_at is None or not journal.exists():
            write_bytes_atomic(journal, b"")
            self._n_rows = 0
        else:
            self._n_rows = self._truncate_journal(journal, resume_at)
            for kind in RESIDUAL_KINDS:
                res = _read_residual_journal(self.root, kind)
                if res is not None:
                    write_bytes_atomic(
                        _residual_paths(self.root, kind)[0],
                        res[res[:, 0] < resume_at].astype("<f8").tobytes(),
                    )
        write_text_atomic(
            self.root / JOURNAL_HEADER, "\n".join(self._active_names) + "\n"
        )
        self._journal = open(journal, "ab")  # noqa: SIM115 - kept open for the run
        self._last_sync = 0.0
        self._h5_rows = self._n_rows if resume_at is not None else 0

    @staticmethod
    def _truncate_log(path: Path, n_evaluations: int) -> None:
        lines = read_complete_lines(path)
        kept = [
            ln
            for ln in lines
            if ln.startswith("#")
            or not ln.strip()
            or int(float(ln.split()[0])) < n_evaluations
        ]
        write_text_atomic(path, "".join(ln + "\n" for ln in kept))

    def _truncate_journal(self, path: Path, n_evaluations: int) -> int:
        data = np.fromfile(path, dtype="<f8")
        n = data.size // self._record_size
        rows = data[: n * self._record_size].reshape(n, self._record_size)
        rows = rows[rows[:, 0] < n_evaluations]
        write_bytes_atomic(path, rows.astype("<f8").tobytes())
        return rows.shape[0]

    # ---- per batch ------------------------------------------------------------------
    def record(self, batch: BatchRecord) -> None:
        """Append one batch to every log (one write per file)."""
        ev = batch.evaluation.astype(int)
        train = self._set_dir("training")
        loss_lines = [
            f"{e} {_fmt(v)} {o} {t:.3f}"
            for e, v, o, t in zip(
                ev, batch.training_loss, batch.optimizer, batch.elapsed, strict=True
            )
        ]
        param_lines = [
            f"{e} " + " ".join(f"{v:.12g}" for v in row)
            for e, row in zip(ev, batch.active_values, strict=True)
        ]
        sync = time.monotonic() - self._last_sync >= self.sync_every_seconds
        append_lines(train / "running_loss.txt", loss_lines, sync=sync)
        append_lines(train / "running_active_parameters.txt", param_lines, sync=sync)
        if self._has_validation:
            vmask = np.isfinite(batch.validation_loss) | np.isinf(batch.validation_loss)
            vd = self._set_dir("validation")
            append_lines(
                vd / "running_loss.txt",
                [
                    f"{e} {_fmt(v)} {o} {t:.3f}"
                    for e, v, o, t, m in zip(
                        ev,
                        batch.validation_loss,
                        batch.optimizer,
                        batch.elapsed,
                        vmask,
                        strict=True,
                    )
                    if m
                ],
                sync=sync,
            )
            append_lines(
                vd / "running_active_parameters.txt",
                [p for p, m in zip(param_lines, vmask, strict=True) if m],
                sync=sync,
            )
        for set_name, rows in batch.stats.items():
            cols = self._stats_names.get(set_name, ())
            lines = [
                f"{e} " + " ".join(_fmt(row.get(c, np.nan)) for c in cols)
                for e, row in sorted(rows.items())
            ]
            append_lines(
                self._set_dir(set_name) / "running_stats.txt", lines, sync=sync
            )
        rec = np.column_stack(
            [
                ev,
                batch.optimizer,
                batch.elapsed,
                batch.training_loss,
                batch.validation_loss,
                batch.active_values,
            ]
        ).astype("<f8")
        assert self._journal is not None, "start() must be called before record()"
        self._journal.write(rec.tobytes())
        self._journal.flush()
        if sync:
            os.fsync(self._journal.fileno())
            self._last_sync = time.monotonic()
        self._n_rows += rec.shape[0]
        if batch.training_residuals is not None:
            self._append_residuals(ev, batch.training_residuals, "training")
        if batch.validation_residuals is not None:
            self._append_residuals(ev, batch.validation_residuals, "validation")
        if (
            self._n_rows >= max(1.0, self._h5_rows * (1 + self.h5_growth))
            and self._n_rows - self._h5_rows >= 1000
        ):
            self.write_h5()

    def set_residual_layout(self, kind: str, layout: Mapping[str, np.ndarray]) -> None:
        """Store what each residual column is (see :func:`residual_layout`), so that
        stored residuals can be re-scored later without the input files."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in layout.items()})
        write_bytes_atomic(_layout_path(self.root, kind), buf.getvalue())

    def _append_residuals(
        self, evaluation: np.ndarray, residuals: np.ndarray, kind: str
    ) -> None:
        path, header = _residual_paths(self.root, kind)
        if not header.exists():
            write_text_atomic(header, f"{residuals.shape[1]}\n")
        rec = np.column_stack([evaluation, residuals]).astype("<f8")
        with open(path, "ab") as f:
            f.write(rec.tobytes())

    # ---- snapshots --------------------------------------------------------------------
    def snapshot(self, kind: str, data_set: str, snapshot: Snapshot) -> None:
        """Replace ``<set>/<kind>/`` file by file (each file atomically)."""
        d = self._set_dir(data_set) / kind
        d.mkdir(parents=True, exist_ok=True)
        files = dict(snapshot.files)
        files["loss.txt"] = (
            f"# evaluation loss\n{snapshot.evaluation} {_fmt(snapshot.loss)}\n"
        )
        for name, text in files.items():
            write_text_atomic(d / name, text)
        for name, draw in snapshot.figures.items():
            try:
                target = d / name
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp.png")
                draw(tmp)
                os.replace(tmp, target)
            except Exception as err:  # a plot must never end a run
                logger.warning("could not draw %s: %s", d / name, err)

    # ---- checkpoint -------------------------------------------------------------------
    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Flush logs, then atomically replace ``checkpoint.pkl``."""
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())
        write_bytes_atomic(
            self.root / "checkpoint.pkl",
            pickle.dumps(dict(state), protocol=pickle.HIGHEST_PROTOCOL),
        )

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.root / "checkpoint.pkl"
        if not path.exists():
            return None
        try:
            return pickle.loads(path.read_bytes())
        except Exception as err:
            raise ResultsError(
                f"{path}: checkpoint cannot be read ({err}); start a new run with --overwrite."
            ) from err

    # ---- evaluations.h5 -----------------------------------------------------------------
    def write_h5(self) -> None:
        """Rewrite ``evaluations.h5`` atomically from the journal."""
        if self._journal is not None:
            self._journal.flush()
        write_evaluations_h5(self.root, self._active_names)
        self._h5_rows = self._n_rows

    def close(self) -> None:
        """Close the journal without writing ``evaluations.h5`` (after an error)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def finish(self) -> None:
        """Write ``evaluations.h5`` and close the journal."""
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())
        self.write_h5()
        if self._journal is not None:
            self._journal.close()
            self._journal = None


RESIDUAL_KINDS = ("training", "validation")


def _residual_paths(root: Path, kind: str) -> tuple[Path, Path]:
    stem = ".residuals" if kind == "training" else f".{kind}_residuals"
    return root / f"{stem}.journal", root / f"{stem}.journal.header"


def _layout_path(root: Path, kind: str) -> Path:
    return root / f".residuals.{kind}.layout.npz"


def _read_residual_journal(root: Path, kind: str) -> np.ndarray | None:
    """(n, 1 + n_values) rows ``evaluation, residuals...`` of a residual journal
    (a cut-short last row dropped), or None when there is none."""
    path, header = _residual_paths(root, kind)
    if not (path.exists() and header.exists()):
        return None
    width = int(header.read_text().split()[0]) + 1
    raw = np.fromfile(path, dtype="<f8")
    return raw[: (raw.size // width) * width].reshape(-1, width)


def residual_layout(compiled: Any) -> dict[str, np.ndarray]:
    """Plain arrays describing the values of a compiled data set: ``expressions``
    (n_entries,), ``units`` (n_entries,), ``entry_of_value``, ``reference``,
    ``sigma``, ``weight`` (n_values,)."""
    return {
        "expressions": np.array(compiled.expressions, dtype=str),
        "units": np.array([u.label for u in compiled.unit_of_entry], dtype=str),
        "entry_of_value": np.asarray(compiled.entry_of_value, dtype=np.int64),
        "reference": np.asarray(compiled.reference, dtype=float),
        "sigma": np.asarray(compiled.sigma, dtype=float),
        "weight": np.asarray(compiled.weight, dtype=float),
    }


def _read_journal(root: Path) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(n for n in (root / JOURNAL_HEADER).read_text().split("\n") if n)
    size = 5 + len(names)
    data = np.fromfile(root / JOURNAL, dtype="<f8")
    n = data.size // size
    return names, data[: n * size].reshape(n, size)


def write_evaluations_h5(
    root: str | Path, active_names: Sequence[str] | None = None
) -> Path:
    """Build ``evaluations.h5`` from the journal (atomic replace).

    Datasets: ``evaluation`` (n,), ``optimizer`` (n,), ``elapsed`` (n,) [s],
    ``training_loss`` (n,), ``validation_loss`` (n,) (NaN: not evaluated),
    ``active_values`` (n, n_active); attribute ``active_names``; and, when residuals
    were saved, ``training_residuals`` (n, n_values).
    """
    import h5py

    root = Path(root)
    names, rows = _read_journal(root)
    if active_names is not None and tuple(active_names) != names:
        names = tuple(active_names)
    tmp = root / ".evaluations.h5.tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["active_names"] = np.array(names, dtype=h5py.string_dtype())
        f.attrs["format"] = "parafit-evaluations-1"
        f.create_dataset("evaluation", data=rows[:, 0].astype(np.int64))
        f.create_dataset("optimizer", data=rows[:, 1].astype(np.int64))
        f.create_dataset("elapsed", data=rows[:, 2])
        f.create_dataset("training_loss", data=rows[:, 3])
        f.create_dataset("validation_loss", data=rows[:, 4])
        f.create_dataset(
            "active_values", data=rows[:, 5:], chunks=True if rows.shape[0] else None
        )
        for kind in RESIDUAL_KINDS:
            res = _read_residual_journal(root, kind)
            if res is None or res.shape[1] < 2 or not rows.shape[0]:
                continue
            res = res[np.isin(res[:, 0], rows[:, 0])]
            prefix = "" if kind == "training" else f"{kind}_"
            f.create_dataset(
                f"{prefix}residual_evaluation", data=res[:, 0].astype(np.int64)
            )
            f.create_dataset(f"{kind}_residuals", data=res[:, 1:], chunks=True)
            layout_file = _layout_path(root, kind)
            if layout_file.exists():
                g = f.create_group(f"residual_layout/{kind}")
                with np.load(layout_file, allow_pickle=False) as lay:
                    for key in lay.files:
                        arr = lay[key]
                        if arr.dtype.kind == "U":
                            arr = (
                                arr.astype(h5py.string_dtype())
                                if arr.size
                                else arr.astype("S1")
                            )
                        g.create_dataset(key, data=arr)
        f.flush()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, root / "evaluations.h5")
    return root / "evaluations.h5"


def read_evaluations(root: str | Path) -> dict[str, np.ndarray | tuple[str, ...]]:
    """Every evaluation of a run: from ``evaluations.h5`` if current, else the journal.

    Returns a dict with ``evaluation``, ``optimizer``, ``elapsed``, ``training_loss``,
    ``validation_loss``, ``active_values`` and ``active_names``.
    """
    root = Path(root)
    h5 = root / "evaluations.h5"
    journal_rows = None
    if (root / JOURNAL).exists() and (root / JOURNAL_HEADER).exists():
        names, journal_rows = _read_journal(root)
    if h5.exists():
        import h5py

        with h5py.File(h5, "r") as f:
            n = f["evaluation"].shape[0]
            if journal_rows is None or n >= journal_rows.shape[0]:
                return {
                    "evaluation": f["evaluation"][:],
                    "optimizer": f["optimizer"][:],
                    "elapsed": f["elapsed"][:],
                    "training_loss": f["training_loss"][:],
                    "validation_loss": f["validation_loss"][:],
                    "active_values": f["active_values"][:],
                    "active_names": tuple(str(s) for s in f.attrs["active_names"]),
                }
    if journal_rows is None:
        raise ResultsError(
            f"{root}: no evaluations.h5 and no evaluation journal found."
        )
    return {
        "evaluation": journal_rows[:, 0].astype(np.int64),
        "optimizer": journal_rows[:, 1].astype(np.int64),
        "elapsed": journal_rows[:, 2],
        "training_loss": journal_rows[:, 3],
        "validation_loss": journal_rows[:, 4],
        "active_values": journal_rows[:, 5:],
        "active_names": names,
    }


def read_residuals(
    root: str | Path, kind: str = "training"
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None] | None:
    """Stored residuals of a run: ``(evaluation (n,), residuals (n, n_values),
    layout or None)``, or None when none were saved (h5 first, then the journal)."""
    root = Path(root)
    prefix = "" if kind == "training" else f"{kind}_"
    h5 = root / "evaluations.h5"
    journal = _read_residual_journal(root, kind)
    journal_n = -1 if journal is None else journal.shape[0]
    if h5.exists():
        import h5py

        with h5py.File(h5, "r") as f:
            name = f"{kind}_residuals"
            if name in f and f[name].shape[0] >= journal_n:
                layout = None
                if f"residual_layout/{kind}" in f:
                    g = f[f"residual_layout/{kind}"]
                    layout = {}
                    for key in g:
                        arr = g[key][:]
                        if arr.dtype.kind in "OS":
                            arr = np.array(
                                [
                                    a.decode() if isinstance(a, bytes) else str(a)
                                    for a in arr
                                ],
                                dtype=str,
                            )
                        layout[key] = arr
                return f[f"{prefix}residual_evaluation"][:], f[name][:], layout
    if journal is None:
        return None
    layout_file = _layout_path(root, kind)
    layout = None
    if layout_file.exists():
        with np.load(layout_file, allow_pickle=False) as lay:
            layout = {k: lay[k] for k in lay.files}
    return journal[:, 0].astype(np.int64), journal[:, 1:], layout


def read_running_loss(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(evaluation, loss) columns of a ``running_loss.txt`` (truncated last line ignored)."""
    ev, loss = [], []
    for line in read_complete_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        ev.append(int(float(parts[0])))
        loss.append(float(parts[1]))
    return np.array(ev, dtype=int), np.array(loss, dtype=float)
