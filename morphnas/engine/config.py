"""The resolved configuration of a search: one dataclass, loadable from TOML, checked with clear errors.

Budgets: ``max_trials`` defaults to 5 only when no other budget is given, so ``time_budget = 3600`` alone (or
``morphnas search --time-budget 1h``) means "one hour", not "5 trials or one hour". ``time_budget`` is the
whole job's: the search and the final training and test (``engine/budget.py`` has the rule for the final's
share, ``final_time`` overrides it, 0 turns the final step off).

Multi-fidelity: ``fidelity = "asha"`` (the default wherever ``max_epochs > min_epochs``, i.e. there are two
rungs; with ``max_epochs = 1`` the default is single fidelity, not an error) trains new architectures
``min_epochs`` first and promotes the best ``1/eta`` of each rung to ``eta`` times the epochs, up to
``max_epochs`` (``engine/fidelity.py``); ``"single"`` trains every trial ``max_epochs`` (and is the default for
a synthetic ``objective``, which has no epochs). A run directory written
before multi-fidelity existed has no ``fidelity`` in its config and resumes single-fidelity. Why asha by
default, measured: at an equal 10-minute whole-job budget on a 10,000-image Fashion-MNIST subset it tested higher
than single fidelity on each of 3 seeds (mean 89.47 % vs 88.86 %, 1.8x the trials; docs/benchmarks.md).

Initial architectures: a search on data starts from every generator in ``generator`` (default the CNN and
the ResNet, trained in that order before any morphism, as Auto-Keras 0.3's ``CnnModule`` did); a run
directory written when the default was the CNN alone stored ``"cnn"`` and resumes with it. Why both, measured
(docs/experiments.md): an hour's search on full Fashion-MNIST from the CNN alone tested 93.12 % and 92.96 %, below
the ResNet trained alone for the hour (94.52 %); with both starts it built on the ResNet and tested 94.15 %.
``morphnas train`` trains one network.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morphnas.engine.fidelity import FIDELITIES, Rungs
from morphnas.trainer.trainer import AMP_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXECUTORS = ("thread", "process", "ray")
MODES = ("search", "train")
FINAL_INITS = ("inherit", "scratch")  # where the final training starts (engine/final.py says why inherit)
DEFAULT_TRIALS = 5  # max_trials of a search given no budget at all (the demo)
DEFAULT_GENERATORS = ("cnn", "resnet")  # a search's initial architectures (Auto-Keras 0.3's CnnModule had both)
TRAIN_GENERATOR = "cnn"  # what `morphnas train` trains when given neither a generator nor an architecture


class _Unset:
    """A default resolved by ``validate`` from the other settings: ``max_trials`` (DEFAULT_TRIALS if no other
    budget is set, else no trial cap), ``fidelity`` ("asha" where there are two rungs, else "single") and
    ``generator`` (DEFAULT_GENERATORS for a search, TRAIN_GENERATOR for ``morphnas train``)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


