"""The Python API: ``search``, ``resume``, ``train``, ``Run`` (a run directory's results), ``ImageClassifier``.

    import morphnas
    run = morphnas.search(dataset="fashion-mnist", strategy="bayesian", max_trials=20, out="runs/fm")
    print(run.best.metric); run.export("exported/")
    run = morphnas.search(dataset="fashion-mnist", time_budget=3600)   # search + final + test in one hour
    base = morphnas.train(dataset="fashion-mnist", generator="resnet", time_budget=3600)  # the baseline

    clf = morphnas.ImageClassifier(max_trials=10).fit(x_train, y_train)   # labels: strings or any integers
    clf.evaluate(x_test, y_test); clf.predict(x_test)                     # labels of the user's kind
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morphnas.engine.config import DEFAULT_GENERATORS, SearchConfig
from morphnas.engine.export import export as export_run
from morphnas.engine.final import run_final_step, train_network
from morphnas.engine.loop import Progress, Search, SearchInterrupted, create_search, open_search
from morphnas.engine.results import classifier, compare, final_evaluation, report, retrain_final
from morphnas.engine.setup import stored_config
from morphnas.graph.graph import Graph, GraphError
from morphnas.storage.rundir import RunDir, TrialRecord
from morphnas.trainer.arrays import LabelEncoding
from morphnas.trainer.datasets import ImageDataset, as_images, from_arrays


class Run:
    """A run directory, read: its trials, best model, report, final evaluation and export."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with _opened(self.path) as run:
            self.config = dict(run.config)

    @property
    def trials(self) -> list[TrialRecord]:
        with _opened(self.path) as run:
            return run.trials()

    @property
    def best(self) -> TrialRecord | None:
        """The best finished trial (``storage.rundir.best_trial``), or None."""
        with _opened(self.path) as run:
            return run.best_trial()

    def model(self, trial: int | None = None) -> Graph:
        """The trained graph of ``trial`` (default: the best)."""
        with _opened(self.path) as run:
            stored_config(run)  # imports the run's plugins (e.g. a layer kind) before the graph is read
            record = self.best if trial is None else run.trial(trial)
            if record is None:
                raise ValueError(f"{self.path} has no finished trial")
            return run.load_model(record.id)

    def classifier(self, trial: int | None = None, final: bool = False) -> nn.Module:
        """An eval-mode module on raw images (normalisation included) for ``trial``, the best, or the final model."""
        with _opened(self.path) as run:
            return classifier(run, trial, final=final)

    def report(self, plot: bool = True) -> dict[str, Any]:
        return report(self.path, plot=plot)

    def final_evaluation(self, epochs: int | None = None, trial: int | None = None, quiet: bool = False,
                         time_budget: float | None = None, init: str | None = None) -> dict[str, Any]:
        """Retrain the best architecture on train+validation for ``epochs`` or within ``time_budget`` seconds,
        from its searched weights or from scratch (``init``; default the run's), and test it once (see
        final.final_evaluation)."""
        return final_evaluation(self.path, epochs, trial, quiet=quiet, time_budget=time_budget, init=init)

    def export(self, out: str | Path, trial: int | None = None, final: bool = False) -> dict[str, Any]:
        return export_run(self.path, out, trial, final=final)

    def __repr__(self) -> str:
        best = self.best
        return f"Run({str(self.path)!r}, trials={len(self.trials)}, best={None if best is None else best.metric})"


class _opened:
    def __init__(self, path: Path) -> None:
        self.run = RunDir.open(path)

    def __enter__(self) -> RunDir:
        return self.run

    def __exit__(self, *exc: object) -> None:
        self.run.close()


def search(config: SearchConfig | None = None, *, data: ImageDataset | None = None,
           labels: LabelEncoding | None = None, **options: Any) -> Run:
    """Run a new search (``config`` and/or keyword options, see SearchConfig) and return its Run.

    ``data`` may be an ImageDataset (e.g. from ``morphnas.trainer.from_arrays``); it is then kept in the run.
    ``labels`` names the user's label of each of its classes (``LabelEncoding``), kept in the run before the
    first trial so that exports map class indices back to them.
    With a ``time_budget`` (the whole job's) or ``final_epochs > 0``, the best architecture is then retrained on
    train+validation and tested once (``final.json``), within what is left of the budget.
    Ctrl-C: ``SearchInterrupted`` (a KeyboardInterrupt; ``resume`` continues the run).
    """
    base = config.to_dict() if config is not None else {}
    cfg = SearchConfig.from_dict({**base, **options})
    s = create_search(cfg, data=data, progress=Progress(cfg.quiet))
    if labels is not None:
        s.run_dir.write_labels(list(labels.class_names), list(labels.values), labels.label_type)
    return _finish(s)


