"""Training of one candidate network: data on the device, batched augmentation, early stopping, no escapes.

`Trainer` holds the training and validation splits on the device once (uint8) and trains any `nn.Module`
that maps float N×C×H×W images to logits: SGD with Nesterov momentum, weight decay and a per-step cosine
schedule by default; early stopping on validation accuracy; epoch and wall-clock limits, and a deadline
(absolute wall-clock, so a driver can hand it to a worker process) or a stop flag that cut a run after any
optimizer step; the best epoch's weights restored into the module. Faults (non-finite loss, out of memory,
any exception) come back as a `TrainResult` with status "failed" and never escape, so a search survives a
bad candidate. The loop does one host sync per epoch (the loss and accuracy are accumulated on the device).
On CUDA it uses autocast (bf16, or fp16 with a GradScaler) and channels-last by default; on a CPU with bf16
matrix units (Intel AMX) bf16 autocast too, measured 1.8-2.3x faster per epoch and better at equal wall-clock.
Autocast covers the training steps only: validation and `evaluate` run in float32, so every metric (the trials'
validation, the one test) is that of the float32 model a user exports and runs, on any device and whatever the
precision it trained in; on a CPU that costs about 4 % of a bf16 epoch.

Options for the final retrain, all off by default so that search trials train as before (the named final recipe,
`TrainConfig.final_recipe(dataset)`, turns them on; its constants live in `recipe.py`):
- `ema_decay`: an exponential moving average of the weights and of the BatchNorm buffers, kept in a shadow copy
  of the module and updated after every optimizer step. The shadow is what is validated, kept as the best epoch
  and returned, so early stopping, the best epoch and the returned module all agree. BatchNorm running
  statistics are averaged like the weights (as timm's ModelEmaV2 does) rather than recomputed with an extra pass
  over the training data: with a horizon of a few epochs the averaged statistics match the averaged weights
  closely and validation costs nothing extra. SWA is not provided: it needs that extra pass and its own schedule.
- `warmup_epochs`: a linear warm-up of the learning rate; `schedule="cosine"` then decays to exactly 0 at the
  last planned step.
- `lr_scaling`: the learning rate is given for batch 128 and scaled linearly or by the square root with the
  batch size (Goyal et al. 2017; Krizhevsky 2014), so batch-size experiments keep a comparable schedule.
- `compile`: `torch.compile` of the training step's module (validation runs eager: a second compile for eval
  mode and the last short batch would cost more than it saves). Compiling costs seconds to minutes per
  architecture on a CPU (every new architecture compiles anew), so it can pay only for long fits. If compiling
  fails for any reason the fit warns once, trains the eager module from the same step, and records why
  (`TrainResult.compile_error`): it never fails a trial.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from morphnas.trainer.augment import Augmentation, Normalizer
from morphnas.trainer.datasets import ImageDataset, ImageSplit
from morphnas.trainer.recipe import final_recipe_fields

__all__ = [
    "LEGACY_AMP",
    "BatchCallback",
    "EpochRecord",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "cpu_has_bf16_matrix_units",
    "evaluate",
    "lr_factors",
    "precision_name",
    "resolve_amp",
    "select_device",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "onecycle")
AMP_MODES = ("auto", "off", "bf16", "fp16", "cuda")
# What a run directory or suite recorded before `amp` was a setting meant: autocast on CUDA only, float32 on every
# CPU (the old "auto"). Resuming one keeps its precision, so its remaining trials train as its first ones did.
LEGACY_AMP = "cuda"
LR_SCALINGS = ("none", "linear", "sqrt")
LR_REFERENCE_BATCH = 128  # the batch size `lr` is given for when `lr_scaling` is "linear" or "sqrt"
_DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
_AUG_CHUNK = 4096  # images augmented per op at the start of an epoch (bounds the temporaries)
_OOM_ERRORS: tuple[type[BaseException], ...] = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),)

EpochCallback = Callable[["EpochRecord", nn.Module], "bool | None"]
# on_batch(epoch, batches done this epoch, batches per epoch, batch size), after each optimizer step
BatchCallback = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; the defaults train the Auto-Keras CNN well on small images.

    `lr=None` takes 0.05 for SGD and 1e-3 for Adam/AdamW. `patience=None` turns early stopping off.
    `crop_padding=None` and `flip=None` follow the dataset's recipe (`ImageDataset.crop_padding`, `flip_ok`:
    4 px and flips for CIFAR-10, 2 px and no flips for Fashion-MNIST and MNIST); for bare splits, H // 8 px
    and no flips. `amp="auto"` is bf16 (else fp16) autocast on CUDA, bf16 on a CPU with bf16 matrix units (AMX)
    and off elsewhere; "cuda" is autocast on CUDA only (the old "auto"); metrics are always computed in float32.
    `channels_last=None` is on (measured 1.3x faster training on CPU too, docs/benchmarks.md).
    `time_limit` is in seconds for the whole fit.
    `warmup_epochs` (may be fractional) ramps the lr linearly up to its peak; `ema_decay` (per step, None = off)
    validates and returns an exponential moving average of the weights; `lr_scaling` scales `lr` from batch 128
    to `batch_size`; `compile` trains through `torch.compile(backend=compile_backend)`, falling back to eager
    with a warning if that fails. The module docstring says why each exists and is off by default.
    """

    max_epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    patience: int | None = 5
    min_delta: float = 0.0
    time_limit: float | None = None
    crop_padding: int | None = None
    flip: bool | None = None
    cutout: int = 0
    amp: str = "auto"
    channels_last: bool | None = None
    eval_batch_size: int = 256  # measured 1.4-1.6x faster validation on CPU than 1024 (docs/benchmarks.md)
    warmup_epochs: float = 0.0
    ema_decay: float | None = None
    lr_scaling: str = "none"
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}; got {self.amp!r}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("max_epochs, batch_size and eval_batch_size must be ≥ 1")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be ≥ 1 or None; got {self.patience}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds or None; got {self.time_limit}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if not 0.0 <= self.warmup_epochs < self.max_epochs:
            raise ValueError(f"warmup_epochs must be in [0, max_epochs={self.max_epochs}); got {self.warmup_epochs}")
        if self.warmup_epochs and self.schedule == "onecycle":
            raise ValueError("warmup_epochs cannot be combined with schedule='onecycle', which has its own warm-up")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None; got {self.ema_decay}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}; got {self.lr_scaling!r}")
        if not self.compile_backend:
            raise ValueError("compile_backend must name a torch.compile backend, e.g. 'inductor'")

    @property
    def base_lr(self) -> float:
        """The peak learning rate: `lr` (or the optimizer's default), scaled from batch 128 by `lr_scaling`."""
        lr = self.lr if self.lr is not None else _DEFAULT_LR[self.optimizer]
        ratio = self.batch_size / LR_REFERENCE_BATCH
        return lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[self.lr_scaling]

    @classmethod
    def final_recipe(cls, dataset: str | None = None, **overrides: Any) -> TrainConfig:
        """The named final recipe for `dataset` (`recipe.FINAL_RECIPES`: label smoothing, warm-up, cosine to 0,
        weight EMA, no early stopping, the dataset's augmentation), with `overrides` (e.g. `max_epochs`) on top."""
        return cls(**(final_recipe_fields(dataset) | overrides))


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one finished epoch (1-based); seconds include validation, `elapsed` is since the fit began."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    train_seconds: float
    seconds: float
    elapsed: float
    train_images: int = 0  # images trained on this epoch (for throughput: train_images / train_seconds)
    fraction: float = 1.0  # share of the epoch's batches trained: < 1 only for a partial epoch (see `fit`)


