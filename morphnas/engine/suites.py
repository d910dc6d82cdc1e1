"""Benchmark suites (``morphnas benchmark run``): a TOML grid of strategies × seeds × tasks × budgets, every cell an
ordinary run directory, all under one suite directory that a re-run resumes.

A suite file::

    name = "quick"
    seeds = [0, 1, 2]                 # or "0-9"
    plugins = []                      # modules / .py files registering user strategies or objectives

    [budget]                          # ONE budget kind for every cell: trials, epochs (in total) or seconds;
    trials = 10                       # a list (e.g. [5, 10, 20]) gives one cell per budget

    [final]                           # the final protocol, identical for every cell: the best architecture
    epochs = 2                        # retrained on train+val this long, tested once (0 or absent: none);
                                      # outside the cell's budget, which is the search's alone (final_time = 0)
    init = "scratch"                  # from fresh weights (default: cells compare architectures at equal
                                      # training), or "inherit": from the weights each search trained

    [search]                          # SearchConfig keys shared by every cell (not budgets, seeds, strategies)
    max_epochs = 1

    [[dataset]]                       # real training: a dataset name or .npz path, optionally a subset
    name = "fashion-mnist"
    data_dir = "/data/fashion-mnist"
    train_images = 5000               # a seeded stratified subset, written once to DIR/datasets/<label>.npz
    test_images = 1000

    [[objective]]                     # or a registered synthetic objective (no training)
    name = "stats-target"

    [[strategy]]                      # each entry is one labelled method
    name = "bayesian"
    label = "bayesian-ei"
    acquisition = "ei"                # kernel / acquisition for GP strategies; other options in `options`
    options = {}

Layout of the suite directory ``DIR``: ``suite.json`` (the resolved suite; a re-run must name the same one),
``datasets/`` (subsets), and one run directory per cell at ``<task>/<label>/b<budget>/s<seed>``, with a
``cell.json`` (written atomically last) marking it finished with its cost. A re-run skips finished cells and
resumes unfinished ones through the ordinary ``open_search`` (no finished trial lost or repeated).

Cells run one after another in this process, or ``parallel_cells`` at a time in separate local processes, each
pinned with ``os.sched_setaffinity`` to its own share of the cores; the pinning is recorded per cell, since
wall-clock budgets are comparable only between cells that ran under the same pinning.
"""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import os
import queue
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morphnas.engine.config import FINAL_INITS, SearchConfig, tomllib
from morphnas.engine.plugins import load_plugins, resolve
from morphnas.fileio import atomic_write
from morphnas.trainer.trainer import LEGACY_AMP

SUITE_FORMAT = "morphnas.suite"
SUITE_FILE = "suite.json"
CELL_FILE = "cell.json"
DATASETS_DIR = "datasets"
SUITE_GENERATOR = "cnn"  # a dataset cell's start unless [search] or the task sets one: the start every suite
#                          recorded so far compared strategies from (a search's own default is cnn and resnet)
BUDGET_KINDS = {"trials": "max_trials", "epochs": "epoch_budget", "seconds": "time_budget"}
TOP_KEYS = {"name", "description", "seeds", "plugins", "budget", "final", "search", "dataset", "objective",
            "strategy"}
STRATEGY_KEYS = {"name", "label", "kernel", "acquisition", "options"}
DATASET_KEYS = {"name", "label", "data_dir", "download", "train_images", "test_images", "search"}
OBJECTIVE_KEYS = {"name", "label", "options"}
# set by the suite's own sections, so [search] may not: budgets equal for all cells, the grid's own axes
RESERVED = {"max_trials", "time_budget", "epoch_budget", "final_epochs", "final_time", "final_init", "seed",
            "strategy", "kernel", "acquisition", "strategy_args", "objective", "objective_options", "dataset",
            "data_dir", "download", "out", "plugins", "mode", "architecture"}
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class SuiteError(ValueError):
    """A suite file (or suite directory) that cannot be run; the message is one line saying what to fix."""


# ---------------------------------------------------------------------------------------------- the suite
@dataclass
class Task:
    """What a cell searches on: a dataset (real training) or a synthetic objective."""

    label: str
    kind: str  # "dataset" or "objective"
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # dataset: data_dir, subsets, search; objective: options


