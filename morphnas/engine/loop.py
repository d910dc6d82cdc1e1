"""The search loop: a strategy proposes, N workers train, the run directory remembers, TensorBoard shows.

Every event (a suggestion, an observation) is one SQLite transaction together with the strategy's full state,
so ``resume`` restarts from the last event, re-runs the trials that were suggested but not finished (same
seeds, same parent weights) and goes on. Two modes:

- **asynchronous** (default): whenever a worker is free the strategy suggests (pending trials enter the GP as
  fantasies), and the driver holds one more suggestion ready; results are observed as they arrive, in the
  order of arrival, which is the record. With one worker this is the classic order: trial k+1 is chosen
  while trial k trains, then k is observed — the same trial table for the same seed, whatever the timing.
  With several workers the order of arrival depends on worker speed, so two runs may differ.
- **synchronous** (``sync``): batches of N are suggested together and observed in suggestion order; a result
  that arrives early is stored (model and outcome) until its turn, so nothing re-runs on resume. The trial
  table then depends only on the seed and the worker settings, never on timing.

A worker lost mid-trial (killed, out of memory, node gone) does not stop the others: its trial is retried
once on another worker; lost twice, it is recorded as failed and treated as too big (the strategy's size cap
drops below it). An exception or a NaN loss is the architecture's fault: failed, not retried.

**Time.** With a ``time_budget`` the search ends where the final step's share begins (``engine/budget.py``):
every trial gets that moment as its deadline and is cut there (status ``cut``, its best epoch kept and observed
like any other), and no trial starts when not even one epoch would fit. The job's seconds are counted over
sessions (``RunDir.job_state``), so ``resume`` continues the same budget.

**Ctrl-C.** While ``run`` is in progress (in the main thread) the first SIGINT makes the search stop: it says so
at once, suggests nothing more, and waits for the running trials, whose results are kept. A second SIGINT cuts
them now: they stay ``pending`` (nothing of them is recorded) and ``resume`` runs them again. Either way
``run`` then raises ``SearchInterrupted`` (a ``KeyboardInterrupt``), and the final step does not run in this
session. Worker processes ignore SIGINT (a terminal sends it to the whole process group): the driver decides.
A third SIGINT raises ``KeyboardInterrupt`` at once.

**Multi-fidelity** (``fidelity = "asha"``, ``engine/fidelity.py``): whenever a worker is free, the loop first
makes the promotion ``next_promotion`` finds in the recorded trials (the same model trained further, a new trial
row continuing its source), and only then takes the held suggestion or asks the strategy. New architectures
train the first rung's epochs. Resume stays exact because the decision is a pure function of the rows, and
because a trial's row says whether it had been handed to a worker (``extra["submitted"]``): on resume, those
run again first, as they were running, and the held one waits behind the promotion check, as it was waiting.
In sync mode, a batch none of whose trials was submitted was still being filled when the session ended: resume
fills it up first (promotions, then suggestions), as the session would have.

A search on a synthetic objective (``config.objective``) runs the same loop with no data and no weights: its
trials are scored in the driver (``executors.ObjectivePool``) and return no model, so ``Search.has_models`` is
False and the loop neither sends parent weights nor stores models (inheritance is then only nominal: the
strategy's choices are recorded as usual, the objective scores the architecture).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from morphnas.engine.budget import (
    TICK_SECONDS,
    EpochCost,
    JobClock,
    cost_cap_macs,
    epoch_cost,
    final_epoch_limit,
    final_reserve,
    median_epoch_seconds,
)
from morphnas.engine.config import SearchConfig
from morphnas.engine.executors import make_pool
from morphnas.engine.fidelity import Rungs, next_promotion
from morphnas.engine.plugins import load_plugins, resolve
from morphnas.engine.pool import WorkerLost, WorkerPool
from morphnas.engine.progress import Progress
from morphnas.engine.setup import (
    build_strategy,
    initial_architectures,
    load_data,
    stored_config,
    trial_seeds,
    write_run_data,
)
from morphnas.engine.trial import TrialOutcome, TrialSpec
from morphnas.graph.graph import Graph, GraphError
from morphnas.graph.morphisms import Limits, Op
from morphnas.searcher.strategies import Observation, StrategyExhausted
from morphnas.status import TrialStatus
from morphnas.storage.rundir import RunDir, RunDirError, TrialRecord, best_trial
from morphnas.storage.tensorboard import SearchLogger, TrialLogger
from morphnas.trainer.datasets import ImageDataset

log = logging.getLogger(__name__)

WAIT_POLL = 0.2  # seconds between two looks at the Ctrl-C flags while trials run


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the search in ``run`` (a directory ``morphnas resume`` continues); ``cut`` lists the trials
    that were cut and left pending."""

    def __init__(self, run: Path, cut: list[int] | None = None) -> None:
        super().__init__(str(run))
        self.run, self.cut = Path(run), list(cut or [])