def resume(path: str | Path, **overrides: Any) -> Run:
    """Continue the search in ``path`` (after a crash or Ctrl-C, or with a larger budget), then its final step if
    it has one and it is not done: the same job budget, counted over sessions."""
    return _finish(open_search(path, overrides or None))


def _finish(s: Search) -> Run:
    """Run the search, then its final step; a Ctrl-C during either is a ``SearchInterrupted`` naming the run."""
    path = s.run_dir.path
    try:
        s.run()
        run_final_step(s)
    except SearchInterrupted:
        raise
    except KeyboardInterrupt:
        raise SearchInterrupted(path) from None
    finally:
        s.run_dir.close()
    return Run(path)


def train(config: SearchConfig | None = None, *, data: ImageDataset | None = None, epochs: int | None = None,
          **options: Any) -> Run:
    """Train one hand-designed network (``generator`` + ``generator_args``, or ``architecture``: a Graph, its
    JSON dict, or the path of an ``architecture.json`` / a model directory) on train+validation for ``epochs``
    or within ``time_budget`` seconds, with the search's final recipe, and test it once; returns its Run.

    The run directory has no trials: ``final.json`` and ``models/final/`` (``Run.export(out, final=True)``).
    """
    base = config.to_dict() if config is not None else {}
    arch = options.pop("architecture", base.pop("architecture", None))
    if isinstance(base.get("generator"), list) and (arch is not None or "generator" in options
                                                     or base["generator"] == list(DEFAULT_GENERATORS)):
        del base["generator"]  # a search config's starts; the network is given, or the train default applies
    if arch is not None:
        options["architecture"] = read_architecture(arch)
    if epochs is not None:
        options["final_epochs"] = epochs
    search_only = {"max_trials": None, "epoch_budget": None, "final_time": None}  # a config made for a search
    cfg = SearchConfig.from_dict({**base, **search_only, **options, "mode": "train"})
    path, _ = train_network(cfg, data=data)
    return Run(path)


def read_architecture(source: Graph | dict[str, Any] | str | Path) -> dict[str, Any]:
    """An architecture as its JSON dict, from a Graph, a dict, or an ``architecture.json`` file or the directory
    holding one; ValueError (GraphError) naming the file and what is wrong."""
    if isinstance(source, Graph):
        return source.without_weights().to_dict()
    if isinstance(source, dict):
        return Graph.from_dict(source).to_dict()
    path = Path(source)
    if path.is_dir():
        return Graph.load(path, weights=False).to_dict()
    if not path.is_file():
        raise GraphError(f"architecture file {path} does not exist (expected an architecture.json, or a model "
                         "directory holding one)")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise GraphError(f"{path}: not an architecture JSON file ({exc})") from None
    try:
        return Graph.from_json(text).to_dict()
    except GraphError as exc:
        raise GraphError(f"{path}: {exc}") from None