@dataclass
class Cell:
    """One run of the grid: a task, a labelled strategy, a budget, a seed; ``config`` is its SearchConfig."""

    task: str
    label: str
    budget: float
    seed: int
    config: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.task}/{self.label}/b{_fmt(self.budget)}/s{self.seed}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass
class Suite:
    """A parsed, validated suite: the resolved settings (``spec``, JSON-able) and its cells."""

    spec: dict[str, Any]
    cells: list[Cell]

    @property
    def budget_kind(self) -> str:
        return str(self.spec["budget"]["kind"])

    @property
    def final_epochs(self) -> int:
        return int(self.spec["final_epochs"])

    @property
    def final_init(self) -> str:
        """Where each cell's final training starts; suites written before the setting trained from scratch."""
        return str(self.spec.get("final_init", "scratch"))


def _err(where: str, text: str) -> SuiteError:
    return SuiteError(f"{where}: {text}")


def parse_seeds(value: Any, where: str) -> list[int]:
    """A list of non-negative integers, or a string like "0-9" or "0,3,5"."""
    if isinstance(value, str):
        seeds: list[int] = []
        try:
            for part in value.split(","):
                lo, _, hi = part.strip().partition("-")
                seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
        except ValueError:
            raise _err(where, f"seeds {value!r} is not a list of integers or a range like \"0-9\"") from None
        value = seeds
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in value):
        raise _err(where, f"seeds must be a list of non-negative integers or a range like \"0-9\", got {value!r}")
    if not value:
        raise _err(where, "seeds is empty: give at least one seed (3 or more for a comparison, 6+ for tests)")
    if len(set(value)) != len(value):
        raise _err(where, f"seeds {value} repeat a seed")
    return list(value)


def _check_keys(table: Any, allowed: set[str], what: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _err(where, f"{what} must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _err(where, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in {what}; "
                          f"valid keys: {', '.join(sorted(allowed))}")
    return table


def _label(entry: dict[str, Any], what: str, where: str) -> str:
    if "name" not in entry or not isinstance(entry["name"], str) or not entry["name"]:
        raise _err(where, f"every {what} needs a name")
    label = entry.get("label", entry["name"])
    default = Path(label).stem if what == "dataset" and str(label).endswith(".npz") else label
    if not isinstance(default, str) or not LABEL.fullmatch(default):
        raise _err(where, f"{what} label {default!r} must be letters, digits, '.', '_', '+' or '-' (it names a "
                          "directory)")
    return default


def _budgets(table: Any, scale: float, where: str) -> tuple[str, list[float]]:
    if table is None:
        raise _err(where, "no [budget]: set one of trials, epochs or seconds (the same for every cell)")
    table = _check_keys(table, set(BUDGET_KINDS), "[budget]", where)
    kinds = [k for k in BUDGET_KINDS if k in table]
    if not kinds:
        raise _err(where, "[budget] is empty: set one of trials, epochs or seconds")
    if len(kinds) > 1:
        raise _err(where, f"[budget] sets {' and '.join(kinds)}: cells are compared at ONE budget kind; keep one")
    kind = kinds[0]
    values = table[kind] if isinstance(table[kind], list) else [table[kind]]
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                             for v in values):
        raise _err(where, f"budget {kind} must be a positive number or a list of them, got {table[kind]!r}")
    if kind != "seconds" and not all(float(v).is_integer() for v in values):
        raise _err(where, f"budget {kind} must be whole numbers, got {table[kind]!r}")
    scaled = [max(1, round(v * scale)) if kind != "seconds" else float(v) * scale for v in values]
    if len(set(scaled)) != len(scaled):
        raise _err(where, f"budget {kind} {values} (scale {scale:g}) repeats a value")
    return kind, sorted(scaled)


