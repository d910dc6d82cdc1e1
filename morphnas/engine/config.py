"""The resolved configuration of a search: one dataclass, loadable from TOML, checked with clear errors."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXECUTORS = ("thread", "process", "ray")


@dataclass
class SearchConfig:
    """Everything that defines a search; the defaults are a short demo on the packaged demo data."""

    dataset: str = "demo"
    data_dir: str | None = None
    download: bool = False
    strategy: str = "bayesian"
    kernel: str | None = None  # None: the strategy's default (bourgain); set only for strategies with a GP
    acquisition: str | None = None  # None: the strategy's default (ucb)
    strategy_args: dict[str, Any] = field(default_factory=dict)
    generator: str = "cnn"
    generator_args: dict[str, Any] = field(default_factory=dict)
    max_trials: int | None = 5
    time_budget: float | None = None  # seconds of wall-clock for the whole search
    epoch_budget: int | None = None  # training epochs of all finished trials together (stop suggesting at it)
    max_epochs: int = 3
    patience: int | None = 3
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float = 5e-4
    schedule: str = "cosine"
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
    final_epochs: int = 0  # > 0: retrain the best architecture this long on train+val, test once
    out: str | None = None
    quiet: bool = False
    plugins: list[str] = field(default_factory=list)  # modules or .py files imported before anything is built
    objective: str | None = None  # a registered synthetic objective scores trials instead of training (no data)
    objective_options: dict[str, Any] = field(default_factory=dict)  # passed to the objective's factory

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> SearchConfig:
        """Raise ValueError naming the first impossible setting."""
        if self.max_trials is not None and (not isinstance(self.max_trials, int) or self.max_trials < 1):
            raise ValueError(f"max_trials must be a positive integer (or None), got {self.max_trials!r}")
        if self.time_budget is not None and not (isinstance(self.time_budget, int | float)
                                                 and math.isfinite(self.time_budget) and self.time_budget > 0):
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        if self.epoch_budget is not None and (not isinstance(self.epoch_budget, int)
                                              or isinstance(self.epoch_budget, bool) or self.epoch_budget < 1):
            raise ValueError(f"epoch_budget must be a positive integer (or None), got {self.epoch_budget!r}")
        if self.max_trials is None and self.time_budget is None and self.epoch_budget is None:
            raise ValueError("a search needs a budget: set max_trials, time_budget or epoch_budget")
        if not isinstance(self.max_epochs, int) or self.max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {self.max_epochs!r}")
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
        if self.final_epochs < 0:
            raise ValueError(f"final_epochs must be >= 0, got {self.final_epochs!r}")
        if self.objective is not None:
            if not isinstance(self.objective, str) or not self.objective:
                raise ValueError(f"objective must be the name of a registered objective, got {self.objective!r}")
            if self.epoch_budget is not None:
                raise ValueError("an objective trains nothing, so an epoch_budget cannot end its search: "
                                 "use max_trials (or time_budget)")
            if self.final_epochs:
                raise ValueError("an objective has no data to retrain on: set final_epochs = 0 with an objective")
        if not isinstance(self.objective_options, dict):
            raise ValueError(f"objective_options must be a table of options, got {self.objective_options!r}")
        return self

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
        """Read a TOML file (keys at top level or under ``[search]``); ``overrides`` win over the file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
        data = data.get("search", data)
        return cls.from_dict({**data, **overrides})