class ImageClassifier:
    """Find and train an image classifier for your arrays, in the spirit of Auto-Keras' ImageClassifier.

    ``fit(x, y)`` searches (images N×H×W, N×C×H×W or N×H×W×C, uint8 or float) and retrains the best model on
    all the data for ``final_epochs``; ``predict`` / ``evaluate`` / ``export`` use that model.

    Labels may be strings or integers of any values (3, 7, 42; whole-number floats count as integers), as in
    Auto-Keras: the classes are the sorted distinct labels (``self.labels``, a ``LabelEncoding``, also kept in
    the run's ``normalization.json`` and in every export), ``predict`` returns labels of the same kind (a str
    array, or the integer dtype fit was given) and ``evaluate`` takes them.
    """

    def __init__(self, max_trials: int = 10, strategy: str = "bayesian", max_epochs: int = 5,
                 final_epochs: int = 10, time_budget: float | None = None, seed: int = 0,
                 directory: str | Path | None = None, quiet: bool = True, **options: Any) -> None:
        self.options = {"max_trials": max_trials, "strategy": strategy, "max_epochs": max_epochs,
                        "final_epochs": final_epochs, "time_budget": time_budget, "seed": seed, "quiet": quiet,
                        **options}
        SearchConfig.from_dict({**self.options, "final_epochs": 0})  # check the options now
        self.directory = Path(directory) if directory is not None else None
        self.run: Run | None = None
        self.labels: LabelEncoding | None = None
        self._model: nn.Module | None = None

    def fit(self, x: Any, y: Any, x_test: Any = None, y_test: Any = None) -> ImageClassifier:
        """Search on (x, y) — a validation split is carved from it — then retrain the best on all of it.

        With (x_test, y_test) the final model is tested once on them (``final.json``)."""
        if (x_test is None) != (y_test is None):
            raise ValueError("give both x_test and y_test, or neither")
        labels = LabelEncoding.fit(y, y_test, what="arrays labels")
        data = from_arrays(x, labels.encode(y, "arrays training labels"), x_test,
                           None if y_test is None else labels.encode(y_test, "arrays test labels"),
                           class_names=labels.class_names, name="arrays")
        out = self.directory or Path(tempfile.mkdtemp(prefix="morphnas-"))
        final = int(self.options["final_epochs"])
        if self.options.get("time_budget") is not None:  # one budget: the search's final step trains the model
            self.run = search(data=data, labels=labels, dataset="arrays", out=str(out), **self.options)
            with _opened(self.run.path) as run:
                final = int(run.has_final_model())
        else:
            self.run = search(data=data, labels=labels, dataset="arrays", out=str(out),
                              **{**self.options, "final_epochs": 0})
            if final > 0:
                self._final(final, data)
        self.labels = labels
        self._model = self.run.classifier(final=final > 0)
        return self

    def _final(self, epochs: int, data: ImageDataset) -> None:
        assert self.run is not None
        if data.test is not None:
            self.run.final_evaluation(epochs, quiet=bool(self.options["quiet"]))
        else:  # nothing to test on: retrain on all the data all the same, without a test report
            retrain_final(self.run.path, epochs, quiet=bool(self.options["quiet"]))

    def _require(self) -> nn.Module:
        if self._model is None:
            raise RuntimeError("the classifier is not fitted yet: call fit(x, y) first")
        return self._model

    def predict_logits(self, x: Any, batch_size: int = 512) -> torch.Tensor:
        model = self._require()
        images = as_images(x)
        with torch.inference_mode():
            return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])

    def predict(self, x: Any) -> np.ndarray:
        """Predicted label of each image, of the kind fit was given (str array, or its integer dtype)."""
        logits = self.predict_logits(x)
        assert self.labels is not None
        return self.labels.decode(logits.argmax(1))

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Accuracy and mean cross-entropy on (x, y); ``y`` holds labels as given to fit."""
        logits = self.predict_logits(x)
        assert self.labels is not None
        n_labels = len(y) if hasattr(y, "__len__") else None
        if n_labels is not None and n_labels != len(logits):
            raise ValueError(f"x has {len(logits)} images but y has {n_labels} labels")
        target = torch.from_numpy(self.labels.encode(y, "evaluate labels"))
        if len(target) != len(logits):
            raise ValueError(f"x has {len(logits)} images but y has {len(target)} labels")
        loss = torch.nn.functional.cross_entropy(logits, target).item()
        return {"accuracy": float((logits.argmax(1) == target).float().mean()), "loss": loss}

    def export(self, out: str | Path) -> dict[str, Any]:
        """The fitted model as .pt2 (torch.export), ONNX, architecture/safetensors + standalone model.py and
        (legacy) TorchScript, each with the normalisation and the labels (see ``engine.export.export``)."""
        if self.run is None:
            raise RuntimeError("the classifier is not fitted yet: call fit(x, y) first")
        with _opened(self.run.path) as run:
            final = run.has_final_model()
        return self.run.export(out, final=final)


__all__ = ["ImageClassifier", "Run", "compare", "read_architecture", "resume", "search", "train"]
