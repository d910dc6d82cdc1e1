"""The command line: ``morphnas search | resume | report | final | export | compare | benchmark run|report``.

``morphnas search`` with no arguments runs a short demo search on the demo data shipped in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from morphnas.graph.graph import GraphError
from morphnas.storage.rundir import RunDirError


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '30m', '1.5h'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (expected e.g. 90, 90s, 30m, 1.5h)")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive, got {text!r}")
    return value


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with any SearchConfig keys (flags given here win)")
    p.add_argument("--dataset", help="demo (default), fashion-mnist, mnist, cifar10, or a path to an .npz")
    p.add_argument("--data-dir", help="directory holding the dataset files")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    p.add_argument("--strategy", help="bayesian (default), bo-scratch, random, random-walk, hill-climbing, "
                                      "evolution, bfs")
    p.add_argument("--kernel", help="GP kernel of the bayesian strategies: bourgain (default), exp-distance, wl")
    p.add_argument("--acquisition", help="acquisition of the bayesian strategies: ucb (default), ei, pi, thompson")
    p.add_argument("--generator", help="initial architecture: cnn (default), resnet, densenet, mlp")
    p.add_argument("--max-trials", type=int)
    p.add_argument("--time-budget", type=parse_duration, help="wall-clock budget, e.g. 3600, 30m, 2h")
    p.add_argument("--max-epochs", type=int, help="epochs per trial (early stopping may stop sooner)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--executor", help="thread (default with one worker: trials in the driver process), process "
                                      "(local worker processes; default with several) or ray")
    p.add_argument("--workers", type=int, help="trials training at once (default 1)")
    p.add_argument("--sync", action="store_true", default=None,
                   help="suggest batches of --workers trials and observe them in order: the trial table then "
                        "does not depend on worker speed (default: asynchronous, faster)")
    p.add_argument("--threads-per-trial", type=int, help="intra-op threads of each worker (default: the cores "
                                                          "shared among the workers)")
    p.add_argument("--ray-address", help="join this Ray cluster (default $RAY_ADDRESS, else a local one)")
    p.add_argument("--cpus-per-trial", type=float, help="Ray: CPUs reserved per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=float, help="Ray: GPUs per trial, may be fractional, e.g. 0.5 "
                                                         "(default: 1 where the cluster has GPUs)")
    p.add_argument("--final-epochs", type=int, help="after the search, retrain the best on train+val this many "
                                                    "epochs and test it once")
    p.add_argument("--out", help="run directory (default runs/<dataset>-<strategy>-s<seed>-<time>)")
    p.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE_OR_FILE",
                   help="import this module or .py file first (e.g. one registering a kernel); repeatable; "
                        "kept in the run so resume, report and export import it too")


_SEARCH_KEYS = ("dataset", "data_dir", "download", "strategy", "kernel", "acquisition", "generator", "max_trials",
                "time_budget", "max_epochs", "batch_size", "seed", "device", "executor", "workers", "sync",
                "threads_per_trial", "ray_address", "cpus_per_trial", "gpus_per_trial", "final_epochs", "out",
                "plugins")


def _progress_flag(args: argparse.Namespace) -> None:
    """``--no-progress``: plain lines even on a terminal (read by ``engine.progress``)."""
    if getattr(args, "no_progress", False):
        os.environ["MORPHNAS_PROGRESS"] = "0"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {key: getattr(args, key) for key in _SEARCH_KEYS if getattr(args, key, None) is not None}
    if getattr(args, "quiet", False):
        out["quiet"] = True
    return out


def cmd_search(args: argparse.Namespace) -> int:
    from morphnas.engine.api import search
    from morphnas.engine.config import SearchConfig

    _progress_flag(args)
    overrides = _overrides(args)
    config = SearchConfig.from_toml(args.config, **overrides) if args.config else SearchConfig.from_dict(overrides)
    if not config.quiet:
        budget = f"{config.max_trials} trials" if config.max_trials else ""
        if config.time_budget:
            budget += f"{' or ' if budget else ''}{config.time_budget:.0f} s"
        print(f"morphnas search: {config.strategy} on {config.dataset}, {budget}, up to {config.max_epochs} "
              f"epochs per trial, seed {config.seed}", flush=True)
    run = search(config)
    _where(run.path, config.quiet)
    return 0


def _where(path: Path, quiet: bool) -> None:
    from morphnas.engine.results import format_report, report

    if quiet:
        print(path)
        return
    print()
    print(format_report(report(path)))
    print(f"\nrun directory:  {path}")
    print(f"tensorboard:    tensorboard --logdir {path / 'tb'}")
    print(f"report:         morphnas report {path}")
    print(f"export:         morphnas export {path}")


def cmd_resume(args: argparse.Namespace) -> int:
    from morphnas.engine.api import resume

    _progress_flag(args)
    overrides = _overrides(args)
    run = resume(args.run, **overrides)
    _where(run.path, bool(overrides.get("quiet")))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from morphnas.engine.results import format_report, report

    rep = report(args.run, plot=not args.no_plot, trial=args.trial)
    print(json.dumps(rep, indent=1) if args.json else format_report(rep, top=args.top))
    return 0


def cmd_final(args: argparse.Namespace) -> int:
    from morphnas.engine.results import final_evaluation, format_report, report

    final_evaluation(args.run, args.epochs, args.trial, quiet=args.quiet)
    rep = report(args.run, plot=False)
    print(json.dumps(rep["final"], indent=1) if args.json else format_report(rep, top=3))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from morphnas.engine.export import export

    out = args.out or str(Path(args.run) / "export")
    result = export(args.run, out, args.trial, final=args.final)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"exported {result['source']} of {args.run}:")
        for kind, path in result["files"].items():
            note = "  (legacy: TorchScript is deprecated in PyTorch; prefer model.pt2)" if kind == "torchscript" else ""
            print(f"  {kind:14s} {path}{note}")
        for kind, why in result.get("skipped", {}).items():
            print(f"  {kind:14s} not written: {why}")
        if result.get("checked"):
            print("  checked against the trained model: " + ", ".join(
                f"{kind} max |Δ logit| {diff:.1e}" for kind, diff in result["checked"].items()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from morphnas.engine.results import compare, format_compare

    result = compare(args.runs, args.plot)
    print(json.dumps(result, indent=1) if args.json else format_compare(result))
    return 0


def cmd_benchmark_run(args: argparse.Namespace) -> int:
    from morphnas.engine.suites import run_suite

    run_suite(args.suite, args.out, parallel_cells=args.parallel_cells, scale=args.scale, verbose=args.verbose)
    if not args.no_report:
        from morphnas.engine.suite_report import build_report

        build_report(args.out)
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_benchmark_report(args: argparse.Namespace) -> int:
    from morphnas.engine.suite_report import build_report

    rep = build_report(args.dir, plot=not args.no_plot)
    if args.json:
        print(json.dumps(rep, indent=1, default=float))
    else:
        print((Path(args.dir) / "report.md").read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morphnas", description="Neural architecture search by network "
                                     "morphism guided by Bayesian optimization.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("search", help="run a new search (no arguments: a short demo on the packaged demo data)")
    _search_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print only the run directory")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars on a terminal, plain lines")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("resume", help="continue a search (after a crash, or with a larger budget)")
    p.add_argument("run")
    p.add_argument("--max-trials", type=int)
    p.add_argument("--time-budget", type=parse_duration)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars on a terminal, plain lines")
    p.set_defaults(func=cmd_resume)
    p = sub.add_parser("report", help="leaderboard, best model, trajectory plot, final test report")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--trial", type=int, help="also draw this trial's architecture (RUN/architecture-NNNN.png)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("final", help="retrain the best architecture on train+validation and test it once")
    p.add_argument("run")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--trial", type=int, help="a trial other than the best")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_final)
    p = sub.add_parser("export", help="best model as .pt2 (torch.export), ONNX, architecture.json + safetensors + "
                                      "model.py, and legacy TorchScript")
    p.add_argument("run")
    p.add_argument("--out", help="directory (default RUN/export)")
    p.add_argument("--trial", type=int, help="a trial other than the best")
    p.add_argument("--final", action="store_true", help="the model of `morphnas final`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("compare", help="several runs side by side")
    p.add_argument("runs", nargs="+")
    p.add_argument("--plot", help="write the best-so-far curves to this PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("benchmark", help="benchmark suites: strategies × seeds × tasks at equal budgets, with stats")
    bsub = p.add_subparsers(dest="benchmark_command", metavar="run|report", required=True)
    b = bsub.add_parser("run", help="run (or resume) every cell of a suite file into DIR, then write its report")
    b.add_argument("suite", help="suite TOML file (see experiments/*.toml)")
    b.add_argument("--out", required=True, help="suite directory; the same command again resumes it")
    b.add_argument("--parallel-cells", type=int, default=1, help="cells at once, as local processes each pinned to "
                                                                  "its share of the cores (default 1)")
    b.add_argument("--scale", type=float, default=1.0, help="multiply every budget by this (e.g. 0.1)")
    b.add_argument("--verbose", action="store_true", help="print every trial and epoch")
    b.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    b.set_defaults(func=cmd_benchmark_run)
    b = bsub.add_parser("report", help="write DIR/report.md, report.json and figures of a suite directory")
    b.add_argument("dir")
    b.add_argument("--json", action="store_true", help="print report.json instead of report.md")
    b.add_argument("--no-plot", action="store_true")
    b.set_defaults(func=cmd_benchmark_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``morphnas`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        run = getattr(args, "run", None) or getattr(args, "out", None)
        print(f"\ninterrupted{f'; continue with: morphnas resume {run}' if run else ''}", file=sys.stderr)
        return 130
    except (ValueError, RunDirError, GraphError, OSError) as exc:
        print(f"morphnas: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
