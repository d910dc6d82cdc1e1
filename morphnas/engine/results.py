"""What a finished (or running) search gives back: reports, models as modules, comparisons.

Everything here reads the run directory (through ``RunDir``, which owns its paths). The final retrain and
test, the one place where the test split is used, lives in ``final.py``; its public names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from morphnas.engine.fidelity import Rungs, rung_summary
from morphnas.engine.final import (
    FINAL_SEED_KEY,
    final_evaluation,
    per_class_report,
    pick_trial,
    retrain_final,
)
from morphnas.engine.setup import stored_config
from morphnas.fileio import atomic_write
from morphnas.status import TrialStatus
from morphnas.storage.rundir import RunDir, TrialRecord, rank_key

__all__ = ["FINAL_SEED_KEY", "Standardize", "busy_seconds", "classifier", "compare", "draw_trial",
           "final_evaluation", "format_compare", "format_report", "per_class_report", "pick_trial",
           "plot_cost", "plot_trajectories", "report", "retrain_final"]

class Standardize(nn.Module):
    """Maps raw images (uint8 or float, pixel units) to what the network was trained on."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def classifier(run: RunDir, trial: int | None = None, final: bool = False) -> nn.Module:
    """The chosen model as one eval-mode module on raw images: normalisation + network (a ``morphnas train``
    run's is its final model)."""
    config = stored_config(run)  # imports the run's plugins (a layer kind, say) before a model is built
    final = final or (config.mode == "train" and trial is None)
    norm = run.normalization()
    graph = run.load_final_model() if final else run.load_model(pick_trial(run, trial).id)
    return nn.Sequential(Standardize(norm["mean"], norm["std"]), graph.to_module()).eval()


# ---------------------------------------------------------------------------------------------- report
def _trajectory(trials: list[TrialRecord]) -> list[dict[str, float]]:
    """The incumbent after each finished trial (``best_trial``'s rule: with several fidelities the highest rung
    wins, so the curve may step down when a longer-trained model takes over) and its rung."""
    best: TrialRecord | None = None
    points = []
    for t in sorted(trials, key=lambda t: t.id):
        if not t.finished:
            continue
        if t.has_metric and (best is None or rank_key(t) > rank_key(best)):
            best = t
        points.append({"trial": t.id, "elapsed": float(t.extra.get("elapsed", 0.0)), "metric": t.metric,
                       "best": None if best is None else best.metric, "rung": t.rung,
                       "best_rung": None if best is None else best.rung})
    return points


def busy_seconds(trials: list[TrialRecord]) -> float:
    """Wall-clock seconds in which at least one worker was running a trial (the union of the trials' intervals,
    so that N trials at once count once)."""
    spans = sorted((t.started_at, t.started_at + float(t.extra.get("seconds", 0.0)))
                   for t in trials if t.finished and t.started_at)
    busy, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            busy += 0.0 if cur_end is None else cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return busy + (0.0 if cur_end is None else cur_end - cur_start)


def _offset(when: float | None, trials: list[TrialRecord]) -> float | None:
    """Seconds from the search's first suggestion to ``when`` (when a trial started, on its worker)."""
    first = min((t.suggested_at for t in trials if t.suggested_at), default=None)
    return None if when is None or first is None else max(0.0, when - first)


def draw_trial(run: RunDir, trial: int, path: Path | None = None) -> Path:
    """Draw trial ``trial``'s architecture (layers new since its parent highlighted) into a PNG: ``path``, else
    ``run.architecture_plot(trial)``."""
    from morphnas.storage.draw import save_trial_architecture

    record = run.trial(trial)
    parent = run.trial(record.parent) if record.parent is not None else None
    return save_trial_architecture(record, parent, path or run.architecture_plot(trial))