@dataclass
class TrainResult:
    """Outcome of `Trainer.fit`: status "ok" (best_metric is usable), "cut" (stopped by the deadline or `stop`,
    best_metric usable), "failed" or "timeout" (the time limit came before an epoch ended).

    `reason` explains a failure ("oom", "non-finite ...", or a traceback); `stopped_by` says what ended the
    run: "max_epochs", "early_stopping", "time_limit", "callback", "deadline" or "stopped". Best-epoch figures
    are kept even when a later epoch failed; the module then holds the best epoch's weights. `epochs_trained`
    counts optimizer steps in epochs (fractional when an epoch was cut short).
    """

    status: str
    reason: str
    stopped_by: str
    best_metric: float | None
    best_loss: float | None
    best_epoch: int | None
    epochs_run: int
    history: list[EpochRecord] = field(default_factory=list)
    total_seconds: float = 0.0
    device: str = "cpu"
    metric: str = "accuracy"
    compile_seconds: float = 0.0  # the first training step under torch.compile, compiling included
    compile_error: str = ""  # why torch.compile was given up for eager training (empty: not asked, or it worked)
    epochs_trained: float = 0.0
    precision: str = "float32"  # what the training steps computed in: "float32", "bfloat16" or "float16"

    @property
    def ok(self) -> bool:
        """Whether the run ended normally with a usable best metric (a cut run has one too: `has_metric`)."""
        return self.status == "ok"

    @property
    def train_images_per_second(self) -> float | None:
        """Training throughput over the epochs in `history` (a validated partial epoch included; validation and
        compiling excluded); None before one."""
        images = sum(r.train_images for r in self.history)
        seconds = sum(r.train_seconds for r in self.history) - self.compile_seconds
        return images / seconds if images and seconds > 0 else None

    @property
    def has_metric(self) -> bool:
        """Whether the run produced a usable best metric: status "ok" or "cut"."""
        return self.status in ("ok", "cut")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (history as a list of dicts)."""
        return asdict(self)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy, mean loss and per-image predictions of a module on one split."""

    accuracy: float
    loss: float
    predictions: np.ndarray
    targets: np.ndarray
    n_classes: int

    def confusion_matrix(self) -> np.ndarray:
        """Counts [true class, predicted class], shape (n_classes, n_classes)."""
        m = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        np.add.at(m, (self.targets, self.predictions), 1)
        return m

    def per_class_accuracy(self) -> np.ndarray:
        """Fraction of each class's images predicted correctly (recall); NaN for absent classes."""
        m = self.confusion_matrix()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(m) / m.sum(axis=1)


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: `device` if given (checked to exist), else CUDA, then MPS, then CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {dev} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {dev} requested but MPS is not available")
    return dev