def parse_suite(path: str | Path, out: str | Path, scale: float = 1.0) -> Suite:
    """Read and check a suite file; SuiteError (one line, naming the file) for anything wrong. Writes nothing."""
    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise _err(where, "no such suite file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _err(where, f"not valid TOML: {exc}") from None
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise _err(where, f"--scale must be a positive number, got {scale!r}")
    _check_keys(raw, TOP_KEYS, "the suite", where)
    seeds = parse_seeds(raw.get("seeds"), where) if "seeds" in raw else parse_seeds([], where)
    try:
        plugins = resolve(list(raw.get("plugins", [])), base=path.parent)
        load_plugins(plugins)
    except (TypeError, ValueError) as exc:
        raise _err(where, f"plugins: {exc}") from None
    kind, budgets = _budgets(raw.get("budget"), scale, where)
    final = _check_keys(raw.get("final", {}), {"epochs", "init"}, "[final]", where)
    final_epochs = final.get("epochs", 0)
    if not isinstance(final_epochs, int) or isinstance(final_epochs, bool) or final_epochs < 0:
        raise _err(where, f"[final] epochs must be a non-negative integer, got {final_epochs!r}")
    final_init = final.get("init", "scratch")
    if final_init not in FINAL_INITS:
        raise _err(where, f"[final] init must be one of {', '.join(FINAL_INITS)}, got {final_init!r}")
    common = _check_keys(raw.get("search", {}), set(SearchConfig.__dataclass_fields__), "[search]", where)
    for key in sorted(set(common) & RESERVED):
        why = ("budgets are equal for every cell: set them in [budget] only"
               if key in ("max_trials", "time_budget", "epoch_budget") else
               "the final protocol is set in [final]" if key in ("final_epochs", "final_time", "final_init") else
               "it is an axis of the grid or set by the suite's own sections")
        raise _err(where, f"[search] sets {key}: {why}")
    tasks = _tasks(raw, where, kind)
    strategies = _strategies(raw, where)
    if kind == "epochs" and any(t.kind == "objective" for t in tasks):
        raise _err(where, "an objective trains nothing: epoch budgets need datasets; use trials for objectives")
    cells = []
    for task in tasks:
        for entry in strategies:
            for budget in budgets:
                for seed in seeds:
                    cells.append(_cell(task, entry, kind, budget, seed, common, plugins, Path(out), where,
                                       final_init))
    # check each cell's configuration and each strategy's options now, before anything is written
    checked: set[tuple[str, str]] = set()
    for cell in cells:
        try:
            config = SearchConfig.from_dict({**cell.config, "out": None})
        except (TypeError, ValueError) as exc:
            raise _err(where, f"cell {cell.key}: {exc}") from None
        if (cell.task, cell.label) not in checked:
            checked.add((cell.task, cell.label))
            _check_strategy(config, where, cell.label)
    spec = {"format": SUITE_FORMAT, "name": raw.get("name", path.stem), "description": raw.get("description", ""),
            "source": str(path.resolve()), "scale": scale, "seeds": seeds, "plugins": plugins,
            "budget": {"kind": kind, "values": budgets}, "final_epochs": final_epochs,
            "final_init": final_init, "amp_default": "auto", "search": common,
            "tasks": [t.__dict__ for t in tasks], "strategies": strategies}
    return Suite(spec, cells)


def _tasks(raw: dict[str, Any], where: str, kind: str) -> list[Task]:
    from morphnas.searcher.objectives import OBJECTIVES
    from morphnas.trainer.registry import DATASET_NAMES

    tasks: list[Task] = []
    for entry in _entries(raw, "dataset", where):
        _check_keys(entry, DATASET_KEYS, f"dataset {entry.get('name', '?')!r}", where)
        label = _label(entry, "dataset", where)
        name = entry["name"]
        if name.lower() not in (*DATASET_NAMES, "cifar-10", "fashion_mnist") and not name.endswith(".npz"):
            raise _err(where, f"unknown dataset {name!r}: valid names are {', '.join(DATASET_NAMES)}, or a path to "
                              "an .npz file")
        for key in ("train_images", "test_images"):
            n = entry.get(key)
            if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 10):
                raise _err(where, f"dataset {label!r}: {key} must be an integer >= 10, got {n!r}")
        search = _check_keys(entry.get("search", {}), set(SearchConfig.__dataclass_fields__) - RESERVED,
                             f"dataset {label!r} search", where)
        options = {k: v for k, v in entry.items() if k not in ("name", "label")}
        options["search"] = search
        if isinstance(options.get("data_dir"), str):
            options["data_dir"] = str((Path(where).parent / options["data_dir"]).resolve()) \
                if not Path(options["data_dir"]).is_absolute() else options["data_dir"]
        tasks.append(Task(label, "dataset", name, options))
    for entry in _entries(raw, "objective", where):
        _check_keys(entry, OBJECTIVE_KEYS, f"objective {entry.get('name', '?')!r}", where)
        label = _label(entry, "objective", where)
        if entry["name"] not in OBJECTIVES:
            raise _err(where, f"unknown objective {entry['name']!r}; valid names: {', '.join(OBJECTIVES.names())} "
                              "(register your own with register_objective in a plugin)")
        opts = entry.get("options", {})
        if not isinstance(opts, dict):
            raise _err(where, f"objective {label!r}: options must be a table")
        tasks.append(Task(label, "objective", entry["name"], {"options": opts}))
    if not tasks:
        raise _err(where, "no task: add at least one [[dataset]] or [[objective]]")
    labels = [t.label for t in tasks]
    if len(set(labels)) != len(labels):
        raise _err(where, f"task labels repeat: {labels}; give each [[dataset]] / [[objective]] its own label")
    return tasks


