"""An exact GP over architectures (GPyTorch): hyperparameters by marginal likelihood, fast cached prediction.

Targets are standardised; the constant mean, the kernel's lengthscale (if it has one), the outputscale and the
noise are fitted by L-BFGS on the exact marginal log-likelihood (at most ``fit_steps`` iterations), from the
same starting point every time, so a fit is a deterministic function of the data. After the fit the posterior
is kept as a Cholesky factor of ``K + σ²I`` (computed once, with jitter-and-retry: every observation is kept,
a failed factorisation raises instead of dropping data) and predictions are two triangular solves, cheap
enough to score thousands of candidate architectures inside the acquisition optimizer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import gpytorch
import numpy as np
import torch
from gpytorch.constraints import GreaterThan
from linear_operator.utils.errors import NotPSDError

from morphnas.searcher.cache import ArchitectureCache
from morphnas.searcher.kernels import ArchitectureKernel, make_kernel

JITTERS = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


class GPError(RuntimeError):
    """The GP cannot be fitted or factorised (the message says why); no data is ever dropped instead."""


@dataclass
class Posterior:
    """Posterior of the objective at a batch of architectures, in the metric's own units."""

    mean: np.ndarray
    std: np.ndarray
    cov: np.ndarray | None = None

    def sample(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """``n`` draws, shape (n, batch): joint when the covariance is known, else independent."""
        z = rng.standard_normal((n, len(self.mean)))
        if self.cov is None:
            return self.mean + z * self.std
        return self.mean + z @ robust_cholesky(self.cov, what="posterior covariance")[0].T


def robust_cholesky(matrix: np.ndarray, what: str = "kernel matrix") -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of ``matrix``, adding jitter (relative to its mean diagonal) only if needed."""
    scale = float(np.mean(np.diag(matrix))) if len(matrix) else 1.0
    scale = scale if np.isfinite(scale) and scale > 0 else 1.0
    tm = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float64))
    eye = torch.eye(len(matrix), dtype=torch.float64)
    for jitter in JITTERS:
        factor, info = torch.linalg.cholesky_ex(tm + (jitter * scale) * eye if jitter else tm)
        if int(info) != 0:
            continue
        if jitter > 1e-6:
            warnings.warn(f"{what} needed a jitter of {jitter:g} (relative) to factorise", RuntimeWarning,
                          stacklevel=3)
        return factor.numpy(), jitter * scale
    raise GPError(f"{what} ({len(matrix)}x{len(matrix)}) is not positive definite even with a relative jitter of "
                  f"{JITTERS[-1]:g}; no observation is dropped silently: check the kernel")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads in the CALLING thread only (OpenMP's setting is per thread),
    restoring the previous value; ``None`` leaves the setting alone.

    The GP's matrices are small (n <= ~1000): threads buy nothing there, and when a trial trains at the same
    time (the search chooses the next architecture while the current one trains) two spinning thread teams on
    the same cores make each GP step ~25x slower (measured: docs/benchmarks.md, Searcher).
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _IndexGP(gpytorch.models.ExactGP):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, likelihood: gpytorch.likelihoods.GaussianLikelihood,
                 kernel: ArchitectureKernel) -> None:
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(kernel, outputscale_constraint=GreaterThan(1e-4))

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class ArchitectureGP:
    """Exact GP regression of a metric over architectures addressed by ``cache`` indices.

    ``kernel``: a registered kernel name (options in ``kernel_options``) or an ``ArchitectureKernel``.
    ``noise``: a fixed noise variance in standardised units, or None to learn it (>= ``min_noise``).
    ``threads``: torch threads for the GP's work in the calling thread (see ``torch_threads``; None: as is).
    """

    def __init__(self, cache: ArchitectureCache, kernel: str | ArchitectureKernel = "bourgain",
                 kernel_options: dict[str, Any] | None = None, noise: float | None = None,
                 min_noise: float = 1e-6, fit_steps: int = 30, threads: int | None = 1) -> None:
        self.cache = cache
        if isinstance(kernel, ArchitectureKernel):
            self.kernel = kernel
        else:
            self.kernel = make_kernel(kernel, cache, **(kernel_options or {}))
        self.kernel.constrain()
        self.noise = noise
        self.min_noise = float(min_noise)
        self.fit_steps = int(fit_steps)
        self.threads = threads
        self._x = np.zeros(0, dtype=np.int64)
        self._y = np.zeros(0)
        self._y_mean, self._y_std = 0.0, 1.0
        self._spread = False  # whether the targets had a spread (a noise can be fitted to them)
        self._model: _IndexGP | None = None
        self._chol: np.ndarray | None = None
        self._alpha: np.ndarray | None = None
        self.jitter = 0.0
        self.hyperparameters: dict[str, float] = {}

    # ------------------------------------------------------------------ fitting
    @property
    def n_train(self) -> int:
        """Number of training observations (repeats and fantasies included)."""
        return len(self._x)

    @property
    def noise_std(self) -> float:
        """The fitted observation noise as a standard deviation in metric units: 0 before a fit, and 0 when every
        target was equal (there was no spread to fit a noise to)."""
        if not self.hyperparameters or not self._spread:
            return 0.0
        return float(np.sqrt(self.hyperparameters["noise"]) * self._y_std)

    @property
    def train_indices(self) -> np.ndarray:
        """Cache indices of the training observations, in fit order."""
        return self._x.copy()

    def fit(self, indices: Sequence[int] | np.ndarray, y: Sequence[float] | np.ndarray,
            optimize: bool = True, init: dict[str, list[float]] | None = None) -> ArchitectureGP:
        """Fit to metrics ``y`` of architectures ``indices`` (repeats allowed).

        ``optimize=False`` keeps the current hyperparameters (used to condition on fantasy values); ``init``
        (``raw_hyperparameters()`` of an earlier fit) starts the optimisation there instead of the defaults.
        """
        with torch_threads(self.threads):
            return self._fit(indices, y, optimize, init)

    def raw_hyperparameters(self) -> dict[str, list[float]]:
        """The fitted raw (unconstrained) parameters, JSON-able: a warm start for a later ``fit``."""
        if self._model is None:
            return {}
        return {name: p.detach().reshape(-1).tolist() for name, p in self._model.named_parameters()}

    def _fit(self, indices: Sequence[int] | np.ndarray, y: Sequence[float] | np.ndarray,
             optimize: bool, init: dict[str, list[float]] | None) -> ArchitectureGP:
        x = np.asarray(indices, dtype=np.int64).ravel()
        yv = np.asarray(y, dtype=np.float64).ravel()
        if len(x) != len(yv):
            raise ValueError(f"{len(x)} architectures but {len(yv)} targets")
        if len(x) == 0:
            raise GPError("cannot fit a GP to no observations")
        if not np.all(np.isfinite(yv)):
            raise GPError(f"non-finite targets at positions {np.flatnonzero(~np.isfinite(yv)).tolist()}")
        if x.min() < 0 or x.max() >= len(self.cache):
            raise IndexError(f"training indices must be cache members (0..{len(self.cache) - 1})")
        self._x, self._y = x, yv
        self._y_mean = float(yv.mean())
        spread = float(yv.std())
        self._spread = spread > 1e-12
        self._y_std = spread if self._spread else 1.0
        self.kernel.prepare(x)
        xt = torch.from_numpy(x.astype(np.float64))[:, None]
        yt = torch.from_numpy((yv - self._y_mean) / self._y_std)
        if self._model is None or optimize:
            self._model = self._new_model(xt, yt)
            if init:
                with torch.no_grad():
                    for name, p in self._model.named_parameters():
                        if name in init and len(init[name]) == p.numel():
                            p.copy_(torch.tensor(init[name], dtype=p.dtype).reshape(p.shape))
            if optimize and len(x) > 1:
                self._optimize()
        else:
            self._model.set_train_data(xt, yt, strict=False)
        self._factorise()
        return self

    def _new_model(self, xt: torch.Tensor, yt: torch.Tensor) -> _IndexGP:
        if self.noise is None:
            likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(self.min_noise))
            likelihood.noise = 1e-2
        else:
            likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(0.0))
            likelihood.noise = float(self.noise)
            likelihood.raw_noise.requires_grad_(False)
        model = _IndexGP(xt, yt, likelihood, self.kernel).double()
        model.mean_module.constant.data.zero_()
        model.covar_module.outputscale = 1.0
        self.kernel.reset()
        return model

    def _optimize(self) -> None:
        """L-BFGS (strong Wolfe line search) on the exact marginal log-likelihood, keeping the best point seen.

        Measured against 50 Adam steps: the same optimum in ~17 evaluations instead of 50 (docs/benchmarks.md).
        A failed Cholesky or a non-finite loss stops the search at the best hyperparameters found so far.
        """
        model = self._model
        assert model is not None
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.fit_steps, max_eval=2 * self.fit_steps,
                                line_search_fn="strong_wolfe")
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        x, y = model.train_inputs[0], model.train_targets
        best: list[Any] = [math.inf, [p.detach().clone() for p in params]]

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = -mll(model(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite marginal likelihood")
            if loss.item() < best[0]:
                best[0], best[1] = loss.item(), [p.detach().clone() for p in params]
            loss.backward()
            return loss

        with gpytorch.settings.max_cholesky_size(10**7), gpytorch.settings.cholesky_max_tries(6):
            try:
                opt.step(closure)
            except (NotPSDError, FloatingPointError):
                pass  # keep the best hyperparameters found so far
        with torch.no_grad():
            for p, v in zip(params, best[1], strict=True):
                p.copy_(v)
        model.eval()

    def _hyper(self) -> tuple[float, float, float, float]:
        model = self._model
        assert model is not None
        with torch.no_grad():
            scale = float(model.covar_module.outputscale)
            noise = float(model.likelihood.noise)
            const = float(model.mean_module.constant)
            # one lengthscale, or the geometric mean of an ARD kernel's
            ls = (float(self.kernel.lengthscale.log().mean().exp()) if self.kernel.has_lengthscale
                  else float("nan"))
        return scale, noise, const, ls

    def _factorise(self) -> None:
        scale, noise, const, ls = self._hyper()
        self.hyperparameters = {"outputscale": scale, "noise": noise, "mean": const}
        if self.kernel.has_lengthscale:
            self.hyperparameters["lengthscale"] = ls
        xt = torch.from_numpy(self._x.astype(np.float64))[:, None]
        with torch.no_grad():
            k = scale * self.kernel.forward(xt, xt).detach().numpy()
        k = 0.5 * (k + k.T) + noise * np.eye(len(k))
        self._chol, self.jitter = robust_cholesky(k)
        resid = (self._y - self._y_mean) / self._y_std - const
        self._alpha = _cho_solve(self._chol, resid)

    # ------------------------------------------------------------------ prediction
    def posterior(self, indices: Sequence[int] | np.ndarray, full_cov: bool = False) -> Posterior:
        """Posterior mean and std (and covariance if ``full_cov``) of the metric at ``indices``."""
        with torch_threads(self.threads):
            return self._posterior(indices, full_cov)

    def _posterior(self, indices: Sequence[int] | np.ndarray, full_cov: bool) -> Posterior:
        if self._chol is None or self._alpha is None:
            raise GPError("the GP is not fitted: call fit(indices, y) first")
        idx = np.asarray(indices, dtype=np.int64).ravel()
        scale, _noise, const, _ls = self._hyper()
        xs = torch.from_numpy(idx.astype(np.float64))[:, None]
        xt = torch.from_numpy(self._x.astype(np.float64))[:, None]
        with torch.no_grad():
            k_st = scale * self.kernel.forward(xs, xt).numpy()
            if full_cov:
                k_ss = scale * self.kernel.forward(xs, xs).numpy()
            else:
                k_ss = scale * self.kernel.forward(xs, xs, diag=True).numpy()
        mean = const + k_st @ self._alpha
        v = _solve_lower(self._chol, k_st.T)
        cov = None
        if full_cov:
            cov = k_ss - v.T @ v
            cov = 0.5 * (cov + cov.T) * self._y_std**2
            var = np.clip(np.diag(cov), 0.0, None)
        else:
            var = np.clip(k_ss - (v * v).sum(axis=0), 0.0, None) * self._y_std**2
        return Posterior(mean * self._y_std + self._y_mean, np.sqrt(var), cov)

    def predict(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the metric at ``indices``."""
        post = self.posterior(indices)
        return post.mean, post.std

    def gpytorch_predict(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same prediction through GPyTorch's own posterior (slower; a cross-check of ``predict``)."""
        model = self._model
        if model is None:
            raise GPError("the GP is not fitted: call fit(indices, y) first")
        model.eval()
        xs = torch.from_numpy(np.asarray(indices, dtype=np.float64).ravel())[:, None]
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(10**7), \
                gpytorch.settings.fast_pred_var(False):
            dist = model(xs)
            mean = dist.mean.numpy() * self._y_std + self._y_mean
            std = dist.variance.clamp_min(0).sqrt().numpy() * self._y_std
        return mean, std


def _solve_lower(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))
    squeeze = tb.ndim == 1
    out = torch.linalg.solve_triangular(torch.from_numpy(chol), tb[:, None] if squeeze else tb, upper=False)
    return (out[:, 0] if squeeze else out).numpy()


def _cho_solve(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))[:, None]
    return torch.cholesky_solve(tb, torch.from_numpy(chol), upper=False)[:, 0].numpy()
