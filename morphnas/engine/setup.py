"""Setting a search up from its configuration: data, trainer, initial architectures, strategy, seeds.

These are plain functions of a ``SearchConfig`` (and the data), picklable where a worker needs them, so the
driver, a worker process and a Ray actor build exactly the same trainer. The search loop itself lives in
``loop.py``; the run directory's files are read and written only through ``RunDir``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morphnas.engine.config import SearchConfig
from morphnas.engine.plugins import load_plugins
from morphnas.graph.generators import get_generator
from morphnas.graph.graph import Graph
from morphnas.graph.morphisms import Limits
from morphnas.searcher.objectives import Objective, make_objective
from morphnas.searcher.strategies import STRATEGIES, Strategy, make_strategy
from morphnas.storage.rundir import RunDir, RunDirError
from morphnas.trainer.augment import Normalizer
from morphnas.trainer.datasets import ImageDataset, load_dataset, load_npz
from morphnas.trainer.trainer import LEGACY_AMP, TrainConfig, Trainer


def train_config(config: SearchConfig) -> TrainConfig:
    """The trainer settings of a search."""
    return TrainConfig(max_epochs=config.max_epochs, batch_size=config.batch_size, optimizer=config.optimizer,
                       lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                       patience=config.patience, time_limit=config.trial_time_limit, amp=config.amp)


def load_data(config: SearchConfig, run: RunDir | None = None) -> ImageDataset | None:
    """The dataset of a search: the copy kept in its run directory, or by name / .npz path; None for a search
    on a synthetic objective, which reads no data."""
    if config.objective is not None:
        return None
    if run is not None and run.data_copy is not None:
        return load_npz(run.data_copy)
    return load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)


def make_trainer(config: SearchConfig, data: ImageDataset) -> Trainer:
    """A Trainer on the search's training split minus its seeded validation split (module-level: picklable,
    so a worker process builds the same trainer as the driver)."""
    load_plugins(config.plugins)  # a worker process imports the user's plugins before anything else
    if config.threads_per_trial:
        torch.set_num_threads(config.threads_per_trial)
    return Trainer.from_dataset(data, train_config(config), val_fraction=config.val_fraction, seed=config.seed,
                                device=config.device)


def write_run_data(run: RunDir, config: SearchConfig, data: ImageDataset, copy: bool) -> None:
    """Record in a new run what its models need later: the normalisation of the search's training split (what
    its trainers use, what exports apply) and, with ``copy`` (arrays given through the Python API), the data."""
    train, _ = data.split_validation(config.val_fraction, config.seed)  # the trainer's normalisation statistics
    normalizer = Normalizer.fit(train.x)
    run.write_normalization(normalizer.mean.tolist(), normalizer.std.tolist(), data.input_shape, data.class_names)
    if not copy:
        return
    arrays = {"x_train": data.train.x.numpy(), "y_train": data.train.y.numpy(),
              "class_names": np.array(data.class_names), "flip_ok": np.array(data.flip_ok)}
    if data.test is not None:
        arrays.update(x_test=data.test.x.numpy(), y_test=data.test.y.numpy())

    def write(path: Path) -> None:
        with open(path, "wb") as f:  # a file object: savez given a path would append ".npz" to it
            np.savez_compressed(f, **arrays)

    run.save_data_copy(write)


def make_run_objective(config: SearchConfig) -> Objective:
    """The synthetic objective of a search (``config.objective``), seeded with the search's seed."""
    if config.objective is None:
        raise ValueError("this search trains on data; it has no objective")
    load_plugins(config.plugins)  # a user's objective is registered by a plugin
    return make_objective(config.objective, config.seed, **config.objective_options)


def initial_architectures(config: SearchConfig, data: ImageDataset | None) -> list[Graph]:
    """The architectures a search starts from: the objective's ``start()``, else each generator's sized to the
    data (in the order of ``config.generators``)."""
    if config.objective is not None:
        return [make_run_objective(config).start()]
    if data is None:
        raise ValueError("a search that trains needs its dataset")
    return [generate(name, args, data) for name, args in generator_arguments(config).items()]


def generate(name: str, args: dict[str, Any], data: ImageDataset) -> Graph:
    """Generator ``name``'s architecture (no weights) for the data's input shape and classes; ValueError naming
    the generator when it takes no such arguments."""
    try:
        return get_generator(name)(data.input_shape, data.n_classes, **args, seed=None)
    except TypeError as exc:
        raise ValueError(f"generator {name!r}: bad generator arguments {args}: {exc}") from None


