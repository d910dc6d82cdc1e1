"""The final step: one architecture trained on train+validation, within a deadline, tested once.

One function, ``train_final``, does the training for all three users of it, so they share one recipe and one
protocol:

- the search's final step (``run_final_step``): the best trial's architecture, in what is left of the job's
  time budget (``engine/budget.py``), or for ``final_epochs`` epochs without one;
- ``morphnas final RUN`` (``final_evaluation``, ``retrain_final``): again, for ``--epochs`` or ``--time-budget``;
- ``morphnas train`` (``train_network``): a hand-designed network (a generator with arguments, or an
  ``architecture.json``) in a run directory with no trials, the baseline a search is compared against.

Decisions:

- **Epochs planned to fit.** With a deadline, the number of epochs is ``floor(time left before the test / one
  epoch's seconds)`` (at most the epochs asked for, else ``budget.FINAL_MAX_EPOCHS``), and the learning-rate
  schedule spans exactly those epochs, so a cosine schedule reaches its end. One epoch's seconds come from the
  search's own measurements of the architecture (scaled to train+validation); with none (``morphnas train``)
  a *probe* times a few optimizer steps of a throwaway copy and one validation pass (at most
  ``PROBE_SHARE`` of the time, ``PROBE_STEPS`` steps). The deadline is still passed to the trainer as a safety
  net: an estimate that was too low costs the last epoch, never the budget.
- **The test once**, on the weights the training ended with (the best epoch on the monitor split, which is part
  of the training data here and so selects nothing that matters); the test split selects nothing.
- **The run's normalisation.** The final network is trained with the statistics in ``normalization.json``
  (those of the search's training split), so the exported model, which applies them, is the network that was
  tested.
- **The final recipe.** ``final_train_config`` gives the search's trial settings (optimizer, learning rate,
  batch size, ``train_config``) with the named final recipe of ``trainer/recipe.py`` on top (label smoothing,
  warm-up, cosine to 0, weight EMA, the dataset's cutout): measured with ``benchmarks/bench_recipe.py`` on a
  10,000-image Fashion-MNIST subset (8 epochs of the ResNet, one seed), 89.96 % test against 88.83 % for the
  trial settings (docs/benchmarks.md). ``train_final(recipe=)`` takes any ``TrainConfig``. Its ``patience`` and
  ``time_limit`` are dropped and ``max_epochs`` is planned; a warm-up as long as the planned epochs is halved to
  fit them. Epoch costs (the search's, or the probe's) are of eager training: the probe does not compile, so a
  recipe with ``compile`` plans without the compile's one-off cost or its gain, the deadline still bounding the
  training.
- **Where it starts** (``final_init``): ``"inherit"`` (the default) continues from the best trial's own trained
  weights, which carry its whole lineage's training through every function-preserving morphism, so the final
  epochs add to that training instead of repeating it; ``"scratch"`` re-initialises them (seeded), the classic
  retrain. Measured with ``benchmarks/bench_final_init.py`` on the hour-long search's best trial (docs/benchmarks.md).
  The recipe is the same for both (its warm-up and cosine restart the learning rate, as in SGDR). A run written
  before the setting existed keeps ``"scratch"``; ``morphnas train`` has no searched weights and always starts
  from scratch.
- **Done once.** ``run_final_step`` is skipped when ``final.json`` (or, with no test split, the job state)
  already holds the final of the current best trial: a resumed run neither loses nor repeats its final step.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from morphnas.engine.budget import (
    FINAL_MAX_EPOCHS,
    TICK_SECONDS,
    EpochCost,
    JobClock,
    epoch_cost,
    final_allowance,
    plan_epochs,
)
from morphnas.engine.config import FINAL_INITS, SearchConfig
from morphnas.engine.plugins import load_plugins, resolve
from morphnas.engine.setup import (
    generate,
    generator_arguments,
    load_data,
    stored_config,
    train_config,
    trial_seeds,
    write_run_data,
)
from morphnas.graph.graph import Graph, GraphError
from morphnas.storage.rundir import RunDir, RunDirError, TrialRecord
from morphnas.trainer.augment import Normalizer
from morphnas.trainer.datasets import ImageDataset
from morphnas.trainer.recipe import final_recipe_fields
from morphnas.trainer.trainer import (
    EpochRecord,
    EvalResult,
    TrainConfig,
    Trainer,
    TrainResult,
    evaluate,
    select_device,
)

if TYPE_CHECKING:
    from morphnas.engine.loop import Search

FINAL_SEED_KEY = 2**31 - 1  # seeds the final retrain apart from every trial
PROBE_STEPS = 20  # optimizer steps a probe times (fewer when an epoch has fewer)
PROBE_SHARE = 0.05  # the most of the time left a probe may take ...
PROBE_MAX_SECONDS = 30.0  # ... and at most this long

Say = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- helpers
def pick_trial(run: RunDir, trial: int | None) -> TrialRecord:
    """Trial ``trial``, or the best one; RunDirError when it has no trained model."""
    if trial is None:
        best = run.best_trial()
        if best is None:
            raise RunDirError(f"{run.path} has no successfully finished trial yet")
        return best
    record = run.trial(trial)
    if not record.has_metric:
        raise RunDirError(f"trial {trial} did not finish successfully (status {record.status})")
    return record


def per_class_report(result: EvalResult, class_names: list[str]) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, with macro and weighted averages."""
    m = result.confusion_matrix().astype(np.float64)
    tp = np.diag(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(m.sum(0) > 0, tp / m.sum(0), 0.0)
        recall = np.where(m.sum(1) > 0, tp / m.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    support = m.sum(1)
    names = list(class_names) + [str(i) for i in range(len(class_names), len(support))]
    rows = {names[i]: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                       "support": int(support[i])} for i in range(len(support))}
    w = support / max(support.sum(), 1)
    return {"classes": rows,
            "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
            "weighted": {"precision": float((precision * w).sum()), "recall": float((recall * w).sum()),
                         "f1": float((f1 * w).sum())},
            "confusion_matrix": m.astype(np.int64).tolist()}


def _printer(quiet: bool) -> Say:
    return (lambda _text: None) if quiet else (lambda text: print(text, flush=True))


def fit_in_thread(trainer: Trainer, module: torch.nn.Module, tick: Callable[[], None] | None = None,
                  **options: Any) -> TrainResult:
    """``trainer.fit(module, **options)`` in a worker thread, as the thread executor runs trials: the epoch times
    the search measured then hold for the final training (on a busy CPU, torch's threads ran measurably slower
    from the main thread), and a Ctrl-C stops it after the current optimizer step before it propagates.
    ``tick()`` is called from the calling thread every ``TICK_SECONDS`` meanwhile (the job clock's record)."""
    interrupted = threading.Event()
    also = options.pop("stop", None)

    def stop() -> bool:
        return interrupted.is_set() or (also is not None and also())

    results: list[TrainResult] = []
    worker = threading.Thread(target=lambda: results.append(trainer.fit(module, stop=stop, **options)),
                              name="morphnas-final", daemon=True)
    worker.start()
    last = time.time()
    try:
        while worker.is_alive():
            worker.join(0.2)
            if tick is not None and time.time() - last >= TICK_SECONDS:
                last = time.time()
                tick()
    except KeyboardInterrupt:
        interrupted.set()
        worker.join()
        raise
    return results[0]


def measure_epoch(trainer: Trainer, graph: Graph, seed: int, seconds: float, train_images: int,
                  val_images: int, steps: int = PROBE_STEPS) -> EpochCost:
    """The cost of one epoch of ``graph`` on ``trainer``: ``steps`` optimizer steps (or ``seconds``) of a
    throwaway copy, timed, and one validation pass (``Trainer.fit`` validates a stopped partial epoch)."""
    done = [0]

    def count(_epoch: int, _step: int, _steps: int, _batch: int) -> None:
        done[0] += 1

    end = time.time() + seconds
    result = fit_in_thread(trainer, graph.to_module(), seed=seed, on_batch=count,
                           stop=lambda: done[0] >= steps or time.time() >= end)
    if not result.history:
        raise RuntimeError(f"the final training failed (timing its first steps): {result.reason.strip()}")
    cost = epoch_cost([vars(result.history[-1])], train_images, val_images)
    assert cost is not None
    return cost


# ---------------------------------------------------------------------------------------------- the training
def final_train_config(config: SearchConfig) -> TrainConfig:
    """The training settings of the final step, before its epochs are planned: the search's optimizer, learning
    rate and batch size with the dataset's final recipe on top (``trainer/recipe.py``; module doc)."""
    base, recipe = train_config(config), final_recipe_fields(config.dataset)
    if recipe.get("warmup_epochs", 0.0) >= base.max_epochs:  # valid for now; train_final fits it to its epochs
        recipe["warmup_epochs"] = base.max_epochs / 2
    return replace(base, **recipe)


def train_final(run: RunDir, config: SearchConfig, architecture: Graph, data: ImageDataset, *,
                epochs: int | None, deadline: float | None, cost: EpochCost | None = None,
                source: dict[str, Any] | None = None, test: bool = True, say: Say | None = None,
                tick: Callable[[], None] | None = None, trained: Graph | None = None,
                recipe: TrainConfig | None = None, start: Graph | None = None) -> dict[str, Any]:
    """Train ``architecture`` on ``data``'s train+validation, then test it once; the one final training.

    ``epochs`` (≥ 1) trains that many, at most, when they fit before ``deadline`` (absolute ``time.time()``);
    ``epochs=None`` plans as many as fit (needs a deadline). ``cost``: the measured cost of one epoch on
    train+validation, else a probe measures it. ``trained``: the search's trained model of this architecture,
    tested instead (no retraining) when not one epoch fits before the deadline. Writes ``models/final/`` and,
    with ``test``, ``final.json``; returns the report. ``source`` goes into the report (the trial...).
    ``recipe``: the training settings (default ``final_train_config(config)``); its ``patience`` and
    ``time_limit`` are dropped and its ``max_epochs`` replaced by the planned epochs. ``start``: trained weights of
    ``architecture`` to continue from (``final_init = "inherit"``); None: fresh seeded weights.
    """
    started = time.time()
    say = say or _printer(config.quiet)
    if epochs is None and deadline is None:
        raise ValueError("the final training needs a number of epochs or a time budget")
    if epochs is not None and epochs < 1:
        raise ValueError(f"the final training needs at least 1 epoch, got {epochs}")
    if test and data.test is None:
        raise ValueError(f"dataset {config.dataset!r} has no test split: nothing to evaluate on")
    source = dict(source or {})
    init_seed, train_seed = trial_seeds(config.seed, FINAL_SEED_KEY)
    if start is not None and start.canonical_hash() != architecture.canonical_hash():
        raise ValueError("the final training's starting weights are of another architecture")
    graph = start if start is not None else architecture.without_weights().init_weights(init_seed)
    _, monitor = data.split_validation(config.val_fraction, config.seed)  # part of the training data now
    norm = run.normalization()
    base = replace(recipe or final_train_config(config), patience=None, time_limit=None)

    def trainer_for(n_epochs: int, probe: bool = False) -> Trainer:
        warmup = base.warmup_epochs if base.warmup_epochs < n_epochs else n_epochs / 2  # must be < max_epochs
        cfg = replace(base, max_epochs=n_epochs, warmup_epochs=warmup,
                      compile=base.compile and not probe)  # a probe would time the compiling as training
        trainer = Trainer(data.train, monitor, cfg, device=config.device,
                          n_classes=data.n_classes, flip_default=data.flip_ok,
                          crop_padding_default=data.crop_padding)
        trainer.normalizer = Normalizer(torch.tensor(norm["mean"], dtype=torch.float32),
                                        torch.tensor(norm["std"], dtype=torch.float32)).to(trainer.device)
        return trainer

    n_test = len(data.test) if test and data.test is not None else 0
    planned, train_deadline, plan = epochs or 1, None, {}
    if deadline is not None:
        if cost is None:
            seconds = min(PROBE_MAX_SECONDS, max(0.2, PROBE_SHARE * (deadline - time.time())))
            cost = measure_epoch(trainer_for(1, probe=True), graph, train_seed, seconds, len(data.train), len(monitor))
            plan["probed"] = True
        allowance = final_allowance(cost, n_test)
        available = deadline - allowance - time.time()
        plan.update(epoch_seconds=round(cost.epoch, 3), seconds_available=round(available, 1))
        if available < cost.epoch and trained is not None:
            say(f"final: one epoch (about {cost.epoch:.0f} s) does not fit in the {max(available, 0):.0f} s left: "
                f"testing the search's own trained model instead of retraining it")
            return _test_trained(run, config, trained, data, source, plan, test, started, deadline, say)
        if available <= 0:  # the budget was spent before the final began (a resumed run): one epoch past it
            planned = 1
            say(f"final: the time budget is spent ({-available:.0f} s over): training 1 epoch past it so that the "
                "run has a tested model")
        else:
            planned = plan_epochs(available, cost.epoch, epochs or FINAL_MAX_EPOCHS)
            train_deadline = deadline - allowance
            if epochs is not None and planned < epochs:
                say(f"final: {epochs} epochs do not fit in the {available:.0f} s left (about {cost.epoch:.1f} s "
                    f"each): training {planned}")
    trainer = trainer_for(planned)
    module = graph.to_module()
    what = f"trial {source['trial']}" if source.get("trial") is not None else source.get("architecture", "network")
    fit = (f" (about {cost.epoch:.1f} s each, to fit the {plan['seconds_available']:.0f} s left)"
           if train_deadline is not None and cost is not None else "")
    origin = "from its searched weights" if start is not None else "from scratch"
    say(f"final: training {what} {origin} on {len(data.train):,} images for {planned} epoch"
        f"{'s' if planned > 1 else ''}{fit}")

    def on_epoch(rec: EpochRecord, _m: Any) -> None:
        say(f"  final epoch {rec.epoch}/{planned}: train loss {rec.train_loss:.3f} acc {rec.train_accuracy:.1%} "
            f"({rec.seconds:.1f} s)")

    result = fit_in_thread(trainer, module, tick, seed=train_seed, callback=on_epoch, deadline=train_deadline)
    if not result.has_metric:
        raise RuntimeError(f"the final training failed: {result.reason.strip()}")
    if result.stopped_by == "deadline":
        say(f"final: cut at the deadline after {result.epochs_trained:.2f} of {planned} epochs")
    run.save_final_model(graph.with_weights_from(module))
    report: dict[str, Any] = {
        "trial": source.pop("trial", None), **source, "retrained": True,
        "init": "inherit" if start is not None else "scratch", "epochs": planned,
        "epochs_run": result.epochs_run,
        "epochs_trained": round(result.epochs_trained, 4), "stopped_by": result.stopped_by,
        "train_images": len(data.train), "seconds": result.total_seconds, "precision": result.precision,
        "plan": plan,
    }
    if test:
        assert data.test is not None
        _add_test(report, trainer.evaluate(module, data.test), data)
    return _finish(run, report, test, started, deadline)


def _test_trained(run: RunDir, config: SearchConfig, trained: Graph, data: ImageDataset, source: dict[str, Any],
                  plan: dict[str, Any], test: bool, started: float, deadline: float | None,
                  say: Say) -> dict[str, Any]:
    """The final step with no time to retrain: the search's trained model, kept as the final model and tested
    once with the run's normalisation (the one it was trained with)."""
    run.save_final_model(trained)
    n = len(data.train)
    trial = source.pop("trial", None)
    report: dict[str, Any] = {
        "trial": trial, **source, "retrained": False, "epochs": 0, "epochs_run": 0,
        "epochs_trained": 0.0, "stopped_by": "no_time", "train_images": n - max(1, round(n * config.val_fraction)),
        "seconds": 0.0, "plan": plan,
        # the tested model is the trial's: the precision it trained in (None for rows recorded before the key)
        "precision": run.trial(trial).extra.get("precision") if trial is not None else None,
    }
    if test:
        assert data.test is not None
        norm = run.normalization()
        normalizer = Normalizer(torch.tensor(norm["mean"], dtype=torch.float32),
                                torch.tensor(norm["std"], dtype=torch.float32))
        evaluation = evaluate(trained.to_module(), data.test, normalizer, device=select_device(config.device))
        _add_test(report, evaluation, data)
        say(f"final: test accuracy {evaluation.accuracy:.2%} (the search's model, not retrained)")
    return _finish(run, report, test, started, deadline)


def _add_test(report: dict[str, Any], evaluation: EvalResult, data: ImageDataset) -> None:
    """The one test's figures, into the final report."""
    assert data.test is not None
    report.update({"test_images": len(data.test), "test_accuracy": evaluation.accuracy,
                   "test_loss": evaluation.loss, **per_class_report(evaluation, list(data.class_names))})


def _finish(run: RunDir, report: dict[str, Any], test: bool, started: float,
            deadline: float | None) -> dict[str, Any]:
    """Time the final step, say how far from the deadline it ended, and write final.json when it was tested."""
    report["total_seconds"] = time.time() - started
    if deadline is not None:
        report["seconds_before_deadline"] = deadline - time.time()
    if test:
        run.write_final_report(report)
    return report


# ---------------------------------------------------------------------------------------------- its users
def _architecture(run: RunDir, config: SearchConfig, data: ImageDataset,
                  trial: int | None) -> tuple[Graph, dict[str, Any], EpochCost | None]:
    """What ``morphnas final`` trains: a trial's architecture (the best by default) with its measured epoch cost,
    or, in a ``morphnas train`` run, the run's network."""
    if config.mode == "train":
        if trial is not None:
            raise RunDirError(f"{run.path} is a `morphnas train` run: it has no trial {trial}")
        graph, name = network(config, data)
        return graph, {"architecture": name}, None
    record = pick_trial(run, trial)
    n = len(data.train)
    n_val = max(1, round(n * config.val_fraction))
    cost = epoch_cost(record.history, n - n_val, n_val)
    return (Graph.from_dict(record.extra["architecture"]), {"trial": record.id, "search_val_accuracy": record.metric},
            None if cost is None else cost.scaled(n))


def final_evaluation(path: str | Path, epochs: int | None = None, trial: int | None = None, quiet: bool = False,
                     time_budget: float | None = None, init: str | None = None) -> dict[str, Any]:
    """Retrain the best (or given) architecture on train+validation, then test it once.

    ``epochs``, or as many as fit in ``time_budget`` seconds (at most ``epochs`` when both are given), starting
    from the trial's searched weights or from scratch (``init``; default the run's ``final_init``). The only
    use of the test split: it selects nothing, it is evaluated once on the weights the training ended with.
    Writes ``final.json`` and ``models/final/``; returns the report.
    """
    return _final(path, epochs, trial, quiet, time_budget, test=True, init=init)


def retrain_final(path: str | Path, epochs: int | None = None, trial: int | None = None, quiet: bool = False,
                  time_budget: float | None = None, init: str | None = None) -> dict[str, Any]:
    """Retrain the best (or given) architecture on train+validation into ``models/final/``, with no test (a
    dataset without a test split)."""
    return _final(path, epochs, trial, quiet, time_budget, test=False, init=init)


def _final(path: str | Path, epochs: int | None, trial: int | None, quiet: bool, time_budget: float | None,
           test: bool, init: str | None = None) -> dict[str, Any]:
    started = time.time()
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"the time budget must be a positive number of seconds, got {time_budget!r}")
    if init is not None and init not in FINAL_INITS:
        raise ValueError(f"init must be one of {', '.join(FINAL_INITS)}, got {init!r}")
    run = RunDir.open(path)
    try:
        config = stored_config(run)
        data = load_data(config, run)
        assert data is not None, "a run on a synthetic objective has no data to train on"
        graph, source, cost = _architecture(run, config, data, trial)
        if config.mode == "train" and init == "inherit":
            raise ValueError(f"{run.path} is a `morphnas train` run: it has no searched weights to start from "
                             "(use init 'scratch')")
        inherit = (init or config.final_init) == "inherit" and source.get("trial") is not None
        start = None
        if inherit:
            try:
                start = run.load_model(source["trial"])
            except RunDirError as exc:
                raise RunDirError(f"{exc} (`morphnas final --init scratch` retrains without its weights)") from None
        deadline = None if time_budget is None else started + time_budget
        report = train_final(run, config, graph, data, epochs=epochs if epochs else None, deadline=deadline,
                             cost=cost, source=source, test=test, say=_printer(quiet), start=start)
        if source.get("trial") is not None:
            run.update_job_state(final_trial=source["trial"])
        return report
    finally:
        run.close()