@functools.cache
def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX-BF16, Sapphire Rapids and later).

    There bf16 autocast trained the generators' nets 1.8-2.3x faster than float32 and, at equal wall-clock, to
    higher accuracy (docs/benchmarks.md, "bf16 autocast on a CPU"); elsewhere bf16 on a CPU is emulated or only
    vector-accelerated and was not measured to pay, so "auto" keeps float32 there. AMX-BF16 must be reported by
    the CPU and the kernel must grant this process the AMX tile state (`torch.cpu._init_amx`, a Linux permission
    request); any failure to ask reads as "no". Cached: the answer cannot change within a process.
    """
    try:
        capabilities = getattr(torch.cpu, "get_capabilities", None)  # recent torch; older ones report AMX tiles
        if capabilities is not None:  # only, which every AMX CPU so far pairs with AMX-BF16
            if not capabilities().get("amx_bf16", False):
                return False
        elif not torch.cpu._is_amx_tile_supported():
            return False
        init = getattr(torch.cpu, "_init_amx", None)  # private: absent means the kernel was not asked, so "no"
        return bool(init()) if init is not None else False
    except Exception:  # a failed probe means float32, never a failed run
        return False


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `mode` on `device` (None = full float32).

    "auto" is bf16 (else fp16) on CUDA, bf16 on a CPU with bf16 matrix units (`cpu_has_bf16_matrix_units`), and
    float32 elsewhere (MPS, other CPUs). "cuda" is bf16 (else fp16) on CUDA and float32 everywhere else: what
    "auto" meant before CPU autocast, kept by run directories recorded then (`LEGACY_AMP`).
    """
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if mode in ("auto", "cuda"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if mode == "auto" and device.type == "cpu" and cpu_has_bf16_matrix_units():
            return torch.bfloat16
        return None
    raise ValueError(f"amp must be one of {AMP_MODES}; got {mode!r}")


def precision_name(dtype: torch.dtype | None) -> str:
    """The name a run records for an autocast dtype (None = no autocast: "float32")."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def lr_factors(schedule: str, total_steps: int, warmup_steps: int = 0) -> list[float]:
    """Multipliers of the peak lr for each of `total_steps` optimizer steps.

    `warmup_steps` > 0 first ramps linearly: step s < W gets (s + 1) / (W + 1), so the first step is low and step W
    is the peak. Then "cosine" decays from 1 to exactly 0 at the last step (the last step trains at lr 0: one step
    in thousands, so that the final weights are those of the end of the decay), "constant" stays at 1, and
    "onecycle" (no `warmup_steps`) is its own warm-up over 30% from 1/25, then cosine down to 1/1e4 of the peak.
    """
    if not 0 <= warmup_steps < max(total_steps, 1):
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}); got {warmup_steps}")
    w = warmup_steps
    warm = (np.arange(w) + 1.0) / (w + 1)
    rest = total_steps - w
    if schedule == "constant":
        f = np.ones(rest)
    elif schedule == "cosine":
        t = np.arange(rest) / max(rest - 1, 1)
        f = 0.5 * (1.0 + np.cos(np.pi * t))
    elif schedule == "onecycle":
        if w:
            raise ValueError("schedule 'onecycle' has its own warm-up: warmup_steps must be 0")
        t = np.arange(total_steps) / max(total_steps, 1)
        up = 1 / 25 + (1 - 1 / 25) * t / 0.3
        down = 1e-4 + (1 - 1e-4) * 0.5 * (1.0 + np.cos(np.pi * (t - 0.3) / (1 - 0.3)))
        f = np.where(t < 0.3, up, down)
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    return [float(v) for v in np.concatenate([warm, f])]


_lr_factors = lr_factors  # the name the trainer's tests used before the warm-up existed


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _dropout_forward(module: nn.Module, gen: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward of a dropout module, drawing its mask from `gen` (element-wise, or per channel for DropoutNd)."""
    p = float(module.p)
    per_channel = type(module) is not nn.Dropout

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not module.training or p == 0.0:
            return x
        if p == 1.0:
            return torch.zeros_like(x)
        shape = (*x.shape[:2], *([1] * (x.ndim - 2))) if per_channel and x.ndim >= 3 else x.shape
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=gen)
        return x * mask * (1.0 / (1.0 - p))

    return forward