class Search:
    """A search bound to its run directory; ``run()`` continues it until a budget is spent."""

    def __init__(self, config: SearchConfig, run: RunDir, data: ImageDataset | None = None,
                 progress: Progress | None = None, started: float | None = None) -> None:
        self.config = config
        self.run_dir = run
        self.progress = progress or Progress(config.quiet)
        self.data = data if data is not None else load_data(config, run)  # None on a synthetic objective
        self.has_models = config.objective is None  # whether trials produce trained weights to store and inherit
        self.initial = initial_architectures(config, self.data)
        self.strategy = build_strategy(config, self.initial)
        state = run.latest_state()
        if state is not None:
            self.strategy.load_state_dict(state)
        self.trials = {t.id: t for t in run.trials()}
        self.elapsed_before = max(max((t.extra.get("elapsed", 0.0) for t in self.trials.values()), default=0.0),
                                  float(run.job_state().get("elapsed", 0.0)))
        # the job's clock starts when the search was asked for (``started``: data loading included)
        self.clock = JobClock(config.time_budget, self.elapsed_before, started or time.time())
        self.session_start = self.clock.session_start
        self._last_tick = time.time()
        self._interrupts, self._stopping, self._cut = 0, False, False
        self._running: dict[int, tuple[TrialRecord, Future[TrialOutcome]]] = {}
        self.logger = SearchLogger(run.tb_dir)
        best = self.best()  # a kill between a trial's row and best.json leaves the pointer behind: mend it
        if best is not None and (run.best() or {}).get("trial") != best.id:
            run.set_best(best)
        self._pool: WorkerPool | None = None
        self.exhausted = ""  # why the strategy can propose nothing more (StrategyExhausted), once it says so
        self.rungs = Rungs.from_config(config)  # None: single fidelity

    # ------------------------------------------------------------------ budget
    def elapsed(self) -> float:
        """Seconds of the job so far, over all sessions of this run."""
        return self.clock.elapsed()

    def _trials_left(self, next_id: int) -> bool:
        return self.config.max_trials is None or next_id < self.config.max_trials

    def split_sizes(self) -> tuple[int, int, int]:
        """Images in the trials' training split, the validation split and the test split (0s without data)."""
        if self.data is None:
            return 0, 0, 0
        n = len(self.data.train)
        n_val = max(1, round(n * self.config.val_fraction))
        return n - n_val, n_val, 0 if self.data.test is None else len(self.data.test)

    def final_epoch_cost(self, record: TrialRecord | None = None) -> EpochCost | None:
        """The estimated cost of one final epoch (train+validation) of ``record``'s architecture (default: the
        best trial), from its measured epochs; None before it has any."""
        record = self._measured(record if record is not None else self.best())
        n_train, n_val, _ = self.split_sizes()
        cost = None if record is None or not n_train else epoch_cost(record.history, n_train, n_val)
        return None if cost is None else cost.scaled(n_train + n_val)

    def _measured(self, record: TrialRecord | None) -> TrialRecord | None:
        """``record``, or for a promotion cut before an epoch the nearest source whose epochs were measured."""
        while record is not None and not record.history and record.continues in self.trials:
            record = self.trials[record.continues]
        return record

    def final_reserve(self) -> float:
        """Seconds of the time budget kept for the final step (``budget.final_reserve``); 0 without one."""
        config = self.config
        if config.time_budget is None or not config.wants_final:
            return 0.0
        return final_reserve(config.time_budget, final_time=config.final_time, final_epochs=config.final_epochs,
                             cost=self.final_epoch_cost(), test_images=self.split_sizes()[2])

    def search_end(self) -> float | None:
        """The wall-clock time (``time.time()``) at which the search's share of the budget is spent; None
        without a time budget. Trials are cut there."""
        end = self.clock.end()
        return None if end is None else end - self.final_reserve()

    def _time_left(self) -> bool:
        """Whether a trial may start: the search's share is not spent, and at least one median epoch fits."""
        end = self.search_end()
        if end is None:
            return True
        epoch = median_epoch_seconds(t.history for t in self.trials.values() if t.finished and t.history)
        return end - time.time() > epoch

    def tick(self, force: bool = False) -> None:
        """Record the job's elapsed seconds (every ``TICK_SECONDS``, or now), so a later session continues the
        budget where this one stopped."""
        now = time.time()
        if force or now - self._last_tick >= TICK_SECONDS:
            self._last_tick = now
            self.run_dir.update_job_state(elapsed=self.elapsed())

    def epochs_used(self) -> int:
        """Training epochs of all finished trials (what ``epoch_budget`` counts)."""
        return sum(t.epochs for t in self.trials.values() if t.finished)

    def _epochs_left(self) -> bool:
        # An epoch budget stops new suggestions once the finished trials' epochs reach it; trials already
        # suggested (in flight, or the one held ready) still run, so a run may end up to (workers + 1) trials'
        # epochs past it. Benchmark suites compare cells on the trials within the budget (suite_report).
        return self.config.epoch_budget is None or self.epochs_used() < self.config.epoch_budget

    # ------------------------------------------------------------------ workers
    @property
    def pool(self) -> WorkerPool:
        """The workers (started on first use): the configured executor with ``config.workers`` workers."""
        if self._pool is None:
            self._pool = make_pool(self.config, self.data, self.progress)
        return self._pool

    # ------------------------------------------------------------------ events
    def _budget_left(self, trial_id: int) -> bool:
        return self._trials_left(trial_id) and self._time_left() and self._epochs_left()

    def _fidelity(self, rung: int) -> float | None:
        """The epochs a trial of ``rung`` stands for (None on a single-fidelity objective: it trains nothing)."""
        if self.rungs is not None:
            return float(self.rungs.epochs[rung])
        return None if self.config.objective is not None else float(self.config.max_epochs)

    def _promote(self, trial_id: int) -> TrialRecord | None:
        """Record trial ``trial_id`` as the promotion to make now (``fidelity.next_promotion``), or None. In async
        mode its row is marked submitted at once (it is made only when a worker is free, and handed to it next);
        in sync mode at submission, like the rest of its batch."""
        if self.rungs is None or not self._budget_left(trial_id):
            return None
        found = next_promotion(self.trials.values(), self.rungs)
        if found is None:
            return None
        source, rung = found
        epochs = self.rungs.epochs[rung]
        record = TrialRecord(id=trial_id, parent=source.id, ops=[], inherit=True, strategy=self.config.strategy,
                             suggested_at=time.time(),
                             description=f"trial {source.id} promoted to rung {rung} ({epochs} epochs)",
                             n_params=source.n_params, n_layers=source.n_layers, depth=source.depth,
                             width=source.width, skips=source.skips, arch_hash=source.arch_hash,
                             extra={"architecture": source.extra["architecture"],
                                    "info": {"reason": "promotion", "continues": source.id, "rung": rung,
                                             "source_metric": source.metric},
                                    **({} if self.config.sync else {"submitted": True})},
                             rung=rung, fidelity=self._fidelity(rung), continues=source.id)
        self.run_dir.put_trial(record)
        self.trials[trial_id] = record
        return record

    def cost_cap(self) -> int | None:
        """The most multiply-accumulates per image the next proposal may have (``budget.cost_cap_macs``: what the
        time left can pay for); None without a time budget, without data, or before an epoch was measured."""
        config = self.config
        end = self.search_end()
        if end is None or config.time_budget is None or self.data is None:
            return None
        measured = [(int(t.extra["macs"]), float(t.seconds_per_epoch)) for t in self.trials.values()
                    if t.finished and t.seconds_per_epoch and t.extra.get("macs")]
        n_train, n_val, _ = self.split_sizes()
        final = final_epoch_limit(config.time_budget, final_time=config.final_time if config.wants_final else 0,
                                  final_epochs=config.final_epochs, train_images=n_train, val_images=n_val)
        best = self._measured(self.best())
        best_cost = (int(best.extra["macs"]), float(best.seconds_per_epoch)) \
            if best is not None and best.seconds_per_epoch and best.extra.get("macs") else None
        return cost_cap_macs(measured, search_seconds_left=end - time.time(), workers=config.workers,
                             trial_epochs=config.max_epochs, final_epoch_seconds=final, best=best_cost)

    def _suggest(self, trial_id: int) -> TrialRecord | None:
        if not self._budget_left(trial_id):
            return None
        cap = self.cost_cap()
        if cap is not None:
            self.strategy.limits = replace(self.strategy.limits or Limits(), max_macs=cap)
        try:
            s = self.strategy.suggest(trial_id)
        except StrategyExhausted as exc:
            self.exhausted = str(exc)
            if cap is not None and self.best() is not None:  # the cap only shrinks as the search's time runs out
                left = max(0.0, (self.search_end() or time.time()) - time.time())
                self.exhausted = (f"the {self.config.strategy} strategy has no proposal under the cost cap of "
                                  f"{cap / 1e6:.3g} M multiply-accumulates per image (what the {left:.0f} s of "
                                  "search left can pay for) and no trial is pending; that time goes to the final "
                                  "training")
            return None
        self.exhausted = ""
        if s is None:
            return None
        ops = [op.to_dict() for op in s.ops]
        describe = ", ".join(Op.from_dict(o).describe() for o in ops) or s.info.get("reason", "initial")
        if s.parent is not None:
            describe += f" on trial {s.parent}" + ("" if s.inherit_weights else " (from scratch)")
        record = TrialRecord(id=trial_id, parent=s.parent, ops=ops, inherit=s.inherit_weights,
                             strategy=self.config.strategy, suggested_at=time.time(), description=describe,
                             n_params=s.architecture.n_params(), n_layers=s.architecture.n_layers(),
                             depth=s.architecture.depth(), width=s.architecture.max_width(),
                             skips=s.architecture.n_skips(), arch_hash=s.architecture.canonical_hash(),
                             extra={"architecture": s.architecture.to_dict(),
                                    "info": s.info if cap is None else {**s.info, "cost_cap_macs": cap}},
                             rung=0, fidelity=self._fidelity(0))
        self.run_dir.put_trial(record, self.strategy.state_dict())
        self.trials[trial_id] = record
        return record

    def _spec(self, record: TrialRecord) -> TrialSpec:
        init_seed, train_seed = trial_seeds(self.config.seed, record.id)
        limits = self.strategy.limits
        inherit = record.parent is not None and record.inherit
        parent_model = (self.run_dir.model_bytes(record.parent)
                        if inherit and record.parent is not None and self.has_models else None)
        return TrialSpec(record.id, record.parent, tuple(record.ops), record.extra["architecture"], record.inherit,
                         init_seed, train_seed, parent_model, {} if limits is None else _replay_limits(limits),
                         record.description, deadline=self.search_end(),
                         epochs=None if self.rungs is None else self.rungs.train_epochs(record.rung),
                         continues=record.continues, rung=record.rung)

    def _store_model(self, record: TrialRecord, outcome: TrialOutcome) -> TrialOutcome:
        """Write a successful trial's model into the run (the driver's job, not the trial's); an outcome whose
        model cannot be stored becomes a failure."""
        ok = outcome.status.has_metric and outcome.metric is not None and math.isfinite(outcome.metric)
        if not self.has_models:  # a synthetic objective's trial: a metric and no weights, nothing to store
            return outcome
        if not ok or (outcome.model is None and self.run_dir.model_dir(record.id).is_dir()):
            return outcome
        try:
            if outcome.model is None:
                raise GraphError("the trial reported a metric but returned no model")
            self.run_dir.save_model_bytes(record.id, outcome.model)
        except GraphError as exc:
            return replace(outcome, status=TrialStatus.FAILED, reason=f"its trained model could not be stored: {exc}")
        return replace(outcome, model=None)

    def _observe(self, record: TrialRecord, outcome: TrialOutcome) -> None:
        outcome = self._store_model(record, outcome)
        ok = outcome.status.has_metric and outcome.metric is not None and math.isfinite(outcome.metric)
        reason = outcome.reason
        record.status = outcome.status if ok else TrialStatus.FAILED
        record.reason = "" if ok else reason
        record.metric, record.loss, record.best_epoch = outcome.metric, outcome.loss, outcome.best_epoch
        record.epochs, record.history = outcome.epochs, outcome.history
        record.train_seconds = outcome.train_seconds
        record.finished_at = time.time()
        record.started_at = outcome.started_at or record.finished_at - outcome.seconds
        record.extra = {k: v for k, v in record.extra.items() if k != "outcome"}  # held result (sync): now observed
        record.extra = {**record.extra, **outcome.extra, "elapsed": self.elapsed(),
                        "initial_metric": outcome.initial_metric, "stopped_by": outcome.stopped_by,
                        "seconds": outcome.seconds, "worker": outcome.worker}
        if reason.startswith(("oom", "lost")) and outcome.n_params:
            limits = self.strategy.limits or Limits()
            cap = min(limits.max_params, outcome.n_params - 1)
            self.strategy.limits = replace(limits, max_params=cap)
            self.progress.say(f"trial {record.id} ran out of memory or lost its worker twice: children are capped "
                              f"at {cap:,} parameters")
        architecture = Graph.from_dict(record.extra["architecture"])
        self.strategy.observe(Observation(record.id, architecture, record.metric if ok else None,
                                          record.status, record.rung, record.fidelity, record.continues))
        self.run_dir.put_trial(record, self.strategy.state_dict())
        self.tick(force=self.config.time_budget is not None)
        best = self.best()
        if best is not None and best.id == record.id:
            self.run_dir.set_best(record)
        self._log_curves(record)
        self.logger.trial(record.id, self._hparams(record, architecture), record.metric,
                          None if best is None else best.metric, record.extra["elapsed"], architecture.summary(),
                          image=self._picture(record))
        self.progress.trial_done(record.id, sum(t.finished for t in self.trials.values()),
                                 None if best is None else (best.id, best.metric))
        start = outcome.initial_metric
        status = f"val {record.metric:.2%}" if ok else f"FAILED ({(record.reason or '').strip().splitlines()[-1:]})"
        if record.status == TrialStatus.CUT:
            status += (f" (cut at the deadline: best epoch {record.best_epoch}, "
                       f"{float(record.extra.get('epochs_trained', record.epochs)):.2f} epochs trained)")
        started = "continued from" if record.continues is not None else "inherited start"
        self.progress.say(f"trial {record.id} {record.status}: {status}"
                          + (f" (rung {record.rung})" if self.rungs is not None else "")
                          + (f" ({started} {start:.2%})" if start is not None else "")
                          + (f"; best {best.metric:.2%} (trial {best.id})" if best else "")
                          + f"; {outcome.seconds:.1f} s")

    def _log_curves(self, record: TrialRecord) -> None:
        """The trial's epoch curves, written by the driver from the history its outcome carried."""
        logger = TrialLogger(self.run_dir.tb_dir, record.id)
        try:
            for h in record.history:
                logger.epoch(int(h["epoch"]), h["train_loss"], h["train_accuracy"], h["val_loss"], h["val_accuracy"])
        finally:
            logger.close()

    def _picture(self, record: TrialRecord) -> Any:
        """The trial's architecture drawn for TensorBoard, new layers since its parent marked; None if drawing
        fails (a picture never stops a search)."""
        try:
            from morphnas.storage.draw import figure_pixels, trial_figure

            parent = self.trials.get(record.parent) if record.parent is not None else None
            return figure_pixels(trial_figure(record, parent))
        except Exception:
            log.warning("could not draw the architecture of trial %s", record.id, exc_info=True)
            return None

    def _hparams(self, record: TrialRecord, architecture: Graph) -> dict[str, Any]:
        ops = [Op.from_dict(o) for o in record.ops]
        return {"strategy": record.strategy, "parent": -1 if record.parent is None else record.parent,
                "op": ",".join(op.name for op in ops) or "initial", "depth": architecture.depth(),
                "width": architecture.max_width(), "parameters": architecture.n_params(),
                "skips": architecture.n_skips(), "layers": architecture.n_layers(), "status": str(record.status),
                "worker": str(record.extra.get("worker", "")), "rung": record.rung,
                "fidelity": -1.0 if record.fidelity is None else float(record.fidelity),
                "continues": -1 if record.continues is None else record.continues}

    def best(self) -> TrialRecord | None:
        """The best finished trial so far (``storage.rundir.best_trial``)."""
        return best_trial(self.trials.values())

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrialRecord | None:
        """Train trials until the trial, epoch or time budget is spent (or the strategy is exhausted); returns the
        best. Ctrl-C (in the main thread) stops it: ``SearchInterrupted`` (see the module docstring)."""
        unfinished = [t for t in sorted(self.trials.values(), key=lambda t: t.id) if not t.finished]
        if unfinished and self._time_left():
            self.progress.say(f"resuming: re-running unfinished trial(s) {[t.id for t in unfinished]}")
        self._next_id = max(self.trials, default=-1) + 1
        self._running = {}
        self._interrupts, self._stopping, self._cut = 0, False, False
        best = self.best()
        self.progress.start_search(self.config.max_trials, self.config.time_budget, self.config.max_epochs,
                                   sum(t.finished for t in self.trials.values()), self.elapsed,
                                   None if best is None else (best.id, best.metric))
        restore = self._catch_sigint()
        try:
            if self.config.sync:
                self._run_sync(unfinished)
            else:
                self._run_async(unfinished)
        except BaseException:
            self.close(wait=False)
            raise
        finally:
            restore()
        cut = sorted(self._running) if self._cut else []
        self.close(wait=not self._cut)
        self.tick(force=True)
        if self._stopping:
            raise SearchInterrupted(self.run_dir.path, cut)
        if self.exhausted:
            self.progress.say(f"search stopped: {self.exhausted}")
        return self.best()

    # ------------------------------------------------------------------ Ctrl-C
    def _catch_sigint(self) -> Callable[[], None]:
        """Install the two-step Ctrl-C handler (main thread only, and not where SIGINT is ignored); returns what
        restores the previous handler."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:
            return lambda: None
        signal.signal(signal.SIGINT, self._on_sigint)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: stop after the running trials; second: cut them now (left pending); third: raise."""
        self._interrupts += 1
        running = sorted(self._running)
        names = f"trial{'s' if len(running) > 1 else ''} {', '.join(map(str, running))}"
        resume = f"`morphnas resume {self.run_dir.path}`"
        if self._interrupts == 1:
            self._stopping = True
            if running:
                text = (f"stopping: waiting for {names} to finish (kept in the run); press Ctrl-C again to cut "
                        f"{'them' if len(running) > 1 else 'it'} now (then {resume} runs "
                        f"{'them' if len(running) > 1 else 'it'} again)")
            else:
                text = "stopping: no trial is running"
            if self.config.wants_final:
                text += f"; the final training is left for {resume}"
        elif self._interrupts == 2:
            self._cut = True
            if self._pool is not None:
                self._pool.cut()
            text = (f"cutting {names} now: left pending, {resume} runs {'them' if len(running) > 1 else 'it'} again"
                    if running else "stopping now")
        else:
            raise KeyboardInterrupt
        # printed by another thread: the main thread may be inside a print, and a stream is not reentrant
        threading.Thread(target=self._announce, args=(text,), name="morphnas-sigint", daemon=True).start()

    def _announce(self, text: str) -> None:
        if self.progress.quiet:
            print(text, file=sys.stderr, flush=True)
        else:
            self.progress.say(text)

    def _wait(self, futures: list[Future[TrialOutcome]]) -> set[Future[TrialOutcome]]:
        """Wait for a trial to finish, looking at the Ctrl-C flags and ticking the job clock meanwhile; returns the
        finished futures (none once a second Ctrl-C cut them)."""
        while True:
            done, _ = wait(futures, timeout=WAIT_POLL, return_when=FIRST_COMPLETED)
            self.tick()
            if self._cut:
                return set()
            if done:
                return done

    def _next_suggestion(self) -> TrialRecord | None:
        record = self._suggest(self._next_id)
        if record is not None:
            self._next_id += 1
        return record

    def _next_promotion(self) -> TrialRecord | None:
        record = self._promote(self._next_id)
        if record is not None:
            self._next_id += 1
        return record

    def _run_async(self, unfinished: list[TrialRecord]) -> None:
        """Observe results as they arrive; keep every worker busy and one suggestion ready. A free worker takes,
        in this order: an unfinished trial that was running when the last session ended, a promotion, the held
        suggestion, a new suggestion."""
        n = self.config.workers
        first = deque(t for t in unfinished if t.extra.get("submitted"))
        ready = deque(t for t in unfinished if not t.extra.get("submitted"))
        while True:
            while len(self._running) < n and not self._stopping and self._time_left():
                record = first.popleft() if first else self._next_promotion()
                if record is None:
                    record = ready.popleft() if ready else self._next_suggestion()
                if record is None:
                    break
                self._submit(record)
            if not ready and len(self._running) == n and not self._stopping:  # choose the next while these train
                record = self._next_suggestion()
                if record is not None:
                    ready.append(record)
            if not self._running:
                return
            done = self._wait([f for _, f in self._running.values()])
            if self._cut:
                return
            for trial_id in sorted(tid for tid, (_, f) in self._running.items() if f in done):
                record, future = self._running.pop(trial_id)
                outcome = self._collect(record, future)
                if outcome is not None:
                    self._observe(record, outcome)

    def _fill(self, batch: list[TrialRecord]) -> None:
        """Fill a sync batch up to N trials: promotions first, decided on the trials observed so far, then new
        suggestions; fewer when the strategy must wait or a budget is spent."""
        while len(batch) < self.config.workers:
            record = self._next_promotion() or self._next_suggestion()
            if record is None:
                return
            batch.append(record)

    def _run_sync(self, unfinished: list[TrialRecord]) -> None:
        """Batches of N suggested together, observed in suggestion order; early results wait, stored."""
        batch = unfinished
        if batch and not any(t.extra.get("submitted") or "outcome" in t.extra for t in batch):
            if not self._stopping and self._time_left():
                self._fill(batch)  # the last session ended while filling this batch: fill it as it would have
        while True:
            if not batch and not self._stopping and self._time_left():
                self._fill(batch)
            if not batch:
                return
            results: dict[int, TrialOutcome] = {}
            for record in batch:
                stored = record.extra.get("outcome")
                if stored is not None:  # finished before the driver stopped, not yet observed: no re-run
                    results[record.id] = TrialOutcome(**stored)
                elif not self._stopping and self._time_left():
                    self._submit(record)
            for record in batch:
                while record.id not in results and record.id in self._running:
                    done = self._wait([f for _, f in self._running.values()])
                    if self._cut:
                        return
                    for trial_id in sorted(tid for tid, (_, f) in self._running.items() if f in done):
                        early, future = self._running.pop(trial_id)
                        outcome = self._collect(early, future)
                        if outcome is not None:
                            results[trial_id] = self._hold(early, outcome)
                if record.id not in results:  # the budget ran out before it could start
                    return
                self._observe(record, results.pop(record.id))
            batch = []

    def _hold(self, record: TrialRecord, outcome: TrialOutcome) -> TrialOutcome:
        """Store a result that must wait for its turn (sync mode): its model, and its outcome in the trial row."""
        outcome = self._store_model(record, outcome)
        record.extra = {**record.extra, "outcome": {k: v for k, v in asdict(outcome).items() if k != "model"}}
        self.run_dir.put_trial(record)
        return outcome

    def _submit(self, record: TrialRecord) -> None:
        if not record.extra.get("submitted"):  # resume runs a trial that was handed to a worker first
            record.extra = {**record.extra, "submitted": True}
            self.run_dir.put_trial(record)
        if record.id not in self._running:
            n = 0 if self.rungs is None else self.rungs.train_epochs(record.rung)
            epochs = "" if self.rungs is None else f", rung {record.rung}: {n} epoch{'s' if n > 1 else ''}"
            if n:
                self.progress.expect(record.id, n)
            self.progress.say(f"trial {record.id}: {record.description} — {record.n_params:,} parameters{epochs}")
        self._running[record.id] = (record, self.pool.submit(self._spec(record)))

    def _collect(self, record: TrialRecord, future: Future[TrialOutcome]) -> TrialOutcome | None:
        """The outcome of a finished future; None when the trial's worker was lost and the trial was resubmitted,
        or when the trial was stopped by the driver (left pending for resume)."""
        try:
            outcome = future.result()
        except WorkerLost as exc:
            if self._stopping:  # Ctrl-C: a worker lost now is not the trial's fault; resume runs it again
                return None
            lost = int(record.extra.get("lost", 0)) + 1
            record.extra = {**record.extra, "lost": lost}
            if lost < 2:
                self.progress.say(f"trial {record.id}: {exc}; retrying it on another worker")
                record.status = TrialStatus.LOST
                self.run_dir.put_trial(record)
                self._submit(record)
                return None
            return TrialOutcome(record.id, TrialStatus.FAILED, n_params=record.n_params,
                                reason=f"lost: its worker died twice ({exc}); treated as too big")
        except Exception as exc:  # run_trial catches everything; this is a last resort
            return TrialOutcome(record.id, TrialStatus.FAILED, reason=f"{type(exc).__name__}: {exc}")
        return None if outcome.status == TrialStatus.PENDING else outcome

    def close(self, wait: bool = True) -> None:
        """Stop the workers (waiting for running trials unless ``wait`` is False), the progress bars, and flush
        TensorBoard."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None
        self.progress.stop()
        self.logger.close()


def open_search(path: str | Path, overrides: dict[str, Any] | None = None,
                progress: Progress | None = None) -> Search:
    """A Search continuing the run in ``path`` (budgets may be raised with ``overrides``); the run's plugins are
    imported first (a missing one is a RunDirError naming it)."""
    run = RunDir.open(path)
    started = time.time()
    config = stored_config(run)
    if config.mode != "search":
        run.close()
        raise RunDirError(f"{path} holds a `morphnas train` run, not a search: there is nothing to resume "
                          f"(`morphnas final {path}` trains it again)")
    if overrides:
        overrides = dict(overrides)
        if "plugins" in overrides:
            overrides["plugins"] = resolve(overrides["plugins"])
            load_plugins(overrides["plugins"])
        config = SearchConfig.from_dict({**config.to_dict(), **overrides})
        run.write_config({**run.config, **config.to_dict(), "resumed": time.time()})
    return Search(config, run, progress=progress, started=started)


def default_out(config: SearchConfig) -> Path:
    """``runs/<dataset>-<strategy>-s<seed>-<date-time>`` for a search given no --out."""
    name = Path(config.dataset).stem if config.dataset.endswith(".npz") else config.dataset
    name = config.objective or name
    return Path("runs") / f"{name}-{config.strategy}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_search(config: SearchConfig, data: ImageDataset | None = None,
                  progress: Progress | None = None) -> Search:
    """A new search in a new run directory; plugins, data and strategy are checked before anything is written.

    The job's clock (its time budget) starts here, before the data are loaded."""
    started = time.time()
    if config.mode != "search":
        raise ValueError(f"a search needs mode 'search', not {config.mode!r} (`morphnas train` trains one network)")
    config = replace(config, plugins=resolve(config.plugins))  # stored absolute: resume finds them anywhere
    load_plugins(config.plugins)
    given = data is not None
    data = data if data is not None else load_data(config)
    build_strategy(config, initial_architectures(config, data))  # fail early on unknown names / options
    out = Path(config.out) if config.out else default_out(config)
    config = replace(config, out=str(out))
    run = RunDir.create(out, config.to_dict())
    if data is None:  # a synthetic objective: no data, so no normalisation or data copy to keep
        return Search(config, run, progress=progress, started=started)
    write_run_data(run, config, data, copy=given)
    return Search(config, run, data, progress=progress, started=started)


def _replay_limits(limits: Limits) -> dict[str, Any]:
    """The limits a trial replays its ops under: the size limits, not the cost cap (it was checked when the
    suggestion was made, and may have tightened since; the same ops must rebuild the same network)."""
    return {k: v for k, v in vars(limits).items() if k != "max_macs"}