def final_done(run: RunDir, trial: int) -> bool:
    """Whether the final training of ``trial`` is done: ``final.json`` names it, or (no test split) the job
    state does and the final model exists."""
    report = run.final_report()
    if report is not None:
        return report.get("trial") == trial
    return run.job_state().get("final_trial") == trial and run.has_final_model()


def run_final_step(search: Search) -> dict[str, Any] | None:
    """The search's final step, in what is left of its time budget: the best trial's architecture retrained on
    train+validation and tested once; None when the configuration asks for none or nothing can be trained."""
    config, run, say = search.config, search.run_dir, search.progress.say
    if not config.wants_final or search.data is None:
        return None
    best = search.best()
    if best is None:
        say("no trial finished successfully: there is no final training to do")
        return None
    if final_done(run, best.id):
        say(f"the final training of trial {best.id} is done already ({run.path / 'final.json'})")
        return run.final_report()
    test = search.data.test is not None
    if not test:
        say("the dataset has no test split: the final model is trained, not tested")
    trained = run.load_model(best.id)
    report = train_final(run, config, Graph.from_dict(best.extra["architecture"]), search.data,
                         epochs=config.final_epochs or None, deadline=search.clock.end(),
                         cost=search.final_epoch_cost(best), test=test, say=say,
                         source={"trial": best.id, "search_val_accuracy": best.metric},
                         tick=lambda: search.tick(force=True), trained=trained,
                         start=trained if config.final_init == "inherit" else None)
    run.update_job_state(final_trial=best.id, elapsed=search.elapsed())
    return report


