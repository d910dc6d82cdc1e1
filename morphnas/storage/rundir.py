"""The run directory of a search: resolved config, trials in SQLite, models on disk, best pointer.

```
run/
  config.json        resolved configuration, seed, versions, git hash if any
  trials.sqlite      one row per trial (ops, status, metrics, times), the latest strategy state, and the job
                     state (elapsed seconds over sessions, the final step done)
  models/<id>/       architecture.json, weights.safetensors, checksum
  models/final/      the best architecture retrained on train+validation (the final step, ``morphnas final``),
                     or the given architecture trained by ``morphnas train`` (a run with no trials)
  tb/                TensorBoard event files
  best.json          pointer to the best trial
  normalization.json input normalisation, input shape, class names and the user's labels (exports need no data)
  data.npz           a copy of the arrays given through the Python API (so ``resume`` finds them)
  final.json         the final retrain's single test evaluation
  trajectory.png     best-so-far plot drawn by ``morphnas report``
  cost.png           validation accuracy against FLOPs and seconds per epoch, drawn by ``morphnas report``
```

This module owns that layout: no other module builds a path inside a run directory. Every write is atomic
(``morphnas.fileio.atomic_write``: temporary name, fsync, rename; model directories are renamed into place
whole; SQLite changes are transactions), so a ``kill -9`` at any moment leaves a directory that
``RunDir.open`` accepts and that says exactly which trials finished. Only the search's driver writes here:
trials receive and return models as bytes and never see this directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from morphnas.fileio import atomic_write
from morphnas.graph.graph import Graph, GraphError
from morphnas.status import TrialStatus

RUN_FORMAT = "morphnas.run"
RUN_SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
DB_FILE = "trials.sqlite"
BEST_FILE = "best.json"
MODELS_DIR = "models"
TB_DIR = "tb"
CHECKSUM_FILE = "checksum"
NORMALIZATION_FILE = "normalization.json"
DATA_COPY_FILE = "data.npz"
FINAL_MODEL_DIR = "final"
FINAL_REPORT_FILE = "final.json"


class RunDirError(ValueError):
    """The directory is not a usable run directory (foreign, corrupt, or holding another run)."""


@dataclass
class TrialRecord:
    """One trial as stored: what was suggested, what happened, and the strategy's state after it."""

    id: int
    parent: int | None = None
    ops: list[dict[str, Any]] = field(default_factory=list)
    inherit: bool = True
    strategy: str = ""
    status: TrialStatus = TrialStatus.PENDING
    metric: float | None = None
    loss: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    suggested_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    train_seconds: float = 0.0
    n_params: int = 0
    n_layers: int = 0
    depth: int = 0
    width: int = 0
    skips: int = 0
    arch_hash: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    rung: int = 0  # multi-fidelity rung (0: the first, or the only one)
    fidelity: float | None = None  # epochs of training the trial's rung stands for (its lineage's, cumulative)
    continues: int | None = None  # a promotion: the trial whose trained model this one trains further

    def __post_init__(self) -> None:
        self.status = TrialStatus.parse(self.status)
        self.rung = int(self.rung or 0)

    @property
    def finished(self) -> bool:
        """Whether the trial will not run again (see ``TrialStatus.finished``)."""
        return self.status.finished

    @property
    def has_metric(self) -> bool:
        """Whether the trial has a trained model and a finite validation metric."""
        return self.status.has_metric and self.metric is not None

    @property
    def flops(self) -> int | None:
        """FLOPs per image of the trial's forward pass (2 × MACs, from the architecture); None when unknown
        (a run from before costs were recorded, a trial not yet run, a layer kind without a cost)."""
        value = self.extra.get("flops")
        return int(value) if value is not None else None

    @property
    def train_images_per_second(self) -> float | None:
        """Measured training throughput of the trial (images/s, validation and compiling excluded; a cut trial's
        validated partial epoch counts); None when no epoch was validated or the run predates the record."""
        value = self.extra.get("train_images_per_second")
        return float(value) if value is not None else None

    @property
    def seconds_per_epoch(self) -> float | None:
        """Mean wall-clock seconds of the trial's epochs, training and validation (for a trial cut inside its first
        epoch, the partial epoch scaled to a whole one); None when unknown."""
        value = self.extra.get("seconds_per_epoch")
        return float(value) if value is not None else None


def rank_key(trial: TrialRecord) -> tuple[int, float, int]:
    """Sort key of trials with a metric, larger is better: the higher rung, then the higher validation metric,
    then the earlier trial. Metrics of different rungs (training lengths) are never compared directly."""
    return trial.rung, float(trial.metric if trial.metric is not None else -math.inf), -trial.id


