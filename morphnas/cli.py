"""The command line: ``morphnas search | resume | report | final | export | compare | train | benchmark``.

``morphnas search`` with no arguments runs a short demo search on the demo data shipped in the package;
``morphnas search --dataset fashion-mnist --time-budget 1h`` searches and then retrains and tests the best
network, all within the hour; ``morphnas train --generator resnet --time-budget 1h`` trains a hand-designed
network with the same recipe and protocol, the baseline to compare a search with. Bad input is one line on
stderr and exit status 2; Ctrl-C is exit status 130 with the command that continues the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from morphnas.graph.graph import GraphError
from morphnas.storage.rundir import RunDirError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '30m', '1.5h' (positive)."""
    value = _duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive, got {text!r}")
    return value


def parse_duration_or_zero(text: str) -> float:
    """Seconds from '0', '90', '90s', '30m', '1.5h' (0 allowed: e.g. no final step)."""
    return _duration(text)


def _duration(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (expected e.g. 90, 90s, 30m, 1.5h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_key_values(text: str) -> dict[str, Any]:
    """``filters=8,dense_units=16`` as a dict; values read as JSON where they parse (8, 0.5, true, [3,3]),
    else as strings."""
    out: dict[str, Any] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"not KEY=VALUE: {item!r} (expected e.g. filters=8,dense_units=16)")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets, so ``block_layers=[4,4,4]`` stays whole."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        items.append(current)
    return items


class _MergeKeyValues(argparse.Action):
    """A repeatable KEY=VALUE[,KEY=VALUE...] option, merged into one dict."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from morphnas.engine.config import merge_tables

        setattr(namespace, self.dest, merge_tables(getattr(namespace, self.dest, None) or {}, values))


# trainer.AMP_MODES, written out so that the CLI starts without importing torch (a test keeps them equal)
AMP_CHOICES = ("auto", "off", "bf16", "fp16", "cuda")


def _amp_option(p: argparse.ArgumentParser) -> None:
    """`--amp`, the same for search and train."""
    p.add_argument("--amp", choices=AMP_CHOICES,
                   help="autocast precision of the training steps (metrics are always float32): auto (default) is "
                        "bf16 on CUDA and on CPUs with AMX, where it trains 1.8-2.3x faster, and float32 elsewhere; "
                        "off: float32 everywhere; cuda: autocast on CUDA only")


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with any SearchConfig keys (flags given here win)")
    p.add_argument("--dataset", help="demo (default), fashion-mnist, mnist, cifar10, or a path to an .npz")
    p.add_argument("--data-dir", help="directory holding the dataset files")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    p.add_argument("--strategy", help="bayesian (default), autokeras, bo-scratch, random, random-walk, "
                                      "hill-climbing, evolution, bfs")
    p.add_argument("--kernel", help="GP kernel of the GP strategies: additive (bayesian's default), bourgain "
                                    "(autokeras's), exp-distance, wl, descriptors")
    p.add_argument("--acquisition", help="acquisition of the GP strategies: ei (bayesian's default), ucb "
                                         "(autokeras's), pi, thompson")
    p.add_argument("--generator", help="initial architectures, one or several, comma-separated: cnn, resnet, "
                                       "densenet, mlp (default cnn,resnet)")
    p.add_argument("--generator-args", type=parse_key_values, action=_MergeKeyValues, metavar="KEY=VALUE,...",
                   help="the generators' arguments, e.g. filters=32,resnet.width=8 (a plain KEY goes to each "
                        "generator that takes it, NAME.KEY to that one; repeatable; merged into --config's)")
    p.add_argument("--max-trials", type=int, help="trial budget (default 5 when no time budget is given)")
    p.add_argument("--time-budget", type=parse_duration,
                   help="wall-clock budget of the whole job, search + final training + test, e.g. 3600, 30m, 2h")
    p.add_argument("--final-time", type=parse_duration_or_zero,
                   help="share of --time-budget kept for the final training and test (default: from the measured "
                        "epoch times; 0: no final step)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial (early stopping may stop sooner); with "
                                                  "--fidelity asha, the top rung's")
    p.add_argument("--fidelity", choices=("single", "asha"),
                   help="asha (default): new architectures train --min-epochs first and the best 1/--eta of each "
                        "rung are promoted (trained further from their own weights) to eta times the epochs, up "
                        "to --max-epochs; single: every trial trains --max-epochs")
    p.add_argument("--min-epochs", type=int, help="--fidelity asha: epochs of the first rung (default 1)")
    p.add_argument("--eta", type=int, help="--fidelity asha: reduction factor between rungs (default 3)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    _amp_option(p)
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
                                                    "epochs (at most, under a time budget) and test it once")
    p.add_argument("--final-init", choices=("inherit", "scratch"),
                   help="the final training continues from the best trial's searched weights (default: inherit) "
                        "or starts from fresh ones (scratch)")
    p.add_argument("--out", help="run directory (default runs/<dataset>-<strategy>-s<seed>-<time>)")
    p.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE_OR_FILE",
                   help="import this module or .py file first (e.g. one registering a kernel); repeatable; "
                        "kept in the run so resume, report and export import it too")


_SEARCH_KEYS = ("dataset", "data_dir", "download", "strategy", "kernel", "acquisition", "generator",
                "generator_args", "max_trials", "time_budget", "final_time", "max_epochs", "fidelity", "min_epochs",
                "eta", "batch_size", "amp", "seed",
                "device", "executor", "workers", "sync", "threads_per_trial", "ray_address", "cpus_per_trial",
                "gpus_per_trial", "final_epochs", "final_init", "out", "plugins")
_TRAIN_KEYS = ("dataset", "data_dir", "download", "generator", "generator_args", "time_budget", "batch_size", "amp",
               "seed", "device", "out", "plugins")


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
            budget += (f"{' or ' if budget else ''}{config.time_budget:.0f} s"
                       + (" for search, final training and test" if config.wants_final else ""))
        if config.fidelity == "asha":
            from morphnas.engine.fidelity import Rungs

            epochs = f"multi-fidelity, {Rungs.from_config(config).describe()}"
        else:
            epochs = f"up to {config.max_epochs} epochs per trial"
        print(f"morphnas search: {config.strategy} on {config.dataset}, {budget}, {epochs}, seed {config.seed}",
              flush=True)
    run = search(config)
    _where(run.path, config.quiet)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from morphnas.engine.api import read_architecture, train
    from morphnas.engine.config import SearchConfig

    overrides = {key: getattr(args, key) for key in _TRAIN_KEYS if getattr(args, key, None) is not None}
    if args.architecture is not None and (args.generator is not None or args.generator_args is not None):
        raise ValueError("give --generator (with --generator-args) or --architecture, not both")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    if args.epochs is None and args.time_budget is None:
        raise ValueError("say how long to train: --epochs N or --time-budget DURATION (e.g. 1h)")
    if args.architecture is not None:
        overrides["architecture"] = read_architecture(args.architecture)
    if args.epochs is not None:
        overrides["final_epochs"] = args.epochs
    overrides.update(mode="train", max_trials=None, epoch_budget=None, final_time=None, quiet=bool(args.quiet))
    config = SearchConfig.from_toml(args.config, **overrides) if args.config else SearchConfig.from_dict(overrides)
    if not config.quiet:
        what = args.architecture or f"{config.generator}" + (f" {config.generator_args}" if config.generator_args
                                                              else "")
        length = (f"{config.time_budget:.0f} s (epochs planned to fit" + (f", at most {config.final_epochs}"
                                                                          if config.final_epochs else "") + ")"
                  if config.time_budget else f"{config.final_epochs} epochs")
        print(f"morphnas train: {what} on {config.dataset}, {length}, seed {config.seed}", flush=True)
    run = train(config)
    _where(run.path, config.quiet, search=False)
    return 0


def _where(path: Path, quiet: bool, search: bool = True) -> None:
    from morphnas.engine.results import format_report, report

    if quiet:
        print(path)
        return
    print()
    print(format_report(report(path)))
    print(f"\nrun directory:  {path}")
    if search:
        print(f"tensorboard:    tensorboard --logdir {path / 'tb'}")
    print(f"report:         morphnas report {path}")
    print(f"export:         morphnas export {path}{'' if search else ' --final'}")


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

    epochs = args.epochs if args.epochs is not None or args.time_budget is not None else 10
    final_evaluation(args.run, epochs, args.trial, quiet=args.quiet, time_budget=args.time_budget, init=args.init)
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
    parser = _Parser(prog="morphnas", description="Neural architecture search by network morphism guided by "
                     "Bayesian optimization.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("search", help="run a new search (no arguments: a short demo on the packaged demo data)")
    _search_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print only the run directory")
    p.add_argument("--no-progress", action="store_true", help="no live progress bars on a terminal, plain lines")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("resume", help="continue a search (after a crash, or with a larger budget)")
    p.add_argument("run")
    p.add_argument("--max-trials", type=int)
    p.add_argument("--time-budget", type=parse_duration, help="a new budget for the whole job (over all sessions)")
    p.add_argument("--final-time", type=parse_duration_or_zero, help="a new share of it for the final step")
    p.add_argument("--final-init", choices=("inherit", "scratch"),
                   help="where the final step's training starts, if it has not run yet (default: as recorded)")
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
    p.add_argument("--epochs", type=int, help="epochs (default 10; with --time-budget, at most this many)")
    p.add_argument("--time-budget", type=parse_duration, help="train as many epochs as fit in this, then test")
    p.add_argument("--trial", type=int, help="a trial other than the best")
    p.add_argument("--init", choices=("inherit", "scratch"),
                   help="start from the trial's searched weights or from fresh ones (default: the run's final_init)")
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
    p = sub.add_parser("train", help="train one hand-designed network on train+validation and test it once: the "
                                     "baseline a search is compared with (same recipe, budget and protocol)")
    p.add_argument("--generator", help="cnn (default), resnet, densenet, mlp")
    p.add_argument("--generator-args", type=parse_key_values, action=_MergeKeyValues, metavar="KEY=VALUE,...",
                   help="the generator's arguments, e.g. depth=20,width=16 (repeatable)")
    p.add_argument("--architecture", metavar="PATH", help="an architecture.json (or a model directory holding "
                                                          "one, e.g. RUN/models/3) instead of a generator")
    p.add_argument("--epochs", type=int, help="epochs (with --time-budget: at most this many)")
    p.add_argument("--time-budget", type=parse_duration,
                   help="wall-clock budget, training and test; epochs planned to fit, e.g. 3600, 30m, 1h")
    p.add_argument("--config", help="TOML file with trainer settings (SearchConfig keys; flags given here win)")
    p.add_argument("--dataset", help="demo (default), fashion-mnist, mnist, cifar10, or a path to an .npz")
    p.add_argument("--data-dir", help="directory holding the dataset files")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    _amp_option(p)
    p.add_argument("--out", help="run directory (default runs/<dataset>-train-<generator>-s<seed>-<time>)")
    p.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE_OR_FILE",
                   help="import this module or .py file first (e.g. one registering a layer kind)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the run directory")
    p.set_defaults(func=cmd_train)
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
    except KeyboardInterrupt as exc:
        hint = ""
        if args.command in ("search", "resume"):
            run = getattr(exc, "run", None) or getattr(args, "run", None) or getattr(args, "out", None)
            hint = f"; continue with: morphnas resume {run}" if run else ""  # SearchInterrupted names its run
        elif args.command == "benchmark" and args.benchmark_command == "run":
            hint = "; the same command resumes the suite"
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130
    except (ValueError, RunDirError, GraphError, OSError) as exc:
        print(f"morphnas: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