@dataclass
class SearchConfig:
    """Everything that defines a search; the defaults are a short demo on the packaged demo data."""

    dataset: str = "demo"
    data_dir: str | None = None
    download: bool = False
    strategy: str = "bayesian"
    kernel: str | None = None  # None: the strategy's default (bayesian: additive, autokeras: bourgain); GP only
    acquisition: str | None = None  # None: the strategy's default (bayesian: ei, autokeras: ucb)
    strategy_args: dict[str, Any] = field(default_factory=dict)
    generator: str | list[str] = _UNSET  # search: "cnn" and "resnet" (both trained first); train: "cnn"
    generator_args: dict[str, Any] = field(default_factory=dict)  # several generators: see generator_arguments
    max_trials: int | None = _UNSET  # default: 5 if no other budget is set, else None
    time_budget: float | None = None  # seconds of wall-clock for the whole job: search + final training + test
    epoch_budget: int | None = None  # training epochs of all finished trials together (stop suggesting at it)
    max_epochs: int = 3  # epochs per trial; with fidelity "asha", the top rung's
    fidelity: str = _UNSET  # "asha" (default where max_epochs > min_epochs: two rungs or more), "single"
    min_epochs: int = 1  # fidelity "asha": epochs of the first rung
    eta: int = 3  # fidelity "asha": each rung eta times the epochs of the one below, its best 1/eta promoted
    patience: int | None = 3
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    amp: str = "auto"  # autocast: bf16 on CUDA and CPUs with AMX (1.8-2.3x faster), else off; off/bf16/fp16/cuda
    trial_time_limit: float | None = None  # seconds per trial
    val_fraction: float = 0.1
    seed: int = 0
    device: str | None = None
    executor: str | None = None  # thread (one worker), process, ray; None: thread for 1 worker, else process
    workers: int = 1  # trials training at once
    sync: bool = False  # batches of `workers` suggested together and observed in suggestion order (reproducible)
    threads_per_trial: int | None = None  # intra-op threads per worker; None: the cores shared among workers
    ray_address: str | None = None  # a running Ray cluster (else $RAY_ADDRESS, else a local one)
    cpus_per_trial: float = 1.0  # Ray resources of one trial
    gpus_per_trial: float | None = None  # Ray: None = one GPU per trial where the cluster has GPUs; may be 0.5
    noise: float = 1e-4
    max_layers: int = 120
    max_params: int = 5_000_000
    max_width: int = 512
    final_epochs: int = 0  # > 0: retrain the best on train+val this long (at most, under a time budget), test once
    final_time: float | None = None  # seconds of time_budget kept for the final step; None: from measured epochs
    final_init: str = "inherit"  # the final training starts from the trial's searched weights, or "scratch"
    out: str | None = None
    quiet: bool = False
    plugins: list[str] = field(default_factory=list)  # modules or .py files imported before anything is built
    objective: str | None = None  # a registered synthetic objective scores trials instead of training (no data)
    objective_options: dict[str, Any] = field(default_factory=dict)  # passed to the objective's factory
    mode: str = "search"  # "train": no search, only the final training of one architecture (`morphnas train`)
    architecture: dict[str, Any] | None = None  # mode "train": the architecture (JSON) if not the generator's

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> SearchConfig:
        """Raise ValueError naming the first impossible setting."""
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.mode == "search" and self.architecture is not None:
            raise ValueError("architecture is the architecture of a `morphnas train` job (mode 'train'); a search "
                             "starts from its generator")
        self._validate_generators()
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}; got {self.amp!r}")
        if isinstance(self.max_trials, _Unset):
            no_budget = self.time_budget is None and self.epoch_budget is None and self.mode == "search"
            self.max_trials = DEFAULT_TRIALS if no_budget else None
        if self.max_trials is not None and (not isinstance(self.max_trials, int) or isinstance(self.max_trials, bool)
                                            or self.max_trials < 1):
            raise ValueError(f"max_trials must be a positive integer (or None), got {self.max_trials!r}")
        if self.time_budget is not None and not (isinstance(self.time_budget, int | float)
                                                 and math.isfinite(self.time_budget) and self.time_budget > 0):
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        if self.epoch_budget is not None and (not isinstance(self.epoch_budget, int)
                                              or isinstance(self.epoch_budget, bool) or self.epoch_budget < 1):
            raise ValueError(f"epoch_budget must be a positive integer (or None), got {self.epoch_budget!r}")
        if self.mode == "train":
            self._validate_train()
        elif self.max_trials is None and self.time_budget is None and self.epoch_budget is None:
            raise ValueError("a search needs a budget: set max_trials, time_budget or epoch_budget")
        if not isinstance(self.max_epochs, int) or self.max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {self.max_epochs!r}")
        if isinstance(self.fidelity, _Unset):  # asha needs two rungs; with one, every trial is single-fidelity
            multi = self.mode == "search" and self.objective is None and isinstance(self.max_epochs, int) \
                and isinstance(self.min_epochs, int) and self.max_epochs > self.min_epochs >= 1  # objectives: no epochs
            self.fidelity = "asha" if multi else "single"
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"unknown fidelity {self.fidelity!r}; expected one of {FIDELITIES}")
        if self.fidelity == "asha" and self.mode == "search":
            Rungs(self.min_epochs, self.eta, self.max_epochs)  # a ValueError names what is wrong
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ValueError(f"workers must be a positive integer, got {self.workers!r}")
        if self.executor is None:
            self.executor = "thread" if self.workers == 1 else "process"
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; expected one of {EXECUTORS}")
        if self.executor == "thread" and self.workers > 1:
            raise ValueError(f"the thread executor runs one trial at a time; for workers = {self.workers} use "
                             "executor 'process' (local) or 'ray'")
        if self.threads_per_trial is not None and (not isinstance(self.threads_per_trial, int)
                                                   or self.threads_per_trial < 1):
            raise ValueError(f"threads_per_trial must be a positive integer, got {self.threads_per_trial!r}")
        if not self.cpus_per_trial > 0:
            raise ValueError(f"cpus_per_trial must be positive, got {self.cpus_per_trial!r}")
        if self.gpus_per_trial is not None and not self.gpus_per_trial >= 0:
            raise ValueError(f"gpus_per_trial must be >= 0, got {self.gpus_per_trial!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.plugins, list | tuple) or not all(isinstance(p, str) and p for p in self.plugins):
            raise ValueError(f"plugins must be a list of module names or .py paths, got {self.plugins!r}")
        self.plugins = list(self.plugins)
        if not isinstance(self.final_epochs, int) or isinstance(self.final_epochs, bool) or self.final_epochs < 0:
            raise ValueError(f"final_epochs must be a non-negative integer, got {self.final_epochs!r}")
        if self.final_init not in FINAL_INITS:
            raise ValueError(f"final_init must be one of {', '.join(FINAL_INITS)}, got {self.final_init!r}")
        if self.final_time is not None:
            if not (isinstance(self.final_time, int | float) and not isinstance(self.final_time, bool)
                    and math.isfinite(self.final_time) and self.final_time >= 0):
                raise ValueError(f"final_time must be a number of seconds >= 0 (0: no final step), "
                                 f"got {self.final_time!r}")
            if self.final_time == 0 and self.final_epochs:
                raise ValueError(f"final_time = 0 turns the final step off, but final_epochs = {self.final_epochs} "
                                 "asks for one: set one of them")
            if self.final_time > 0 and self.time_budget is None:
                raise ValueError("final_time is the final step's share of time_budget: set time_budget too")
            if self.time_budget is not None and self.final_time >= self.time_budget:
                raise ValueError(f"final_time ({self.final_time:g} s) must be less than time_budget "
                                 f"({self.time_budget:g} s): the search needs some of it")
        if self.objective is not None:
            if not isinstance(self.objective, str) or not self.objective:
                raise ValueError(f"objective must be the name of a registered objective, got {self.objective!r}")
            if self.epoch_budget is not None:
                raise ValueError("an objective trains nothing, so an epoch_budget cannot end its search: "
                                 "use max_trials (or time_budget)")
            if self.final_epochs:
                raise ValueError("an objective has no data to retrain on: set final_epochs = 0 with an objective")
            if self.final_time:
                raise ValueError("an objective has no data to retrain on: leave final_time unset with an objective")
        if not isinstance(self.objective_options, dict):
            raise ValueError(f"objective_options must be a table of options, got {self.objective_options!r}")
        return self

    def _validate_generators(self) -> None:
        """Resolve the default generators; one name stays a string, several (a list, or "cnn,resnet") a list."""
        if isinstance(self.generator, _Unset):
            self.generator = TRAIN_GENERATOR if self.mode == "train" else list(DEFAULT_GENERATORS)
        names = self.generator.split(",") if isinstance(self.generator, str) else self.generator
        if not isinstance(names, list | tuple) or not names or not all(isinstance(n, str) and n.strip()
                                                                       for n in names):
            raise ValueError(f"generator must be a generator's name or a list of names (e.g. 'cnn' or "
                             f"['cnn', 'resnet']), got {self.generator!r}")
        names = [n.strip() for n in names]
        if len(set(names)) != len(names):
            raise ValueError(f"generator names a generator twice: {names}")
        if self.mode == "train" and len(names) > 1:
            raise ValueError(f"`morphnas train` trains one network, but generator names {len(names)}: {names}; "
                             "give one")
        self.generator = names[0] if len(names) == 1 else names
        if not isinstance(self.generator_args, dict):
            raise ValueError(f"generator_args must be a table of arguments, got {self.generator_args!r}")

    @property
    def generators(self) -> list[str]:
        """The names of the generators whose architectures the search starts from, in the order trained."""
        return [self.generator] if isinstance(self.generator, str) else list(self.generator)

    def _validate_train(self) -> None:
        """The settings of a ``morphnas train`` job: one architecture, epochs or a time budget, no search."""
        if self.max_trials is not None or self.epoch_budget is not None or self.objective is not None:
            raise ValueError("mode 'train' runs no search: leave max_trials, epoch_budget and objective unset")
        if self.final_time is not None:
            raise ValueError("mode 'train' spends its whole time_budget on the training: leave final_time unset")
        if not self.final_epochs and self.time_budget is None:
            raise ValueError("training needs a length: set epochs (final_epochs) or a time_budget")
        if self.architecture is not None and not isinstance(self.architecture, dict):
            raise ValueError(f"architecture must be an architecture's JSON object, got {type(self.architecture)}")

    @property
    def wants_final(self) -> bool:
        """Whether the job ends with the final training and test: ``final_epochs`` set, or a time budget (unless
        ``final_time`` is 0); never on a synthetic objective."""
        if self.objective is not None or self.final_time == 0:
            return False
        return self.mode == "train" or self.final_epochs > 0 or self.time_budget is not None

    def with_threads(self, threads: int) -> SearchConfig:
        """A copy whose trainers use ``threads`` intra-op threads (0: PyTorch's default)."""
        return dataclasses.replace(self, threads_per_trial=threads or None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Build from a dict (e.g. TOML), refusing unknown keys with the list of valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> SearchConfig:
        """Read a TOML file (keys at top level or under ``[search]``); ``overrides`` win over the file
        (``generator_args`` are merged, an override's argument winning over the file's)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
        data = data.get("search", data)
        merged = {**data, **overrides}
        if isinstance(data.get("generator_args"), dict) and isinstance(overrides.get("generator_args"), dict):
            merged["generator_args"] = merge_tables(data["generator_args"], overrides["generator_args"])
        return cls.from_dict(merged)


def merge_tables(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, sub-tables merged key by key: ``resnet = {width = 8}`` then
    ``resnet = {depth = 8}`` keeps both, and a flag's ``resnet.width=8`` keeps the file's CNN arguments."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_tables(out[key], value) if both else value
    return out