# ---------------------------------------------------------------------------------------------- morphnas train
def network(config: SearchConfig, data: ImageDataset) -> tuple[Graph, str]:
    """The network of a ``morphnas train`` job, checked against the data, and a name for it: the configured
    architecture (JSON), else the generator's with its arguments."""
    if config.architecture is not None:
        try:
            graph = Graph.from_dict(config.architecture)
        except GraphError as exc:
            raise ValueError(f"the architecture cannot be used: {exc}") from None
        name = str(config.architecture.get("name") or "the given architecture")
    else:
        [(generator, args)] = generator_arguments(config).items()  # one: the config refuses several in train mode
        graph = generate(generator, args, data)
        name = f"{generator}({', '.join(f'{k}={v}' for k, v in args.items())})"
    if tuple(graph.input_shape) != tuple(data.input_shape):
        raise ValueError(f"the network takes inputs of shape {tuple(graph.input_shape)}, but {config.dataset!r} "
                         f"images are {tuple(data.input_shape)}")
    if tuple(graph.output_shape) != (data.n_classes,):
        raise ValueError(f"the network has {math.prod(graph.output_shape)} outputs, but {config.dataset!r} has "
                         f"{data.n_classes} classes")
    return graph.without_weights(), name


def default_train_out(config: SearchConfig) -> Path:
    """``runs/<dataset>-train-<generator or 'architecture'>-s<seed>-<date-time>`` for ``morphnas train``."""
    name = Path(config.dataset).stem if config.dataset.endswith(".npz") else config.dataset
    what = "architecture" if config.architecture is not None else config.generator
    return Path("runs") / f"{name}-train-{what}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_network(config: SearchConfig, data: ImageDataset | None = None) -> tuple[Path, dict[str, Any]]:
    """``morphnas train``: train one network on train+validation for ``final_epochs`` or within ``time_budget``
    (the search's final recipe and protocol), test it once, in a new run directory; (its path, the report)."""
    clock = JobClock(config.time_budget)
    if config.mode != "train" or config.final_init != "scratch":  # no searched weights: always from scratch
        config = replace(config, mode="train", final_init="scratch")
    config = replace(config, plugins=resolve(config.plugins))
    load_plugins(config.plugins)
    given = data is not None
    data = data if data is not None else load_data(config)
    assert data is not None
    graph, name = network(config, data)  # checked before anything is written
    out = Path(config.out) if config.out else default_train_out(config)
    config = replace(config, out=str(out))
    run = RunDir.create(out, config.to_dict())
    try:
        write_run_data(run, config, data, copy=given)
        run.update_job_state(elapsed=clock.elapsed())
        report = train_final(run, config, graph, data, epochs=config.final_epochs or None, deadline=clock.end(),
                             source={"architecture": name}, test=data.test is not None,
                             tick=lambda: run.update_job_state(elapsed=clock.elapsed()))
        run.update_job_state(elapsed=clock.elapsed())
        return out, report
    finally:
        run.close()