def report(path: str | Path, plot: bool = True, trial: int | None = None) -> dict[str, Any]:
    """Leaderboard (with each trial's FLOPs and measured throughput), best trial, trajectory (and
    ``trajectory.png``), overhead, and the final test if any; with ``plot`` also validation accuracy against cost
    (``cost.png``), the best architecture drawn (``best_architecture.png``), and trial ``trial``'s when given."""
    run = RunDir.open(path)
    try:
        config = stored_config(run)  # imports the run's plugins
        trials = run.trials()
        rungs = Rungs.from_config(config) if config.mode == "search" else None
        promoted = {t.continues for t in trials if t.continues is not None and t.finished}
        finished = [t for t in trials if t.finished]
        ok = sorted((t for t in finished if t.has_metric), key=rank_key, reverse=True)  # best first
        elapsed = max((float(t.extra.get("elapsed", 0.0)) for t in finished), default=0.0)
        train = sum(t.train_seconds for t in finished)
        busy = busy_seconds(finished)
        out: dict[str, Any] = {
            "run": str(run.path), "strategy": run.config.get("strategy"), "dataset": run.config.get("dataset"),
            "seed": run.config.get("seed"), "objective": run.config.get("objective"), "trials": len(trials),
            "fidelity": config.fidelity, "rungs": rung_summary(trials, rungs),
            "finished": len(finished), "mode": config.mode, "time_budget": config.time_budget,
            "job_seconds": run.job_state().get("elapsed"),
            "cut": sum(t.status == TrialStatus.CUT for t in finished),
            "failed": sum(t.status == TrialStatus.FAILED for t in finished), "elapsed_seconds": elapsed,
            "training_seconds": train, "busy_seconds": busy,
            "overhead_share": min(1.0, max(0.0, 1 - busy / elapsed)) if elapsed > 0 else None,
            "best": None,
            "leaderboard": [{"trial": t.id, "metric": t.metric, "initial_metric": t.extra.get("initial_metric"),
                             "parent": t.parent, "ops": t.description, "parameters": t.n_params, "depth": t.depth,
                             "width": t.width, "skips": t.skips, "epochs": t.epochs, "status": str(t.status),
                             "epochs_trained": t.extra.get("epochs_trained"), "flops": t.flops,
                             "train_images_per_second": t.train_images_per_second,
                             "seconds_per_epoch": t.seconds_per_epoch,
                             "seconds": t.extra.get("seconds"), "worker": t.extra.get("worker", ""),
                             "started": _offset(t.started_at, trials), "rung": t.rung, "fidelity": t.fidelity,
                             "continues": t.continues, "promoted": t.id in promoted} for t in ok],
            "failures": [{"trial": t.id, "reason": (t.reason or "").strip().splitlines()[-1:]} for t in finished
                         if t.status == TrialStatus.FAILED],
            "trajectory": _trajectory(trials),
        }
        if ok:
            out["best"] = out["leaderboard"][0] | {"model": str(run.model_dir(ok[0].id))}
        final = run.final_report()
        if final is not None:
            out["final"] = final
        if plot and out["trajectory"]:
            out["plot"] = str(plot_trajectories({str(run.path): out["trajectory"]}, run.trajectory_plot))
        if plot and any(row["flops"] is not None or row["seconds_per_epoch"] is not None
                        for row in out["leaderboard"]):
            out["cost_plot"] = str(plot_cost(out["leaderboard"], run.cost_plot))
        if plot and ok:
            out["architecture_plot"] = str(draw_trial(run, ok[0].id, run.best_architecture_plot))
        if trial is not None:
            out["trial_plot"] = str(draw_trial(run, trial))
        return out
    finally:
        run.close()