def best_trial(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    """The one rule for "best": among trials with a metric, the highest rung reached, then the highest
    validation metric, then the earliest; None if none has a metric. With one fidelity (every trial rung 0),
    simply the highest metric. A promotion's metric is never below its source's (it keeps its start unless an
    epoch beats it), so the highest rung never trades a lineage's model for a worse one."""
    done = [t for t in trials if t.has_metric]
    return max(done, key=rank_key) if done else None


_JSON_FIELDS = {"ops", "history", "extra"}
_COLUMNS = [f.name for f in fields(TrialRecord)]
# columns added after the first schema: a run written before them gets them (with their defaults) when opened
_ADDED_COLUMNS = {"rung": "INTEGER NOT NULL DEFAULT 0", "fidelity": "REAL", "continues": "INTEGER"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    {", ".join(("id INTEGER PRIMARY KEY" if c == "id" else c) for c in _COLUMNS)}
);
"""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def environment_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on, and the morphnas git hash if any."""
    import gpytorch
    import numpy
    import torch

    import morphnas

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                "gpytorch": gpytorch.__version__, "morphnas": morphnas.__version__,
                "platform": platform.platform()}
    try:
        src = Path(morphnas.__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        if out.returncode == 0:
            versions["git"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


class RunDir:
    """A search's directory on disk. ``RunDir.create`` makes a new one, ``RunDir.open`` an existing one."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = path
        self.config = config
        self._db = sqlite3.connect(path / DB_FILE, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any]) -> RunDir:
        """Make a new run directory; refuses (changing nothing) if ``path`` holds anything already."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()):
            if (path / DB_FILE).exists() or (path / CONFIG_FILE).exists():
                raise RunDirError(f"{path} already holds a run: continue it with `morphnas resume {path}` "
                                  "or choose another --out directory")
            raise RunDirError(f"{path} is not empty: choose a new or empty --out directory")
        path.mkdir(parents=True, exist_ok=True)
        (path / MODELS_DIR).mkdir(exist_ok=True)
        (path / TB_DIR).mkdir(exist_ok=True)
        config = {**config, "format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION,
                  "created": time.time(), "versions": environment_versions()}
        atomic_write(path / CONFIG_FILE, json.dumps(config, indent=1, sort_keys=True))
        run = cls(path, config)
        with run._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?), ('schema_version', ?)",
                       (RUN_FORMAT, str(RUN_SCHEMA_VERSION)))
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run directory after checking it (read-only); RunDirError says what is wrong."""
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"{path} does not exist or is not a directory")
        missing = [name for name in (CONFIG_FILE, DB_FILE) if not (path / name).is_file()]
        if missing:
            raise RunDirError(f"{path} is not a morphnas run directory: missing {', '.join(missing)}")
        try:
            config = json.loads((path / CONFIG_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise RunDirError(f"{path / CONFIG_FILE} is corrupt: {exc}") from None
        if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
            raise RunDirError(f"{path / CONFIG_FILE} is not a morphnas run configuration")
        if config.get("schema_version", 0) > RUN_SCHEMA_VERSION:
            raise RunDirError(f"{path} was written by a newer morphnas (schema {config.get('schema_version')})")
        try:  # check read-only before opening for writing, so a foreign file is never touched
            uri = f"file:{(path / DB_FILE).resolve()}?mode=ro"
            with sqlite3.connect(uri, uri=True) as ro:
                meta = dict(ro.execute("SELECT key, value FROM meta").fetchall())
                columns = {row[1] for row in ro.execute("PRAGMA table_info(trials)")}
            ro.close()
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"{path / DB_FILE} is not a readable trials database: {exc}") from None
        if meta.get("format") != RUN_FORMAT:
            raise RunDirError(f"{path / DB_FILE} is not a morphnas trials database")
        lacking = set(_COLUMNS) - columns - set(_ADDED_COLUMNS)
        if lacking:
            raise RunDirError(f"{path / DB_FILE} lacks columns {sorted(lacking)}: corrupt or foreign")
        run = cls(path, config)
        added = [name for name in _ADDED_COLUMNS if name not in columns]
        if added:  # a run from before multi-fidelity: every trial is rung 0
            try:
                with run._transaction() as db:
                    for name in added:
                        db.execute(f"ALTER TABLE trials ADD COLUMN {name} {_ADDED_COLUMNS[name]}")
            except sqlite3.Error as exc:
                run.close()
                raise RunDirError(f"{path / DB_FILE} was written by an older morphnas and could not be upgraded "
                                  f"(columns {added}): {exc}") from None
        return run

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ trials
    def put_trial(self, trial: TrialRecord, state: dict[str, Any] | None = None) -> None:
        """Insert or replace a trial row and, in the same transaction, the strategy state after this event.

        Only the latest strategy state is kept (it already holds every observation), so the database grows
        linearly with the number of trials.
        """
        values = [json.dumps(v) if k in _JSON_FIELDS else v for k, v in asdict(trial).items()]
        values[_COLUMNS.index("inherit")] = int(trial.inherit)
        values[_COLUMNS.index("status")] = trial.status.value
        with self._transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO trials ({', '.join(_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
            if state is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('strategy_state', ?)", (json.dumps(state),))

    def _row_to_trial(self, row: tuple) -> TrialRecord:
        data = dict(zip(_COLUMNS, row, strict=False))
        for k in _JSON_FIELDS:
            data[k] = json.loads(data[k]) if data[k] else ([] if k != "extra" else {})
        data["inherit"] = bool(data["inherit"])
        return TrialRecord(**data)

    def trials(self) -> list[TrialRecord]:
        """All trials in id order."""
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM trials ORDER BY id").fetchall()
        return [self._row_to_trial(r) for r in rows]

    def trial(self, trial_id: int) -> TrialRecord:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise RunDirError(f"no trial {trial_id} in {self.path}")
        return self._row_to_trial(row)

    def latest_state(self) -> dict[str, Any] | None:
        """The strategy state saved with the most recent event, or None before any."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'strategy_state'").fetchone()
        return None if row is None else json.loads(row[0])

    # ------------------------------------------------------------------ the job
    def job_state(self) -> dict[str, Any]:
        """What the run keeps about the job as a whole: ``elapsed`` seconds over its sessions (the time budget's
        clock) and ``final_trial``, the trial whose final training is done; {} before any."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'job'").fetchone()
        return {} if row is None else json.loads(row[0])

    def update_job_state(self, **values: Any) -> dict[str, Any]:
        """Merge ``values`` into the job state (one transaction); returns the new state."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'job'").fetchone()
            state = {**({} if row is None else json.loads(row[0])), **values}
            db.execute("INSERT OR REPLACE INTO meta VALUES ('job', ?)", (json.dumps(state),))
        return state

    # ------------------------------------------------------------------ models
    def model_dir(self, trial_id: int | str) -> Path:
        return self.path / MODELS_DIR / str(trial_id)

    def save_model(self, trial_id: int | str, graph: Graph) -> Path:
        """Write the trial's model whole into ``models/<id>/`` (architecture, weights, checksum), atomically."""
        final = self.model_dir(trial_id)
        tmp = Path(tempfile.mkdtemp(dir=self.path / MODELS_DIR, prefix=f".{trial_id}."))
        try:
            graph.save(tmp)
            sums = [f"{_sha256(tmp / name)}  {name}" for name in sorted(os.listdir(tmp))]
            atomic_write(tmp / CHECKSUM_FILE, "\n".join(sums) + "\n")
            if final.exists():  # left by an interrupted attempt at this same trial
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def load_model(self, trial_id: int | str, weights: bool = True) -> Graph:
        """Read a trial's model, verifying its checksum; RunDirError names a missing or damaged file."""
        directory = self.model_dir(trial_id)
        sums = directory / CHECKSUM_FILE
        if not sums.is_file():
            raise RunDirError(f"model of trial {trial_id} is missing or incomplete ({directory})")
        for line in sums.read_text().splitlines():
            digest, _, name = line.partition("  ")
            if name == "weights.safetensors" and not weights:
                continue
            if not (directory / name).is_file() or _sha256(directory / name) != digest:
                raise RunDirError(f"{directory / name} does not match its checksum: the file is damaged")
        try:
            return Graph.load(directory, weights=weights)
        except GraphError as exc:
            raise RunDirError(str(exc)) from None

    def save_model_bytes(self, trial_id: int, blob: bytes) -> Path:
        """Save a model that arrived as bytes from a worker (``Graph.to_bytes``); GraphError if it is not one."""
        return self.save_model(trial_id, Graph.from_bytes(blob))

    def model_bytes(self, trial_id: int) -> bytes:
        """A trial's trained model as bytes for a worker (checksum verified)."""
        return self.load_model(trial_id).to_bytes()

    # ------------------------------------------------------------------ best
    def best_trial(self) -> TrialRecord | None:
        """The best finished trial (``best_trial``'s rule), or None."""
        return best_trial(self.trials())

    def set_best(self, trial: TrialRecord) -> None:
        """Point ``best.json`` at ``trial`` (atomic)."""
        data = {"trial": trial.id, "metric": trial.metric, "model": f"{MODELS_DIR}/{trial.id}",
                "n_params": trial.n_params, "description": trial.description}
        atomic_write(self.path / BEST_FILE, json.dumps(data, indent=1))

    def best(self) -> dict[str, Any] | None:
        """The contents of ``best.json`` (None before any trial finished)."""
        path = self.path / BEST_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    # ------------------------------------------------------------------ final retrain
    @property
    def final_model_dir(self) -> Path:
        return self.path / MODELS_DIR / FINAL_MODEL_DIR

    def has_final_model(self) -> bool:
        """Whether ``morphnas final`` (or a search with final epochs) left a retrained model."""
        return (self.final_model_dir / CHECKSUM_FILE).is_file()

    def save_final_model(self, graph: Graph) -> Path:
        """Write the final retrained model into ``models/final/`` (atomically, checksummed)."""
        return self.save_model(FINAL_MODEL_DIR, graph)

    def load_final_model(self) -> Graph:
        """The final retrained model; RunDirError if there is none or it is damaged."""
        if not self.has_final_model():
            raise RunDirError(f"{self.path} has no final model: run `morphnas final {self.path}` first")
        return self.load_model(FINAL_MODEL_DIR)

    def write_final_report(self, report: dict[str, Any]) -> None:
        atomic_write(self.path / FINAL_REPORT_FILE, json.dumps(report, indent=1))

    def final_report(self) -> dict[str, Any] | None:
        """The final test report (``final.json``), or None."""
        path = self.path / FINAL_REPORT_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    # ------------------------------------------------------------------ data description
    def write_normalization(self, mean: list[float], std: list[float], input_shape: tuple[int, ...],
                            class_names: tuple[str, ...]) -> None:
        """Record the input normalisation, shape and classes, so exports and predictions need no data."""
        data = {"mean": [float(m) for m in mean], "std": [float(v) for v in std], "input_shape": list(input_shape),
                "class_names": [str(c) for c in class_names]}
        atomic_write(self.path / NORMALIZATION_FILE, json.dumps(data, indent=1))

    def write_labels(self, class_names: list[str], label_values: list[Any], label_type: str) -> None:
        """Record the user's label for each class (``label_values[i]`` is class i, of ``label_type``: "str" or
        an integer dtype name) next to the normalisation, atomically, so predictions and exports give labels
        of the user's kind. Without it the labels are the class indices."""
        data = self.normalization()
        if len(class_names) != len(data["class_names"]) or len(label_values) != len(class_names):
            raise RunDirError(f"{len(label_values)} label values and {len(class_names)} class names for "
                              f"{len(data['class_names'])} classes")
        data.update(class_names=[str(c) for c in class_names], label_values=list(label_values),
                    label_type=str(label_type))
        atomic_write(self.path / NORMALIZATION_FILE, json.dumps(data, indent=1))

    def normalization(self) -> dict[str, Any]:
        """What ``write_normalization`` (and ``write_labels``) recorded; RunDirError when the file is missing."""
        path = self.path / NORMALIZATION_FILE
        if not path.is_file():
            raise RunDirError(f"{path} is missing: the run directory is incomplete")
        return json.loads(path.read_text())

    def save_data_copy(self, write: Callable[[Path], object]) -> None:
        """Keep a copy of the search's arrays in the run (``write(path)`` writes the .npz), atomically."""
        atomic_write(self.path / DATA_COPY_FILE, write)

    @property
    def data_copy(self) -> Path | None:
        """The path of the kept data copy, or None when the search's data is loaded by name."""
        path = self.path / DATA_COPY_FILE
        return path if path.is_file() else None

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace config.json (e.g. to record a resume) atomically."""
        self.config = config
        atomic_write(self.path / CONFIG_FILE, json.dumps(config, indent=1, sort_keys=True))

    @property
    def trajectory_plot(self) -> Path:
        """Where ``morphnas report`` draws the best-so-far trajectory (``trajectory.png``)."""
        return self.path / "trajectory.png"

    @property
    def cost_plot(self) -> Path:
        """Where ``morphnas report`` draws validation accuracy against each trial's cost (``cost.png``)."""
        return self.path / "cost.png"

    @property
    def best_architecture_plot(self) -> Path:
        """Where ``morphnas report`` draws the best trial's architecture (``best_architecture.png``)."""
        return self.path / "best_architecture.png"

    def architecture_plot(self, trial_id: int) -> Path:
        """Where ``morphnas report --trial N`` draws trial N's architecture (``architecture-NNNN.png``)."""
        return self.path / f"architecture-{int(trial_id):04d}.png"

    @property
    def tb_dir(self) -> Path:
        return self.path / TB_DIR