_SET_BY_THE_SEARCH = ("input_shape", "n_classes", "seed")  # every generator's, never the user's to give


def generator_arguments(config: SearchConfig) -> dict[str, dict[str, Any]]:
    """Each generator's arguments from ``config.generator_args``.

    An argument is addressed to one generator as ``resnet.width = 8`` or in a sub-table ``resnet = {width = 8}``.
    A plain ``filters = 8`` goes to the one generator there is, or, with several, to every generator that takes
    a ``filters`` argument, and is an error if none does (a typo must not vanish).
    """
    names = config.generators
    for name in names:
        get_generator(name)  # unknown names fail first, with the list of valid ones
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in config.generator_args.items():
        head, dot, tail = key.partition(".")
        if isinstance(value, dict) and not dot:
            if key not in out:
                raise ValueError(f"generator_args has a table for {key!r}, which is not among the generators "
                                 f"{names}")
            out[key].update(value)
        elif dot:
            if head not in out:
                raise ValueError(f"generator argument {key!r} is addressed to {head!r}, which is not among the "
                                 f"generators {names}")
            if not tail:
                raise ValueError(f"generator argument {key!r} names no argument after {head + '.'!r}")
            out[head][tail] = value
        elif len(names) == 1:
            out[names[0]][key] = value  # the generator itself says if it takes no such argument
        else:
            takers = [n for n in names if key not in _SET_BY_THE_SEARCH
                      and key in inspect.signature(get_generator(n)).parameters]
            if not takers:
                raise ValueError(f"generator argument {key!r} is taken by none of the generators {names}; address "
                                 f"it to one as NAME.{key} (e.g. {names[-1]}.{key}), or check its spelling")
            for name in takers:
                out[name][key] = value
    return out


def build_strategy(config: SearchConfig, initial: list[Graph]) -> Strategy:
    """The configured strategy with the options its factory accepts.

    ``kernel`` and ``acquisition`` are passed only when the user set them; set for a strategy that takes no
    such option, they are an error naming it rather than silently dropped.
    """
    factory = STRATEGIES.get(config.strategy)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    chosen = {k: v for k, v in (("kernel", config.kernel), ("acquisition", config.acquisition)) if v is not None}
    unused = sorted(k for k in chosen if k not in params and not takes_any)
    if unused:
        raise ValueError(f"strategy {config.strategy!r} uses no {' or '.join(unused)}, but the configuration sets "
                         f"{', '.join(f'{k} = {chosen[k]!r}' for k in unused)}: remove it or choose a strategy "
                         "that uses it (bayesian, bo-scratch)")
    options: dict[str, Any] = {"limits": Limits(config.max_layers, config.max_params, config.max_width),
                               "noise": config.noise, **chosen, **config.strategy_args}
    if not takes_any:
        unknown = set(config.strategy_args) - set(params)
        if unknown:
            raise ValueError(f"strategy {config.strategy!r} takes no options {sorted(unknown)}; "
                             f"it takes {sorted(set(params) - {'initial', 'seed'})}")
        options = {k: v for k, v in options.items() if k in params}
    return make_strategy(config.strategy, initial, seed=config.seed, **options)


def trial_seeds(seed: int, trial_id: int) -> tuple[int, int]:
    """(weight-init seed, training seed) of a trial: distinct per trial, fixed by the search seed."""
    a, b = np.random.SeedSequence([seed, trial_id]).generate_state(2)
    return int(a), int(b)


def stored_config(run: RunDir) -> SearchConfig:
    """The SearchConfig recorded in a run directory, with its plugins imported (a plugin may be needed to build
    anything the run names); RunDirError when the stored config is unusable or a plugin is missing."""
    stored = {k: v for k, v in run.config.items() if k in SearchConfig.__dataclass_fields__}
    stored.setdefault("fidelity", "single")  # written before multi-fidelity existed: it ran single-fidelity
    stored.setdefault("final_init", "scratch")  # written before final_init existed: its final trained from scratch
    stored.setdefault("amp", LEGACY_AMP)  # written before amp existed: autocast on CUDA only, float32 on a CPU
    stored.setdefault("generator", "cnn")  # every config.json has it; a hand-made one without it started from the CNN
    try:
        config = SearchConfig.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{run.path}: its config.json cannot be used: {exc}") from None
    try:
        load_plugins(config.plugins)
    except ValueError as exc:
        raise RunDirError(f"{run.path}: {exc}") from None
    return config