def format_report(rep: dict[str, Any], top: int = 10) -> str:
    """The report as text for a terminal."""
    task = f"objective {rep['objective']}" if rep.get("objective") else f"dataset {rep['dataset']}"
    if rep.get("mode") == "train":
        lines = [f"run {rep['run']}: `morphnas train`, {task}, seed {rep['seed']} (no search)"]
    else:
        cut = f", {rep['cut']} cut at the deadline" if rep.get("cut") else ""
        lines = [f"run {rep['run']}: strategy {rep['strategy']}, {task}, seed {rep['seed']}",
                 f"{rep['finished']} trials finished ({rep['failed']} failed{cut}) in {rep['elapsed_seconds']:.0f} s, "
                 f"{rep['training_seconds']:.0f} s of it training"
                 + (f" (no worker training {rep['overhead_share']:.1%} of the time)"
                    if rep["overhead_share"] is not None else "")]
    if rep.get("time_budget") and rep.get("job_seconds") is not None:
        lines.append(f"time: {rep['job_seconds']:.0f} s of a {rep['time_budget']:.0f} s budget (search and final)")
    multi = bool(rep.get("rungs"))
    if multi:
        lines.append("multi-fidelity (asha): " + "; ".join(
            f"rung {r['rung']} ({r['epochs']} epochs): {r['finished']} trials, {r['promoted']} promoted"
            for r in rep["rungs"]) + " — ranked by rung, then val acc")
    if rep["leaderboard"]:
        parallel = len({row.get("worker") for row in rep["leaderboard"]}) > 1
        lines.append(f"{'trial':>5} {'val acc':>8} {'start':>7}"
                     + (f" {'rung':>4} {'epochs':>6} {'cont.':>5}" if multi else "")
                     + f" {'params':>10} {'MFLOPs':>8} {'img/s':>6} {'depth':>5} {'skips':>5}"
                     + (f" {'worker':>10} {'at (s)':>7}" if parallel else "") + "  ops")
        for row in rep["leaderboard"][:top]:
            start = row["initial_metric"]
            at = row.get("started")
            cont = row.get("continues")
            fid = row.get("fidelity")
            flops, speed = row.get("flops"), row.get("train_images_per_second")
            lines.append(f"{row['trial']:>5} {row['metric']:>8.2%} "
                         f"{(f'{start:.1%}' if start is not None else '-'):>7}"
                         + (f" {row.get('rung', 0):>4} {(f'{fid:g}' if fid is not None else '-'):>6} "
                            f"{(str(cont) if cont is not None else '-'):>5}" if multi else "")
                         + f" {row['parameters']:>10,} "
                         f"{(f'{flops / 1e6:.1f}' if flops is not None else '-'):>8} "
                         f"{(f'{speed:.0f}' if speed is not None else '-'):>6} "
                         f"{row['depth']:>5} {row['skips']:>5}"
                         + (f" {row.get('worker', '')!s:>10} {(f'{at:.0f}' if at is not None else '-'):>7}"
                            if parallel else "") + f"  {row['ops']}"
                         + (" [promoted]" if multi and row.get("promoted") else "")
                         + (" [cut at the deadline]" if row.get("status") == TrialStatus.CUT else ""))
        best = rep["best"]
        at_rung = f", rung {best['rung']}" if multi else ""
        lines.append(f"best: trial {best['trial']} ({best['metric']:.2%}{at_rung}), model in {best['model']}")
    for f in rep["failures"]:
        lines.append(f"failed: trial {f['trial']}: {' '.join(f['reason'])}")
    if "final" in rep:
        fin = rep["final"]
        what = (f"trial {fin['trial']} " + ("trained on from its searched weights" if fin.get("init") == "inherit"
                                             else "retrained") if fin.get("trial") is not None
                else f"{fin.get('architecture', 'the network')} trained")
        epochs = f"{fin['epochs']} epochs"
        if fin.get("stopped_by") == "deadline":
            epochs = f"{fin.get('epochs_trained', 0):.2f} of {fin['epochs']} epochs (cut at the deadline)"
        if fin.get("retrained") is False:
            what, epochs = f"trial {fin['trial']}'s model from the search", "(no time to retrain it), trained"
        lines.append(f"final: {what} {epochs} on {fin['train_images']} images: "
                     f"test accuracy {fin['test_accuracy']:.2%} on {fin['test_images']} images")
        lines.append(f"{'class':>14} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
        for name, r in fin["classes"].items():
            lines.append(f"{name[:14]:>14} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f} "
                         f"{r['support']:>7}")
        lines.append(f"{'macro avg':>14} {fin['macro']['precision']:>9.3f} {fin['macro']['recall']:>7.3f} "
                     f"{fin['macro']['f1']:>6.3f}")
    if "plot" in rep:
        lines.append(f"trajectory plot: {rep['plot']}")
    if "cost_plot" in rep:
        lines.append(f"accuracy against cost: {rep['cost_plot']}")
    if "architecture_plot" in rep:
        lines.append(f"best architecture: {rep['architecture_plot']}")
    if "trial_plot" in rep:
        lines.append(f"trial architecture: {rep['trial_plot']}")
    return "\n".join(lines)


def plot_trajectories(trajectories: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """Best-so-far validation metric against trial number and against wall-clock, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in trajectories.items():
        pts = [p for p in points if p["best"] is not None]
        label = Path(name).name
        ax1.step([p["trial"] for p in pts], [p["best"] for p in pts], where="post", label=label)
        ax2.step([p["elapsed"] / 60 for p in pts], [p["best"] for p in pts], where="post", label=label)
    ax1.set(xlabel="trial", ylabel="best validation accuracy so far")
    ax2.set(xlabel="wall-clock (minutes)", ylabel="best validation accuracy so far")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def plot_cost(leaderboard: list[dict[str, Any]], path: Path) -> Path:
    """Validation accuracy of each trial against its FLOPs per image (log scale) and its seconds per epoch, the best
    trial marked: which accuracy the search bought at which cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    best = max(leaderboard, key=lambda r: r["metric"], default=None)
    for ax, key, label in ((axes[0], "flops", "FLOPs per image (forward)"),
                           (axes[1], "seconds_per_epoch", "seconds per epoch (training + validation)")):
        rows = [r for r in leaderboard if r.get(key) is not None]
        ax.scatter([r[key] for r in rows], [r["metric"] for r in rows], s=18, alpha=0.7)
        for r in rows:
            ax.annotate(str(r["trial"]), (r[key], r["metric"]), fontsize=6, alpha=0.6,
                        xytext=(2, 2), textcoords="offset points")
        if best is not None and best.get(key) is not None:
            ax.scatter([best[key]], [best["metric"]], s=80, facecolors="none", edgecolors="red", label="best")
            ax.legend(fontsize=8)
        if key == "flops" and rows:
            ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="validation accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def compare(paths: list[str | Path], plot_path: str | Path | None = None) -> dict[str, Any]:
    """Several runs side by side: best metric, trials, time to best, final test accuracy; one plot."""
    rows, trajectories = [], {}
    for p in paths:
        rep = report(p, plot=False)
        traj = rep["trajectory"]
        trajectories[rep["run"]] = traj
        best = rep["best"]
        t_best = next((pt["elapsed"] for pt in traj if best and pt["trial"] == best["trial"]), None)
        rows.append({"run": rep["run"], "strategy": rep["strategy"], "dataset": rep["dataset"], "seed": rep["seed"],
                     "trials": rep["finished"], "failed": rep["failed"],
                     "best_metric": best["metric"] if best else None, "best_trial": best["trial"] if best else None,
                     "seconds_to_best": t_best, "elapsed_seconds": rep["elapsed_seconds"],
                     "test_accuracy": rep.get("final", {}).get("test_accuracy")})
    out: dict[str, Any] = {"runs": rows}
    if plot_path is not None and trajectories:
        out["plot"] = str(plot_trajectories(trajectories, Path(plot_path)))
    return out


def format_compare(cmp: dict[str, Any]) -> str:
    lines = [f"{'run':40s} {'strategy':>13} {'trials':>6} {'best val':>8} {'to best (s)':>11} {'test':>7}"]
    for r in cmp["runs"]:
        best = f"{r['best_metric']:.2%}" if r["best_metric"] is not None else "-"
        to_best = f"{r['seconds_to_best']:.0f}" if r["seconds_to_best"] is not None else "-"
        test = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else "-"
        lines.append(f"{Path(r['run']).name[:40]:40s} {r['strategy']!s:>13} {r['trials']:>6} {best:>8} {to_best:>11} "
                     f"{test:>7}")
    if "plot" in cmp:
        lines.append(f"plot: {cmp['plot']}")
    return "\n".join(lines)