@contextlib.contextmanager
def _seeded_dropout(module: nn.Module, seed: int, device: torch.device) -> Iterator[None]:
    """Make the module's `nn.Dropout*` layers draw from a local generator seeded from `seed`, while inside.

    Dropout cannot be given a generator, and seeding torch's global one would change the caller's RNG state
    (and race with a driver thread): instead each dropout layer's forward is replaced by one that takes its
    mask from a local generator, and restored on exit. Randomness elsewhere (e.g. functional dropout inside
    a custom module) still comes from the global generator and is not controlled here.
    """
    patched = [m for m in module.modules() if isinstance(m, _DROPOUTS)]
    gen = None
    if patched:
        try:
            gen = torch.Generator(device=device).manual_seed((seed * 1_000_003 + 0x5EED) % 2**63)
        except RuntimeError:  # a backend without device generators: dropout stays on the global generator
            patched = []
    for m in patched:
        m.forward = _dropout_forward(m, gen)  # type: ignore[method-assign,arg-type]
    try:
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


class _NonFinite(Exception):
    pass


@dataclass
class _Best:
    """The best epoch so far (its metric and weights), what the fit learned about compiling, and its steps."""

    epoch: int | None = None
    metric: float = -math.inf
    loss: float | None = None
    state: dict[str, torch.Tensor] | None = None
    compile_seconds: float = 0.0
    compile_error: str = ""
    steps_done: int = 0  # optimizer steps taken, and steps per epoch: the epochs trained, fractional
    steps_per_epoch: int = 0


