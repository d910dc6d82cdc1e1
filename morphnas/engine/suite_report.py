"""The report of a benchmark suite (``morphnas benchmark report DIR``): ``report.md``, ``report.json`` and PNG figures.

It reads the suite's cells through ``RunDir`` and computes everything with ``engine.stats``. Per comparison
group (a task at one budget), per strategy: median and interquartile band (and mean ± std) of the best-so-far
curve against trials and against compute seconds; the final test accuracy; mean ranks at checkpoints; pairwise
exact Wilcoxon tests over paired seeds with Holm's correction and the rank-biserial effect size; the normalised
area under the curve; the cost of every cell. Then the environment and a best-practice checklist (Lindauer &
Hutter, JMLR 2020).

Equal budgets are enforced here as well as in the loop: a cell's curve holds only the trials within its budget
(the first B trials; the trials whose cumulative epochs stay within an epoch budget; the trials finished within a
wall-clock budget), so a run that overshot (trials already in flight when the budget ran out) gains nothing.

The *score* of a run is its incumbent's value: the trial with the best observed (validation, or noisy objective)
metric, judged by its validation metric — or, on a synthetic objective, by its noise-free value. A run with a
final retrain is compared on its test accuracy.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from morphnas.engine import stats
from morphnas.engine.suites import CELL_FILE, cell_record, load_suite_dir, suite_cells
from morphnas.fileio import atomic_write
from morphnas.storage.rundir import rank_key

CHECKPOINTS = (0.25, 0.5, 1.0)


def cell_curve(trials: list[Any], kind: str, budget: float, objective: bool) -> dict[str, Any]:
    """The best-so-far score after each trial within the budget, with each trial's compute seconds."""
    done = sorted((t for t in trials if t.finished), key=lambda t: t.id)
    within, epochs = [], 0
    for t in done:
        if kind == "trials" and t.id >= budget:
            continue
        if kind == "epochs":
            if epochs + t.epochs > budget:
                break
            epochs += t.epochs
        if kind == "seconds" and float(t.extra.get("elapsed", 0.0)) > budget:
            continue
        within.append(t)
    best_observed, score, curve, seconds = None, math.nan, [], []
    for t in within:  # the incumbent by the run's own rule: the highest rung, then the metric
        if t.has_metric and (best_observed is None or rank_key(t) > best_observed):
            best_observed = rank_key(t)
            score = float(t.extra.get("clean", t.metric)) if objective else float(t.metric)
        curve.append(score)
        seconds.append(float(t.extra.get("elapsed", 0.0)))
    return {"curve": curve, "seconds": seconds, "trials": len(within), "epochs": sum(t.epochs for t in within)}