def _entries(raw: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [{"name": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise _err(where, f"{key} must be [[{key}]] tables")
    return [{"name": v} if isinstance(v, str) else v for v in value]


def _strategies(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    from morphnas.searcher.strategies import STRATEGIES

    entries = _entries(raw, "strategy", where)
    if not entries:
        raise _err(where, "no strategy: add [[strategy]] entries (e.g. name = \"random\")")
    out = []
    for entry in entries:
        _check_keys(entry, STRATEGY_KEYS, f"strategy {entry.get('name', '?')!r}", where)
        label = _label(entry, "strategy", where)
        if entry["name"] not in STRATEGIES:
            raise _err(where, f"unknown strategy {entry['name']!r}; valid names: {', '.join(STRATEGIES.names())}")
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise _err(where, f"strategy {label!r}: options must be a table")
        out.append({"label": label, "name": entry["name"], "kernel": entry.get("kernel"),
                    "acquisition": entry.get("acquisition"), "options": options})
    labels = [e["label"] for e in out]
    if len(set(labels)) != len(labels):
        raise _err(where, f"strategy labels repeat: {labels}; give entries with the same name their own label")
    return out


def _cell(task: Task, entry: dict[str, Any], kind: str, budget: float, seed: int, common: dict[str, Any],
          plugins: list[str], out: Path, where: str, final_init: str = "scratch") -> Cell:
    config: dict[str, Any] = {"generator": SUITE_GENERATOR, **common, "strategy": entry["name"],
                              "kernel": entry["kernel"], "acquisition": entry["acquisition"],
                              "strategy_args": copy.deepcopy(entry["options"]),
                              "seed": seed, "plugins": plugins, "final_epochs": 0, "final_time": 0,
                              "final_init": final_init,
                              "max_trials": None, "time_budget": None, "epoch_budget": None, "quiet": True}
    config[BUDGET_KINDS[kind]] = int(budget) if kind != "seconds" else float(budget)
    if task.kind == "objective":
        config.update(objective=task.name, objective_options=copy.deepcopy(task.options["options"]))
    else:
        config.update(task.options["search"])
        if task.options.get("train_images") or task.options.get("test_images"):
            config["dataset"] = str((out / DATASETS_DIR / f"{task.label}.npz").resolve())
        else:
            config.update(dataset=task.name, data_dir=task.options.get("data_dir"),
                          download=bool(task.options.get("download", False)))
    cell = Cell(task.label, entry["label"], budget, seed, config)
    config["out"] = str((out / cell.key).resolve())
    return cell


def _check_strategy(config: SearchConfig, where: str, label: str) -> None:
    from morphnas.engine.setup import build_strategy, generator_arguments, initial_architectures
    from morphnas.searcher.objectives import start_architecture

    try:
        if config.objective is None:
            generator_arguments(config)  # names and arguments, checked without the data
        initial = initial_architectures(config, None) if config.objective else [start_architecture()]
        build_strategy(config, initial)
    except (TypeError, ValueError) as exc:
        raise _err(where, f"strategy {label!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------- the directory
def prepare(suite: Suite, out: str | Path) -> Path:
    """Create (or check) the suite directory: a re-run must name the same suite; subsets written once."""
    out = Path(out)
    record = out / SUITE_FILE
    spec = json.loads(json.dumps(suite.spec))
    if record.is_file():
        try:
            old = json.loads(record.read_text())
        except (json.JSONDecodeError, OSError) as exc:
            raise SuiteError(f"{record} is corrupt: {exc}") from None
        old_spec = {"final_init": "scratch", **old.get("suite", {})}  # recorded before the setting: scratch
        if "amp_default" not in old_spec:  # recorded before the key: keep the precision its cells started in
            old_spec["amp_default"] = spec["amp_default"] = suite.spec["amp_default"] = _recorded_amp(suite.cells)
        diff = sorted(k for k in set(spec) | set(old_spec) if k != "source" and spec.get(k) != old_spec.get(k))
        if diff:
            raise SuiteError(f"{out} holds a different suite (it differs in {', '.join(diff)}): re-run the same "
                             "suite file with the same --scale, or choose another --out")
        if "amp_default" not in old.get("suite", {}):  # record it, so that the report and later re-runs agree
            atomic_write(record, json.dumps({**old, "suite": {**old["suite"], "amp_default": spec["amp_default"]}},
                                            indent=1))
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SuiteError(f"{out} exists and is not an empty directory or a suite directory: choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(record, json.dumps({"format": SUITE_FORMAT, "suite": spec, "created": time.time()}, indent=1))
    for task in suite.spec["tasks"]:
        opts = task["options"]
        if task["kind"] == "dataset" and (opts.get("train_images") or opts.get("test_images")):
            _write_subset(task, out / DATASETS_DIR / f"{task['label']}.npz")
    return out


def _recorded_amp(cells: list[Cell]) -> str:
    """The default autocast of a suite directory recorded before `amp_default`: the `amp` its started cells
    recorded in their config.json ("auto" since CPU autocast), else `LEGACY_AMP` (what they ran with before)."""
    for cell in cells:
        try:
            recorded = json.loads((Path(cell.config["out"]) / "config.json").read_text()).get("amp")
        except (OSError, json.JSONDecodeError):
            continue
        if recorded is not None and "amp" not in cell.config:  # a cell that names its own amp says nothing
            return str(recorded)
    return LEGACY_AMP


def _write_subset(task: dict[str, Any], path: Path) -> None:
    """A seeded, stratified subset of a dataset's train (and test) split as an .npz, written once, atomically."""
    if path.is_file():
        return
    import numpy as np

    from morphnas.trainer.containers import stratified_split
    from morphnas.trainer.datasets import load_dataset

    opts = task["options"]
    data = load_dataset(task["name"], data_dir=opts.get("data_dir"), download=bool(opts.get("download", False)))

    def pick(split: Any, n: int | None, seed: int) -> tuple[Any, Any]:
        x, y = split.x.numpy(), split.y.numpy()
        if n is None or n >= len(y):
            return x, y
        _, held = stratified_split(y, n / len(y), seed)
        return x[held], y[held]

    x_train, y_train = pick(data.train, opts.get("train_images"), 0)
    arrays = {"x_train": x_train, "y_train": y_train, "class_names": np.array(data.class_names),
              "flip_ok": np.array(data.flip_ok)}
    if data.crop_padding is not None:
        arrays["crop_padding"] = np.array(data.crop_padding)
    if data.test is not None:
        arrays["x_test"], arrays["y_test"] = pick(data.test, opts.get("test_images"), 1)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, write)


def cell_record(path: str | Path) -> dict[str, Any] | None:
    """The ``cell.json`` of a finished cell, or None."""
    f = Path(path) / CELL_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def _reset_if_never_started(path: Path) -> None:
    """A cell killed while its run directory was being created (before its first trial) is removed, so it can
    be created again; anything with a trial in it is kept (RunDirError)."""
    from morphnas.storage.rundir import RunDir, RunDirError

    if not path.exists():
        return
    try:
        RunDir.open(path).close()
    except RunDirError:
        models = path / "models"
        if models.is_dir() and any(models.iterdir()):
            raise
        shutil.rmtree(path)


def run_cell(cell: Cell, final_epochs: int, verbose: bool = False) -> dict[str, Any]:
    """Run (or resume, or skip if finished) one cell; returns its ``cell.json`` record."""
    from morphnas.engine.loop import Progress, create_search, open_search
    from morphnas.engine.results import busy_seconds, final_evaluation
    from morphnas.storage.rundir import RunDir, RunDirError

    path = Path(cell.config["out"])
    done = cell_record(path)
    if done is not None:
        return done
    start = time.time()
    progress = Progress(quiet=not verbose)
    _reset_if_never_started(path)
    if (path / "config.json").is_file():
        search = open_search(path, progress=progress)
    else:
        search = create_search(SearchConfig.from_dict({**cell.config, "quiet": not verbose}), progress=progress)
    try:
        search.run()
    finally:
        search.run_dir.close()
    run = RunDir.open(path)
    try:
        trials = run.trials()
        final, final_error = run.final_report(), ""
    finally:
        run.close()
    if final_epochs and cell.config.get("objective") is None and final is None:
        try:
            final = final_evaluation(path, final_epochs, quiet=not verbose,
                                     init=cell.config.get("final_init", "scratch"))
        except (RunDirError, RuntimeError, ValueError) as exc:
            final_error = str(exc)
    finished = [t for t in trials if t.finished]
    search_seconds = max((float(t.extra.get("elapsed", 0.0)) for t in finished), default=0.0)
    final_seconds = float(final["seconds"]) if final else 0.0
    record = {"cell": cell.key, "task": cell.task, "label": cell.label, "strategy": cell.config["strategy"],
              "budget": cell.budget, "seed": cell.seed, "status": "done", "trials": len(finished),
              "epochs": sum(t.epochs for t in finished),
              "cost": {"search_seconds": search_seconds, "training_seconds": sum(t.train_seconds for t in finished),
                       "busy_seconds": busy_seconds(finished), "final_seconds": final_seconds,
                       "total_seconds": search_seconds + final_seconds,
                       "last_session_wall_seconds": time.time() - start},
              "final": None if final is None else {"test_accuracy": final["test_accuracy"], "trial": final["trial"],
                                                   "epochs": final["epochs"], "init": final.get("init", "scratch")},
              "final_error": final_error, "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else list(range(os.cpu_count() or 1)), "pinned": bool(os.environ.get("MORPHNAS_CELL_PINNED")),
              "finished_at": time.time()}
    atomic_write(path / CELL_FILE, json.dumps(record, indent=1))
    return record


# ---------------------------------------------------------------------------------------------- running
def run_suite(suite_file: str | Path, out: str | Path, parallel_cells: int = 1, scale: float = 1.0,
              verbose: bool = False, say: Any = print) -> dict[str, Any]:
    """Run every unfinished cell of the suite in ``out`` (finished ones are kept); returns a summary."""
    suite = parse_suite(suite_file, out, scale)
    if not isinstance(parallel_cells, int) or parallel_cells < 1:
        raise SuiteError(f"--parallel-cells must be a positive integer, got {parallel_cells!r}")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if parallel_cells > 1 and len(cores) < parallel_cells:
        raise SuiteError(f"--parallel-cells {parallel_cells} needs as many cores to pin to; this process may use "
                         f"{len(cores) or 'an unknown number of'} core(s)")
    out = prepare(suite, out)
    _set_default_amp(suite.cells, suite.spec["amp_default"])
    todo = [c for c in suite.cells if cell_record(c.config["out"]) is None]
    say(f"suite {suite.spec['name']}: {len(suite.cells)} cells, {len(suite.cells) - len(todo)} finished already, "
        f"{len(todo)} to run{f' ({parallel_cells} at a time, pinned)' if parallel_cells > 1 and todo else ''}")
    start = time.time()
    if parallel_cells == 1:
        for i, cell in enumerate(todo, 1):
            _announce(say, i, len(todo), run_cell(cell, suite.final_epochs, verbose))
    else:
        _run_parallel(todo, suite.final_epochs, parallel_cells, cores, verbose, say)
    say(f"suite done in {time.time() - start:.0f} s; report: morphnas benchmark report {out}")
    return {"out": str(out), "cells": len(suite.cells), "ran": len(todo)}


def _announce(say: Any, i: int, n: int, record: dict[str, Any]) -> None:
    cost = record["cost"]
    final = record.get("final")
    say(f"[{i}/{n}] {record['cell']}: {record['trials']} trials, {cost['search_seconds']:.1f} s search"
        + (f", test {final['test_accuracy']:.2%}" if final else "")
        + (f" (final failed: {record['final_error']})" if record.get("final_error") else ""))


def _pin(cores: list[int]) -> None:
    """Pin this process to ``cores`` and die with the parent (Linux): a killed suite leaves no orphan cells."""
    os.sched_setaffinity(0, cores)
    os.environ["MORPHNAS_CELL_PINNED"] = "1"
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import torch

    torch.set_num_threads(len(cores))


def _cell_worker(cores: list[int], tasks: Any, results: Any, final_epochs: int, verbose: bool) -> None:
    _pin(cores)
    while True:
        item = tasks.get()
        if item is None:
            return
        cell = Cell(**item)
        if cell.config.get("threads_per_trial") is None:
            cell.config["threads_per_trial"] = len(cores)  # the cell's trainers use its share, not the machine
        try:
            results.put(("ok", run_cell(cell, final_epochs, verbose)))
        except BaseException as exc:  # report and go on with the next cell; the error is re-raised at the end
            results.put(("error", f"{cell.key}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def _run_parallel(todo: list[Cell], final_epochs: int, n: int, cores: list[int], verbose: bool, say: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for cell in todo:
        tasks.put(cell.__dict__)
    shares = [cores[i::n] for i in range(n)]
    procs = [ctx.Process(target=_cell_worker, args=(share, tasks, results, final_epochs, verbose))
             for share in shares]
    for _ in procs:
        tasks.put(None)
    for p in procs:
        p.start()
    errors, got = [], 0
    try:
        while got < len(todo):
            try:
                kind, value = results.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    errors.append("cell processes died before finishing every cell")
                    break
                continue
            got += 1
            if kind == "ok":
                _announce(say, got, len(todo), value)
            else:
                errors.append(value)
                say(f"[{got}/{len(todo)}] FAILED {value.splitlines()[0]}")
    finally:
        for p in procs:
            p.join(timeout=0 if errors else None)
            if p.is_alive():
                p.kill()
    if errors:
        raise RuntimeError("some cells failed (re-run the same command to retry them):\n" + "\n".join(errors))


def load_suite_dir(out: str | Path) -> dict[str, Any]:
    """The resolved suite recorded in a suite directory; SuiteError if ``out`` is not one."""
    record = Path(out) / SUITE_FILE
    if not record.is_file():
        raise SuiteError(f"{out} is not a suite directory (no {SUITE_FILE}): run `morphnas benchmark run` first")
    data = json.loads(record.read_text())
    if data.get("format") != SUITE_FORMAT:
        raise SuiteError(f"{record} is not a morphnas suite record")
    return data["suite"]


def suite_cells(spec: dict[str, Any], out: str | Path) -> list[Cell]:
    """The cells of a recorded suite, rebuilt from its spec (the same order as when it ran)."""
    out = Path(out)
    cells = []
    for t in spec["tasks"]:
        task = Task(**t)
        for entry in spec["strategies"]:
            for budget in spec["budget"]["values"]:
                for seed in spec["seeds"]:
                    cells.append(_cell(task, entry, spec["budget"]["kind"], budget, seed, spec["search"],
                                       spec["plugins"], out, str(out), spec.get("final_init", "scratch")))
    _set_default_amp(cells, spec.get("amp_default", LEGACY_AMP))
    return cells


def _set_default_amp(cells: list[Cell], amp: str) -> None:
    """The autocast of cells whose settings name none: "auto" in suites recorded since CPU autocast, and
    `LEGACY_AMP` in older suite directories, so that a re-run finishes them in the precision they started in."""
    for cell in cells:
        cell.config.setdefault("amp", amp)


__all__ = ["Cell", "Suite", "SuiteError", "cell_record", "load_suite_dir", "parse_suite", "prepare", "run_cell",
           "run_suite", "suite_cells"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `morphnas benchmark run SUITE.toml --out DIR`")