class _WeightEMA:
    """An exponential moving average of a module's floating tensors (parameters and BatchNorm running
    statistics) in a shadow copy of the module; integer buffers (BatchNorm's batch count) are copied.

    The decay ramps up as min(decay, (1 + t) / (10 + t)) over the first updates t, so the average does not keep
    the random initialisation for a thousand steps; with decay 0 the shadow equals the weights exactly.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(module)
        for m in self.module.modules():  # the copy must not share the seeded-dropout forwards of the original
            if isinstance(m, _DROPOUTS):
                m.__dict__.pop("forward", None)
        self.module.requires_grad_(False)
        src, dst = module.state_dict(keep_vars=True), self.module.state_dict(keep_vars=True)
        floating = [k for k in src if src[k].is_floating_point()]
        self._avg = [dst[k].detach() for k in floating]
        self._src = [src[k].detach() for k in floating]
        self._copy = [(dst[k].detach(), src[k].detach()) for k in src if not src[k].is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the module's current tensors (after an optimizer step)."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        if self._avg:
            torch._foreach_lerp_(self._avg, self._src, 1.0 - decay)
        for avg, cur in self._copy:
            avg.copy_(cur)


class Trainer:
    """Trains modules on one dataset's training split, validating on a held-out split (never the test set).

    Build it once per search: the data move to the device and the normalisation statistics are computed
    (from the training split) here, then `fit` trains each candidate.
    """

    def __init__(
        self,
        train: ImageSplit,
        val: ImageSplit,
        config: TrainConfig | None = None,
        *,
        device: str | torch.device | None = None,
        n_classes: int | None = None,
        flip_default: bool = False,
        crop_padding_default: int | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.device = select_device(device)
        if train.image_shape != val.image_shape:
            raise ValueError(f"training images are {train.image_shape} but validation images are {val.image_shape}")
        self.n_classes = n_classes or int(max(train.y.max(), val.y.max())) + 1
        self.input_shape = train.image_shape
        self.normalizer = Normalizer.fit(train.x).to(self.device)
        self._x, self._y = train.x.to(self.device), train.y.to(self.device)
        self._vx, self._vy = val.x.to(self.device), val.y.to(self.device)
        cfg = self.config
        pad = cfg.crop_padding if cfg.crop_padding is not None else crop_padding_default
        pad = pad if pad is not None else self.input_shape[1] // 8
        flip = cfg.flip if cfg.flip is not None else flip_default
        self.augmentation = Augmentation(pad, flip, cfg.cutout)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else True

    @classmethod
    def from_dataset(
        cls,
        data: ImageDataset,
        config: TrainConfig | None = None,
        *,
        val_fraction: float = 0.1,
        seed: int | np.random.Generator = 0,
        device: str | torch.device | None = None,
    ) -> Trainer:
        """A trainer on `data`'s training split minus a seeded stratified validation split."""
        train, val = data.split_validation(val_fraction, seed)
        return cls(train, val, config, device=device, n_classes=data.n_classes, flip_default=data.flip_ok,
                   crop_padding_default=data.crop_padding)

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a raw batch to float32 (channels-last where configured)."""
        x = self.normalizer(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _epoch_data(self, perm: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's training images and labels in batch order, augmented, still raw (uint8 stays uint8).

        A few large chunked ops per epoch instead of several small ones per step: each step only slices.
        """
        y = self._y[perm]
        if not self.augmentation.enabled:
            return self._x[perm], y
        _, h, w = self.input_shape
        params = self.augmentation.sample(len(perm), h, w, gen).to(self.device)
        fill = self.normalizer.mean.round() if self._x.dtype == torch.uint8 else self.normalizer.mean
        out = torch.empty((len(perm), *self.input_shape), dtype=self._x.dtype, device=self.device)
        for i in range(0, len(perm), _AUG_CHUNK):
            j = min(i + _AUG_CHUNK, len(perm))
            out[i:j] = self.augmentation(self._x[perm[i:j]], params.slice(i, j), fill)
        return out, y

    def _optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return opt_cls(groups, lr=cfg.base_lr)

    def fit(self, module: nn.Module, *, seed: int = 0, callback: EpochCallback | None = None,
            on_batch: BatchCallback | None = None, deadline: float | None = None,
            stop: Callable[[], bool] | None = None, epochs: int | None = None,
            start: tuple[float, float] | None = None) -> TrainResult:
        """Train `module` in place and return what happened; the module ends with its best epoch's weights.

        `seed` fixes shuffling, augmentation and dropout (same seed on CPU ⇒ identical metrics).
        `callback(record, module)` runs after each epoch (logging, progress); returning True stops training.
        `on_batch(epoch, step, steps, batch_size)` runs after each optimizer step with counts only (no loss: that
        would need a host sync); keep it cheap, e.g. throttled by the clock (progress bars).
        `deadline` is an absolute wall-clock time (`time.time()`, so it means the same in a worker process or a
        Ray actor) and `stop()` a cheap flag; both are checked after every optimizer step (no host sync), and
        an epoch that would not end before the deadline is not started. Either ends training with status "cut"
        and `stopped_by` "deadline" or "stopped": the module keeps its best finished epoch's weights, or, if no
        epoch finished yet, the partial epoch is validated (a history record with `fraction` < 1) so the run
        still has a metric. (`time_limit` keeps its own rule: a partial epoch is never validated.)
        With `ema_decay` the callback is given the averaged module (the one its record's validation metrics are
        of), and the module ends with the best epoch's averaged weights; a partial epoch validated at a cut
        validates the average too. With `compile` the deadline's projection of an epoch leaves the compile time out.
        Nothing raised inside (bad module, NaN, OOM, callback error) escapes: it becomes status "failed".
        `epochs` overrides `config.max_epochs` for this run (the schedule spans it). `start` is the module's own
        (validation loss, accuracy) as given: it then counts as epoch 0, kept (weights and metric) unless an
        epoch beats it — a training that continues a trained model never ends worse than it began.
        """
        history: list[EpochRecord] = []
        n_epochs = self.config.max_epochs if epochs is None else int(epochs)
        if n_epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        best = _Best()
        if start is not None:  # the given weights are a candidate too: epoch 0
            best.epoch, best.loss, best.metric = 0, float(start[0]), float(start[1])
            best.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        status, reason, stopped_by = "ok", "", "max_epochs"
        began = time.perf_counter()
        try:
            with _seeded_dropout(module, seed, self.device):
                stopped_by = self._fit(module, seed, callback, history, best, began, on_batch, deadline, stop,
                                       n_epochs)
        except _OOM_ERRORS:
            status, reason, stopped_by = "failed", "oom", "error"
        except _NonFinite as e:
            status, reason, stopped_by = "failed", str(e), "error"
        except Exception as e:
            oom = isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e))
            status, reason, stopped_by = "failed", "oom" if oom else traceback.format_exc(), "error"
        if reason == "oom" and self.device.type == "cuda":
            torch.cuda.empty_cache()
        if best.state is not None:
            try:
                module.load_state_dict(best.state)  # with ema_decay: the validated average, not the raw weights
            except Exception:
                status, reason = "failed", "could not restore the best weights:\n" + traceback.format_exc()
        if status == "ok" and best.epoch is None:
            status, reason = "timeout", f"time limit of {self.config.time_limit} s reached before an epoch ended"
        elif status == "ok" and stopped_by in ("deadline", "stopped"):
            status = "cut"
        return TrainResult(
            status=status,
            reason=reason,
            stopped_by=stopped_by,
            best_metric=best.metric if best.epoch is not None else None,
            best_loss=best.loss,
            best_epoch=best.epoch,
            epochs_run=len(history),
            history=history,
            total_seconds=time.perf_counter() - began,
            device=str(self.device),
            compile_seconds=best.compile_seconds,
            compile_error=best.compile_error,
            epochs_trained=best.steps_done / best.steps_per_epoch if best.steps_per_epoch else 0.0,
            precision=precision_name(self.amp_dtype),
        )

    def _fit(
        self,
        module: nn.Module,
        seed: int,
        callback: EpochCallback | None,
        history: list[EpochRecord],
        best: _Best,
        start: float,
        on_batch: BatchCallback | None = None,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
        n_epochs: int | None = None,
    ) -> str:
        cfg, dev = self.config, self.device
        module.to(dev)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        gen = torch.Generator().manual_seed(seed)
        opt = self._optimizer(module)
        scaler = torch.amp.GradScaler(dev.type) if self.amp_dtype == torch.float16 else None
        ema = _WeightEMA(module, cfg.ema_decay) if cfg.ema_decay is not None else None
        validated = ema.module if ema is not None else module  # what is validated, kept as best and returned
        net, compiling = (self._compiled(module, best), True) if cfg.compile else (module, False)
        compiling = compiling and net is not module
        n = len(self._y)
        bs = min(cfg.batch_size, n)
        steps = n // bs
        n_epochs = cfg.max_epochs if n_epochs is None else n_epochs
        total = steps * n_epochs
        warm = min(round(cfg.warmup_epochs * steps), total - 1)
        lrs = [cfg.base_lr * f for f in lr_factors(cfg.schedule, total, warm)]
        limit = cfg.time_limit
        step = 0
        best.steps_per_epoch = steps

        def forward_backward(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with _autocast(dev, self.amp_dtype):
                logits = net(x)
            self._check_logits(logits)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            return logits, loss

        for epoch in range(1, n_epochs + 1):
            t0 = time.perf_counter()
            if limit is not None and history and (t0 - start) * epoch / (epoch - 1) > limit:
                return "time_limit"  # the next epoch would not finish in time
            # one epoch's time, from the epochs so far without the one-off compile of the first compiled step
            if deadline is not None and history and (
                    time.time() + (t0 - start - best.compile_seconds) / (epoch - 1) > deadline):
                return "deadline"  # the next epoch would not end before the deadline
            module.train()
            perm = torch.randperm(n, generator=gen)[: steps * bs].to(dev, non_blocking=True)
            xs, ys = self._epoch_data(perm, gen)
            losses = torch.empty(steps, device=dev)
            preds = torch.empty(steps * bs, dtype=torch.int64, device=dev)
            for i in range(steps):
                x, y = self._batch(xs[i * bs : (i + 1) * bs]), ys[i * bs : (i + 1) * bs]
                for group in opt.param_groups:
                    group["lr"] = lrs[step]
                if compiling:  # the first compiled step compiles; if that fails, train eagerly from here on
                    compiling, tc = False, time.perf_counter()
                    buffers = {k: b.detach().clone() for k, b in module.named_buffers()}
                    try:
                        logits, loss = forward_backward(net, x, y)
                    except Exception as e:
                        net = self._compile_failed(module, best, e)
                        with torch.no_grad():  # undo what a half-run compiled forward did to BatchNorm statistics
                            for k, b in module.named_buffers():
                                b.copy_(buffers[k])
                        logits, loss = forward_backward(net, x, y)
                    best.compile_seconds = time.perf_counter() - tc
                else:
                    logits, loss = forward_backward(net, x, y)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                if ema is not None:
                    ema.update()
                step += 1
                best.steps_done = step
                losses[i] = loss.detach()
                torch.argmax(logits.detach(), 1, out=preds[i * bs : (i + 1) * bs])
                if on_batch is not None:
                    on_batch(epoch, i + 1, steps, bs)
                if limit is not None and time.perf_counter() - start > limit:
                    return "time_limit"  # a partial epoch is not validated
                cut = "deadline" if deadline is not None and time.time() >= deadline else (
                    "stopped" if stop is not None and stop() else "")
                if cut:
                    if best.epoch is None:  # nothing validated yet: the partial epoch gives the metric
                        self._validate_partial(validated, validated is not module, epoch, i + 1, steps, losses,
                                               preds, ys, lrs[step - 1], t0, start, history, best)
                    return cut
            train_loss = losses.mean().item()
            if not math.isfinite(train_loss):
                raise _NonFinite(f"non-finite training loss ({train_loss}) in epoch {epoch}")
            train_acc = (preds == ys).sum().item() / (steps * bs)
            t1 = time.perf_counter()
            val_loss, val_acc = self._val_metrics(validated)
            if not math.isfinite(val_loss):
                raise _NonFinite(f"non-finite validation loss ({val_loss}) in epoch {epoch}")
            t2 = time.perf_counter()
            record = EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, lrs[step - 1],
                                 t1 - t0, t2 - t0, t2 - start, steps * bs)
            history.append(record)
            if best.epoch is None or val_acc > best.metric + cfg.min_delta:
                state = {k: v.detach().clone() for k, v in validated.state_dict().items()}
                best.epoch, best.metric, best.loss, best.state = epoch, val_acc, val_loss, state
            if callback is not None and callback(record, validated):
                return "callback"
            if cfg.patience is not None and epoch - best.epoch >= cfg.patience:
                return "early_stopping"
        return "max_epochs"

    def _compiled(self, module: nn.Module, best: _Best) -> nn.Module:
        """`torch.compile(module)` (compiling happens at the first call); the module itself if that refuses."""
        try:
            return torch.compile(module, backend=self.config.compile_backend)
        except Exception as e:
            return self._compile_failed(module, best, e)

    def _compile_failed(self, module: nn.Module, best: _Best, error: Exception) -> nn.Module:
        """Record and warn why compiling failed; the eager module to train instead."""
        def line(e: BaseException) -> str:
            lines = str(e).strip().splitlines()
            return f"{type(e).__name__}: {lines[0] if lines else ''}"

        root: BaseException = error  # dynamo wraps the backend's own error (inner_exception, or __cause__)
        for _ in range(8):
            inner = getattr(root, "inner_exception", None) or root.__cause__
            if not isinstance(inner, BaseException) or inner is root:
                break
            root = inner
        best.compile_error = (line(error) + ("" if root is error else f" ({line(root)})"))[:500]
        warnings.warn(f"torch.compile (backend {self.config.compile_backend!r}) failed, training without it: "
                      f"{best.compile_error}", RuntimeWarning, stacklevel=3)
        return module

    def _validate_partial(self, validated: nn.Module, keep: bool, epoch: int, done: int, steps: int,
                          losses: torch.Tensor, preds: torch.Tensor, ys: torch.Tensor, lr: float, t0: float,
                          start: float, history: list[EpochRecord], best: _Best) -> None:
        """Validate the weights of an epoch cut after `done` of `steps` batches: the run's only metric.

        `validated` is what a finished epoch would validate (the EMA shadow with `ema_decay`, else the trained
        module); `keep` copies its weights as the best state (the shadow's, which `fit` loads into the module),
        else the trained module already holds them."""
        bs = len(preds) // steps
        train_loss = losses[:done].mean().item()
        train_acc = (preds[: done * bs] == ys[: done * bs]).sum().item() / (done * bs)
        t1 = time.perf_counter()
        val_loss, val_acc = self._val_metrics(validated)
        if not math.isfinite(train_loss) or not math.isfinite(val_loss):
            raise _NonFinite(f"non-finite loss ({train_loss}, validation {val_loss}) in partial epoch {epoch}")
        t2 = time.perf_counter()
        history.append(EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, lr, t1 - t0, t2 - t0,
                                   t2 - start, train_images=done * bs, fraction=done / steps))
        state = {k: v.detach().clone() for k, v in validated.state_dict().items()} if keep else None
        best.epoch, best.metric, best.loss, best.state = epoch, val_acc, val_loss, state

    def _check_logits(self, logits: torch.Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.n_classes:
            raise ValueError(
                f"the module must map N×C×H×W images to N×{self.n_classes} logits; got output {tuple(logits.shape)}"
            )

    def validate(self, module: nn.Module) -> tuple[float, float]:
        """(mean loss, accuracy) of `module` on the validation split, e.g. where a morphed child starts."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self._val_metrics(module)

    def _val_metrics(self, module: nn.Module) -> tuple[float, float]:
        loss, correct = _run_eval(module, self._vx, self._vy, self._batch, self.device, None,
                                  self.config.eval_batch_size, None)  # float32: see the module docstring
        n = len(self._vy)
        return loss.item() / n, correct.item() / n

    def evaluate(self, module: nn.Module, data: ImageSplit) -> EvalResult:
        """Evaluate `module` on `data` with this trainer's normalisation and device, in float32 (as validation)."""
        return evaluate(module, data, self.normalizer, device=self.device, batch_size=self.config.eval_batch_size,
                        n_classes=self.n_classes, channels_last=self.channels_last)


def _run_eval(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_size: int,
    predictions: list[torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and number correct, as device tensors (no host sync); appends predictions if asked."""
    was_training = module.training
    module.eval()
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.inference_mode():
        for i in range(0, len(y), batch_size):
            xb = prepare(x[i : i + batch_size].to(device, non_blocking=True))
            yb = y[i : i + batch_size].to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                logits = module(xb)
            logits = logits.float()
            loss += F.cross_entropy(logits, yb, reduction="sum")
            pred = logits.argmax(1)
            correct += (pred == yb).sum()
            if predictions is not None:
                predictions.append(pred)
    module.train(was_training)
    return loss, correct


def evaluate(
    module: nn.Module,
    data: ImageSplit,
    normalizer: Normalizer,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    amp: str = "off",
    n_classes: int | None = None,
    channels_last: bool | None = None,
) -> EvalResult:
    """Accuracy, mean cross-entropy and per-image predictions of `module` on `data` (eval mode, no grad).

    Use the training data's `normalizer` (e.g. `Trainer.normalizer`). `device=None` uses the module's device.
    `channels_last=None` is on, as in the trainer (whose evaluation speed the time budget's test allowance is
    measured at): the module's weights and the batches both go channels-last; the results are the same.
    """
    if device is None:
        p = next(module.parameters(), None)
        dev = p.device if p is not None else select_device()
    else:
        dev = select_device(device)
    module.to(dev)
    channels_last = True if channels_last is None else channels_last
    if channels_last:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    norm = normalizer.to(dev)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = norm(x)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    preds: list[torch.Tensor] = []
    loss, correct = _run_eval(module, data.x, data.y, prepare, dev, resolve_amp(amp, dev), batch_size, preds)
    n = len(data)
    k = n_classes if n_classes is not None else int(data.y.max()) + 1
    predictions = torch.cat(preds).cpu().numpy()
    k = max(k, int(predictions.max()) + 1)
    return EvalResult(correct.item() / n, loss.item() / n, predictions, data.y.cpu().numpy(), k)