def collect(out: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The suite's spec and one row per cell (finished or not) with its curve, final result and cost."""
    from morphnas.engine.setup import stored_config
    from morphnas.storage.rundir import RunDir, RunDirError

    out = Path(out)
    spec = load_suite_dir(out)
    kind = spec["budget"]["kind"]
    rows = []
    for cell in suite_cells(spec, out):
        path = out / cell.key
        row: dict[str, Any] = {"cell": cell.key, "task": cell.task, "label": cell.label, "budget": cell.budget,
                               "seed": cell.seed, "strategy": cell.config["strategy"],
                               "objective": cell.config.get("objective"), "finished": False, "curve": [],
                               "seconds": [], "trials": 0, "epochs": 0, "final": None, "cost": None, "cpus": None}
        record = cell_record(path)
        if record is not None:
            row.update(finished=True, final=record.get("final"), cost=record["cost"], cpus=record.get("cpus"),
                       pinned=record.get("pinned", False), final_error=record.get("final_error", ""))
        if (path / "config.json").is_file():
            try:
                run = RunDir.open(path)
                try:
                    stored_config(run)
                    row.update(cell_curve(run.trials(), kind, cell.budget, cell.config.get("objective") is not None))
                finally:
                    run.close()
            except RunDirError as exc:
                row["error"] = str(exc)
        rows.append(row)
    return spec, rows


def _padded(curves: list[list[float]], length: int) -> np.ndarray:
    out = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        if c:
            c = (c + [c[-1]] * length)[:length]
            out[i] = c
    return out


def _f(x: float | None, pct: bool = False, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.2%}" if pct else f"{x:.{digits}f}"


def group_report(rows: list[dict[str, Any]], labels: list[str], kind: str, budget: float) -> dict[str, Any]:
    """Everything about one comparison group (one task at one budget)."""
    by = {lab: {r["seed"]: r for r in rows if r["label"] == lab and r["finished"]} for lab in labels}
    seeds = sorted(set.intersection(*(set(v) for v in by.values()))) if by else []
    length = int(budget) if kind == "trials" else max((r["trials"] for r in rows), default=0)
    use_final = bool(seeds) and all(by[lab][s]["final"] for lab in labels for s in seeds)
    out: dict[str, Any] = {"budget": budget, "paired_seeds": seeds, "score": "final test accuracy" if use_final
                           else "incumbent's value at the end of the budget", "strategies": {}, "tests": []}
    scores = {}
    max_seconds = max((r["seconds"][-1] for r in rows if r["finished"] and r["seconds"]), default=0.0)
    grid = np.linspace(0.0, max_seconds, 101) if max_seconds > 0 else np.zeros(1)
    for lab in labels:
        cells = [by[lab][s] for s in sorted(by[lab])]
        if not cells or length == 0:
            out["strategies"][lab] = {"runs": len(cells)}
            continue
        curves = _padded([c["curve"] for c in cells], length)
        med, q25, q75 = stats.median_iqr(curves)
        mean, std = stats.mean_std(curves)
        ends = curves[:, -1]
        tcurves = np.vstack([stats.step_at(c["seconds"], c["curve"], grid) if c["curve"] else np.full(len(grid),
                             np.nan) for c in cells])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # grid points before a run's first result: NaN
            tmed = np.nanmedian(tcurves, axis=0) if np.isfinite(tcurves).any() else np.full(len(grid), np.nan)
            tq25 = np.nanpercentile(tcurves, 25, axis=0) if np.isfinite(tcurves).any() else tmed
            tq75 = np.nanpercentile(tcurves, 75, axis=0) if np.isfinite(tcurves).any() else tmed
        finals = [c["final"]["test_accuracy"] for c in cells if c["final"]]
        fmean, fstd = stats.mean_std(finals) if finals else (np.nan, np.nan)
        aucs = [stats.normalised_auc(c["curve"], length) for c in cells]
        amean, astd = stats.mean_std(aucs)
        costs = [c["cost"]["total_seconds"] for c in cells]
        out["strategies"][lab] = {
            "runs": len(cells), "seeds": sorted(by[lab]),
            "end": {"median": float(np.median(ends)), "q25": float(np.percentile(ends, 25)),
                    "q75": float(np.percentile(ends, 75)), "mean": float(np.mean(ends)),
                    "std": float(stats.mean_std(ends)[1])},
            "test_accuracy": {"n": len(finals), "mean": float(fmean), "std": float(fstd)},
            "auc": {"mean": float(amean), "std": float(astd)},
            "cost_seconds": {"mean": float(np.mean(costs)), "total": float(np.sum(costs))},
            "curve_trials": {"median": med.tolist(), "q25": q25.tolist(), "q75": q75.tolist(), "mean": mean.tolist(),
                             "std": std.tolist()},
            "curve_seconds": {"grid": grid.tolist(), "median": tmed.tolist(), "q25": tq25.tolist(),
                              "q75": tq75.tolist()},
        }
        scores[lab] = {s: (by[lab][s]["final"]["test_accuracy"] if use_final else
                           _padded([by[lab][s]["curve"]], length)[0, -1]) for s in by[lab]}
    # mean ranks at checkpoints over the paired seeds
    if seeds and length:
        out["mean_ranks"] = {}
        for frac in CHECKPOINTS:
            k = max(1, round(frac * length))
            mat = np.array([[_padded([by[lab][s]["curve"]], length)[0, k - 1] for lab in labels] for s in seeds])
            mat = np.nan_to_num(mat, nan=-np.inf)
            out["mean_ranks"][str(k)] = dict(zip(labels, stats.mean_ranks(mat).tolist(), strict=True))
        final_mat = np.array([[scores[lab][s] for lab in labels] for s in seeds])
        out["mean_ranks_score"] = dict(zip(labels, stats.mean_ranks(np.nan_to_num(final_mat, nan=-np.inf)).tolist(),
                                           strict=True))
    tests = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if not seeds:
                continue
            t = stats.wilcoxon_paired([scores[a][s] for s in seeds], [scores[b][s] for s in seeds])
            tests.append((a, b, t))
    stats.holm_tests([t for _, _, t in tests])
    out["tests"] = [{"a": a, "b": b, **t.to_dict()} for a, b, t in tests]
    out["min_pairs"] = stats.min_pairs_for()
    return out


def _environment() -> dict[str, Any]:
    from morphnas.storage.rundir import environment_versions

    env: dict[str, Any] = {**environment_versions(), "processor": platform.processor() or platform.machine(),
                           "cpu_count": os.cpu_count(), "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - report what we can
        pass
    return env


def build_report(out: str | Path, plot: bool = True) -> dict[str, Any]:
    """Compute the report of the suite in ``out`` and write ``report.md``, ``report.json`` and figures there."""
    out = Path(out)
    spec, rows = collect(out)
    kind = spec["budget"]["kind"]
    labels = [s["label"] for s in spec["strategies"]]
    tasks = [t["label"] for t in spec["tasks"]]
    groups = {}
    for task in tasks:
        for budget in spec["budget"]["values"]:
            key = f"{task}/b{_budget_str(budget)}"
            grows = [r for r in rows if r["task"] == task and r["budget"] == budget]
            groups[key] = {"task": task, **group_report(grows, labels, kind, budget)}
    finished = [r for r in rows if r["finished"]]
    pinnings = sorted({len(r["cpus"] or []) for r in finished} | set())
    pinned = sorted({bool(r.get("pinned")) for r in finished})
    rep: dict[str, Any] = {
        "suite": spec, "budget_kind": kind, "cells": len(rows), "finished": len(finished),
        "unfinished": [r["cell"] for r in rows if not r["finished"]], "groups": groups,
        "cost": {"total_seconds": sum(r["cost"]["total_seconds"] for r in finished),
                 "search_seconds": sum(r["cost"]["search_seconds"] for r in finished),
                 "final_seconds": sum(r["cost"]["final_seconds"] for r in finished),
                 "per_cell": {r["cell"]: r["cost"] for r in finished}},
        "pinning": {"cores_per_cell": pinnings, "pinned": pinned},
        "environment": _environment(),
    }
    rep["checklist"] = checklist(spec, rep, labels)
    if plot:
        rep["figures"] = _figures(out, spec, groups, labels, kind)
    atomic_write(out / "report.json", json.dumps(rep, indent=1, default=float))
    atomic_write(out / "report.md", format_markdown(rep))
    return rep


def _budget_str(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else f"{b:g}"


def checklist(spec: dict[str, Any], rep: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
    """Which best-practice items (Lindauer & Hutter 2020) the suite satisfies, each with a reason."""
    names = {s["name"] for s in spec["strategies"]}
    n_seeds = len(spec["seeds"])
    kind = spec["budget"]["kind"]
    datasets = [t for t in spec["tasks"] if t["kind"] == "dataset"]
    items = [
        ("same budget for every method", True, f"one {kind} budget per comparison ({spec['budget']['values']}), "
         "curves cut at it"),
        ("wall-clock budgets under equal pinning", kind != "seconds" or len(rep["pinning"]["cores_per_cell"]) <= 1,
         "not a wall-clock budget" if kind != "seconds" else
         f"cores per cell: {rep['pinning']['cores_per_cell']} (compare only cells with the same pinning)"),
        ("random-search baseline present", "random" in names, "strategy 'random'" if "random" in names else
         "add [[strategy]] name = \"random\""),
        ("at least 3 seeds", n_seeds >= 3, f"{n_seeds} seed(s)"),
        (f"enough seeds for a significant paired test (>= {stats.min_pairs_for()})",
         n_seeds >= stats.min_pairs_for(), f"{n_seeds} seed(s)"),
        ("ablations bfs and bo-scratch present", {"bfs", "bo-scratch"} <= names,
         f"missing: {sorted({'bfs', 'bo-scratch'} - names)}" if not {"bfs", "bo-scratch"} <= names else "both"),
        ("identical final protocol (retrain on train+val, test once)",
         bool(spec["final_epochs"]) or not datasets,
         f"{spec['final_epochs']} epochs from {_final_start(spec)}, same seed policy for every cell"
         if spec["final_epochs"] else
         ("objectives only: judged by the noise-free value" if not datasets else "no final step in this suite")),
        ("more than one task", len(spec["tasks"]) > 1, f"{len(spec['tasks'])} task(s)"),
        ("every cell finished", not rep["unfinished"], f"{len(rep['unfinished'])} unfinished"),
        ("end-to-end cost and environment reported", True, "cost per cell and in total; versions, hardware, config"),
    ]
    return [{"item": i, "ok": bool(ok), "detail": d} for i, ok, d in items]


def _final_start(spec: dict[str, Any]) -> str:
    """Where the suite's final trainings start, in words (suites from before the setting: scratch)."""
    return "the searched weights" if spec.get("final_init", "scratch") == "inherit" else "scratch"


def format_markdown(rep: dict[str, Any]) -> str:
    spec = rep["suite"]
    kind = rep["budget_kind"]
    lines = [f"# Benchmark suite `{spec['name']}`", ""]
    if spec.get("description"):
        lines += [spec["description"], ""]
    lines += [f"{rep['finished']}/{rep['cells']} cells finished; budget: {kind} {spec['budget']['values']}"
              + (f" (scaled by {spec['scale']:g})" if spec["scale"] != 1 else "") + f"; seeds {spec['seeds']}; "
              f"final protocol: " + (f"best architecture retrained {spec['final_epochs']} epochs on train+val "
                                     f"from {_final_start(spec)}, tested once (same seed policy in every cell)"
                                     if spec["final_epochs"]
                                     else "none"), ""]
    if kind == "seconds":
        lines += [f"**Wall-clock budget.** Cells ran on {rep['pinning']['cores_per_cell']} core(s) each "
                  f"(pinned: {rep['pinning']['pinned']}); wall-clock budgets are equal only between cells that ran "
                  "under the same pinning on the same machine. Prefer trial or epoch budgets on a shared machine.", ""]
    if rep["unfinished"]:
        lines += [f"Unfinished cells (left out): {', '.join(rep['unfinished'])}", ""]
    for key, g in rep["groups"].items():
        lines += [f"## {key}", "", f"Score (mean rank and tests): {g['score']}; paired seeds: {g['paired_seeds']}. "
                  "Best-so-far and AUC are of the search's own value (validation metric, or an objective's "
                  "noise-free value) at the budget.", "",
                  "| strategy | runs | best-so-far median [IQR] | best-so-far mean ± std | test acc. mean ± std | "
                  "AUC/budget mean ± std | mean rank (score) | cost (s) per run |", "|---|---|---|---|---|---|---|---|"]
        for lab, s in g["strategies"].items():
            if "end" not in s:
                lines.append(f"| {lab} | {s['runs']} | – | – | – | – | – | – |")
                continue
            e, ta, auc = s["end"], s["test_accuracy"], s["auc"]
            rank = g.get("mean_ranks_score", {}).get(lab)
            lines.append(f"| {lab} | {s['runs']} | {_f(e['median'])} [{_f(e['q25'])}, {_f(e['q75'])}] | "
                         f"{_f(e['mean'])} ± {_f(e['std'])} | "
                         + (f"{_f(ta['mean'], True)} ± {_f(ta['std'], True)}" if ta["n"] else "–")
                         + f" | {_f(auc['mean'])} ± {_f(auc['std'])} | {_f(rank, digits=2)} | "
                         f"{s['cost_seconds']['mean']:.1f} |")
        if g.get("mean_ranks"):
            cps = list(g["mean_ranks"])
            lines += ["", "Mean rank of the best-so-far value (1 = best) after trials " + ", ".join(cps) + ":", "",
                      "| strategy | " + " | ".join(f"@{c}" for c in cps) + " |", "|---|" + "---|" * len(cps)]
            for lab in g["strategies"]:
                lines.append(f"| {lab} | " + " | ".join(f"{g['mean_ranks'][c][lab]:.2f}" for c in cps) + " |")
        if g["tests"]:
            lines += ["", "Pairwise exact two-sided Wilcoxon signed-rank tests on the score over paired seeds, "
                      "Holm-corrected within this group; effect: matched-pairs rank-biserial r (+ favours A).", ""]
            if not any(t["testable"] for t in g["tests"]):
                lines += [f"**Too few paired seeds for a test:** with {len(g['paired_seeds'])} pair(s) an exact "
                          f"two-sided Wilcoxon test cannot reach p < 0.05 (it needs {g['min_pairs']} non-zero "
                          "pairs), so no p-values are given; wins/losses and effect sizes are descriptive.", ""]
            lines += ["| A | B | pairs | A wins / losses / ties | W | p | p (Holm) | r |",
                      "|---|---|---|---|---|---|---|---|"]
            for t in g["tests"]:
                lines.append(f"| {t['a']} | {t['b']} | {t['n']} | {t['wins']} / {t['losses']} / {t['ties']} | "
                             + (f"{t['statistic']:g} | {t['p']:.4g} | {t['p_holm']:.4g}" if t["p"] is not None
                                else "– | n/a (too few pairs) | –") + f" | {t['effect']:+.2f} |")
        lines.append("")
    cost = rep["cost"]
    lines += ["## Cost", "", f"Total {cost['total_seconds']:.0f} s ({cost['total_seconds'] / 3600:.2f} h): "
              f"{cost['search_seconds']:.0f} s searching, {cost['final_seconds']:.0f} s in final retrains.", "",
              "| cell | search (s) | training (s) | final (s) | total (s) |", "|---|---|---|---|---|"]
    for cell, c in rep["cost"]["per_cell"].items():
        lines.append(f"| {cell} | {c['search_seconds']:.1f} | {c['training_seconds']:.1f} | "
                     f"{c['final_seconds']:.1f} | {c['total_seconds']:.1f} |")
    lines += ["", "## Best-practice checklist (Lindauer & Hutter, JMLR 2020)", ""]
    lines += [f"- [{'x' if c['ok'] else ' '}] {c['item']}: {c['detail']}" for c in rep["checklist"]]
    if rep.get("figures"):
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in rep["figures"]]
    env = rep["environment"]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "## Full configuration", "", "```json", json.dumps(spec, indent=1), "```", ""]
    return "\n".join(lines)


def _figures(out: Path, spec: dict[str, Any], groups: dict[str, Any], labels: list[str], kind: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, g in groups.items():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for lab in labels:
            s = g["strategies"].get(lab, {})
            if "curve_trials" not in s:
                continue
            ct, cs = s["curve_trials"], s["curve_seconds"]
            x = np.arange(1, len(ct["median"]) + 1)
            (line,) = ax1.plot(x, ct["median"], label=lab)
            ax1.fill_between(x, ct["q25"], ct["q75"], alpha=0.15, color=line.get_color())
            ax2.plot(cs["grid"], cs["median"], color=line.get_color(), label=lab)
            ax2.fill_between(cs["grid"], cs["q25"], cs["q75"], alpha=0.15, color=line.get_color())
        ax1.set(xlabel="trial", ylabel="best-so-far score", title=f"{key}: median and IQR")
        ax2.set(xlabel="compute (search seconds)", ylabel="best-so-far score")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        paths.append(_save(fig, out / f"fig_{key.replace('/', '_')}.png"))
    budgets = spec["budget"]["values"]
    if len(budgets) > 1:
        for task in [t["label"] for t in spec["tasks"]]:
            fig, ax = plt.subplots(figsize=(6, 4))
            for lab in labels:
                pts = [(b, groups[f"{task}/b{_budget_str(b)}"]["strategies"].get(lab, {}).get("end")) for b in budgets]
                pts = [(b, e) for b, e in pts if e]
                if pts:
                    (line,) = ax.plot([b for b, _ in pts], [e["median"] for _, e in pts], marker="o", label=lab)
                    ax.fill_between([b for b, _ in pts], [e["q25"] for _, e in pts], [e["q75"] for _, e in pts],
                                    alpha=0.15, color=line.get_color())
            ax.set(xlabel=f"budget ({kind})", ylabel="score at the end of the budget", title=f"{task}: score vs budget")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            paths.append(_save(fig, out / f"fig_{task}_budget.png"))
    return paths


def _save(fig: Any, path: Path) -> str:
    """Lay out, write atomically as PNG, and close a figure; its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return str(path)


__all__ = ["CELL_FILE", "build_report", "cell_curve", "checklist", "collect", "format_markdown", "group_report"]
