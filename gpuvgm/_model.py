"""The variational mixture, written once: priors, M-step, lower bound, weights, frames.

Every backend computes only the O(rows x K) passes (the E-step statistics and the transform); all
of the Dirichlet-process variational Bayes lives here, in float64 on K-sized arrays, vectorised
over columns. The formulas are scikit-learn's ``BayesianGaussianMixture`` with
``covariance_type="full"``, ``weight_concentration_prior_type="dirichlet_process"`` and one feature
(``sklearn/mixture/_bayesian_mixture.py``; Bishop, *PRML*, §10.2), so parity can be checked term by
term.

Frames. Each column is fitted in a *working frame* ``x' = (x - shift) / scale`` chosen by the
pre-pass (shift = column mean, scale = column standard deviation), so that ``S2 - S1**2 / N`` keeps
its digits on columns such as Unix timestamps (1.7e9 +- 10). The priors and ``reg_covar`` are
converted into that frame; the fitted means and covariances are converted back to data units.
Responsibilities, ``mean_precision_``, ``degrees_of_freedom_`` and the stick-breaking parameters do
not depend on the frame.

This module imports NumPy and SciPy only (DESIGN.md §4). SciPy's special functions are
imported by the three functions that evaluate them (``scipy.special`` takes 0.2 s to import),
so loading a model file or ``gpuvgm info`` does not pay for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ._errors import DataError, ParameterError

# scikit-learn adds 10 * eps to every component's count (``_estimate_gaussian_parameters``).
_NK_EPS = 10.0 * np.finfo(np.float64).eps
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class Moments:
    """Per-column moments gathered by the pre-pass, mergeable across chunks (Chan et al. 1979).

    All arrays have shape (n_columns,).
    """

    count: np.ndarray  # non-null values
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from the mean
    minimum: np.ndarray
    maximum: np.ndarray
    n_null: np.ndarray

    @classmethod
    def empty(cls, n_columns: int) -> Moments:
        z = np.zeros(n_columns)
        return cls(
            count=z.copy(),
            mean=z.copy(),
            m2=z.copy(),
            minimum=np.full(n_columns, np.inf),
            maximum=np.full(n_columns, -np.inf),
            n_null=z.copy(),
        )

    def __add__(self, other: Moments) -> Moments:
        n = self.count + other.count
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        mean = np.where(n > 0, self.mean + delta * (other.count / safe), 0.0)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / safe)
        return Moments(
            count=n,
            mean=mean,
            m2=np.where(n > 0, m2, 0.0),
            minimum=np.minimum(self.minimum, other.minimum),
            maximum=np.maximum(self.maximum, other.maximum),
            n_null=self.n_null + other.n_null,
        )

    @property
    def variance(self) -> np.ndarray:
        """Sample variance with ``ddof=1`` (``np.cov`` in scikit-learn's prior); 0 below 2 rows."""
        return np.where(self.count > 1, self.m2 / np.maximum(self.count - 1.0, 1.0), 0.0)


@dataclass(frozen=True)
class Priors:
    """Priors of every column, already in each column's working frame. Arrays of shape (n_columns,).

    ``shift`` and ``scale`` define the frame: ``x' = (x - shift) / scale``.
    """

    shift: np.ndarray
    scale: np.ndarray
    weight_concentration: float  # gamma_0
    mean_precision: float  # beta_0
    degrees_of_freedom: float  # nu_0
    mean: np.ndarray  # m_0 in the working frame
    covariance: np.ndarray  # W_0^{-1} in the working frame
    reg_covar: np.ndarray  # reg_covar / scale**2

    @classmethod
    def from_data_units(
        cls,
        *,
        shift: np.ndarray,
        scale: np.ndarray,
        weight_concentration: float,
        mean_precision: float,
        degrees_of_freedom: float,
        mean: np.ndarray,
        covariance: np.ndarray,
        reg_covar: float,
    ) -> Priors:
        shift = np.asarray(shift, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        return cls(
            shift=shift,
            scale=scale,
            weight_concentration=float(weight_concentration),
            mean_precision=float(mean_precision),
            degrees_of_freedom=float(degrees_of_freedom),
            mean=(np.asarray(mean, dtype=np.float64) - shift) / scale,
            covariance=np.asarray(covariance, dtype=np.float64) / scale**2,
            reg_covar=float(reg_covar) / scale**2,
        )

    def select(self, columns: np.ndarray) -> Priors:
        """The priors of a subset of columns."""
        return Priors(
            shift=self.shift[columns],
            scale=self.scale[columns],
            weight_concentration=self.weight_concentration,
            mean_precision=self.mean_precision,
            degrees_of_freedom=self.degrees_of_freedom,
            mean=self.mean[columns],
            covariance=self.covariance[columns],
            reg_covar=self.reg_covar[columns],
        )


def working_frame(moments: Moments, reg_covar: float) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, scale)`` per column: the column mean and a scale that keeps ``x'`` of order one.

    The scale is the standard deviation, but never below ``sqrt(reg_covar)``: below it the
    regularisation dominates every component's variance anyway, and it keeps
    ``reg_covar / scale**2`` finite on constant columns.
    """
    std = np.sqrt(moments.variance)
    scale = np.maximum(std, math.sqrt(reg_covar)) if reg_covar > 0 else std
    scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
    return moments.mean.copy(), scale


@dataclass(frozen=True)
class Stats:
    """Sufficient statistics of one pass (or one chunk) over the data, in the working frame.

    ``nk``, ``s1``, ``s2``: arrays of shape (n_columns, K) holding ``sum r_k``, ``sum r_k x'`` and
    ``sum r_k x'**2``; ``h``: (n_columns,) ``sum_i sum_k r_ik log r_ik``; ``log_prob``:
    (n_columns,) ``sum_i logsumexp_k l_k(x'_i)`` in the working frame; ``count``: (n_columns,)
    non-null rows seen. Statistics add, so chunks, threads and Dask partitions reduce with ``+``.
    """

    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    h: np.ndarray
    log_prob: np.ndarray
    count: np.ndarray

    @classmethod
    def zeros(cls, n_columns: int, n_components: int) -> Stats:
        shape = (n_columns, n_components)
        return cls(
            nk=np.zeros(shape),
            s1=np.zeros(shape),
            s2=np.zeros(shape),
            h=np.zeros(n_columns),
            log_prob=np.zeros(n_columns),
            count=np.zeros(n_columns),
        )

    def __add__(self, other: Stats) -> Stats:
        return Stats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self, factor: float | np.ndarray) -> Stats:
        """The statistics multiplied by ``factor`` (a sample standing in for all rows): a number,
        or one per column, shape (n_columns,)."""
        f = np.asarray(factor, dtype=np.float64)
        f2 = f[:, None] if f.ndim == 1 else f
        return Stats(
            nk=self.nk * f2,
            s1=self.s1 * f2,
            s2=self.s2 * f2,
            h=self.h * f,
            log_prob=self.log_prob * f,
            count=self.count * f,
        )


@dataclass(frozen=True)
class Posterior:
    """Variational parameters of every column; arrays of shape (n_columns, K).

    Names follow scikit-learn: ``weight_concentration`` is the pair ``(a, b)`` of the Beta
    stick-breaking posteriors, ``mean_precision`` is beta_k, ``means`` and ``covariances`` are in
    the working frame (``covariances`` normalised by ``degrees_of_freedom`` as in scikit-learn).
    """

    a: np.ndarray
    b: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray

    def select(self, columns: np.ndarray) -> Posterior:
        return Posterior(*(getattr(self, f.name)[columns] for f in fields(self)))

    def replace_columns(self, columns: np.ndarray, other: Posterior) -> Posterior:
        """A copy with ``columns`` taken from ``other`` (whose rows are those columns)."""
        out = {}
        for f in fields(self):
            arr = getattr(self, f.name).copy()
            arr[columns] = getattr(other, f.name)
            out[f.name] = arr
        return Posterior(**out)


@dataclass(frozen=True)
class EStepParams:
    """What a backend needs for the E-step and the posterior: ``3K + 2`` numbers per column.

    ``columns``: (n,) int64 positions of the columns in the chunk; ``shift``/``scale``: (n,);
    ``means``, ``precisions`` (``1 / s**2``) and ``log_consts`` (C_k, DESIGN.md §2): (n, K), all in
    the working frame, so that ``l_k(x') = log_consts_k - 0.5 * precisions_k * (x' - means_k)**2``.
    """

    columns: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    means: np.ndarray
    precisions: np.ndarray
    log_consts: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.means.shape[1])


def m_step(stats: Stats, priors: Priors) -> Posterior:
    """Variational M-step from sufficient statistics (scikit-learn ``_m_step``; Bishop 10.58-10.63).

    Parameters
    ----------
    stats : Stats
        Statistics of shape (n_columns, K) in the working frame.
    priors : Priors
        Priors of the same columns.
    """
    n = stats.nk
    nk = n + _NK_EPS  # (C, K)
    xk = stats.s1 / nk
    # sum_i r_ik (x_i - xk)**2, expanded; exact also when nk carries the 10 eps.
    sq = stats.s2 - xk * stats.s1 - xk * (stats.s1 - xk * n)
    sk = np.maximum(sq, 0.0) / nk + priors.reg_covar[:, None]

    gamma0 = priors.weight_concentration
    # b_k = gamma_0 + sum_{j>k} N_j  (reverse cumulative sum shifted by one, 0 for the last)
    tail = np.cumsum(nk[:, ::-1], axis=1)[:, ::-1]
    b = gamma0 + np.concatenate([tail[:, 1:], np.zeros((nk.shape[0], 1))], axis=1)
    a = 1.0 + nk

    beta0 = priors.mean_precision
    beta = beta0 + nk
    m0 = priors.mean[:, None]
    means = (beta0 * m0 + nk * xk) / beta
    nu = priors.degrees_of_freedom + nk
    diff = xk - m0
    cov = (priors.covariance[:, None] + nk * sk + nk * beta0 / beta * diff**2) / nu
    return Posterior(
        a=a, b=b, mean_precision=beta, means=means, degrees_of_freedom=nu, covariances=cov
    )


def expected_log_weights(post: Posterior) -> np.ndarray:
    """E[log pi_k] under the stick-breaking posterior, shape (n_columns, K) (sklearn)."""
    from scipy.special import digamma

    digamma_sum = digamma(post.a + post.b)
    log_v = digamma(post.a) - digamma_sum
    log_1mv = digamma(post.b) - digamma_sum
    prefix = np.cumsum(log_1mv, axis=1) - log_1mv  # sum_{j<k}
    return log_v + prefix


def estep_params(post: Posterior, priors: Priors, columns: np.ndarray) -> EStepParams:
    """The per-component constants the E-step kernels evaluate (DESIGN.md §2).

    ``C_k = E[log pi_k] - 0.5 log(2 pi) - 0.5 log s2_k - 0.5 log nu_k
    + 0.5 (log 2 + psi(nu_k / 2)) - 0.5 / beta_k``; sklearn ``_estimate_log_prob`` +
    ``_estimate_log_weights`` for one feature.
    """
    from scipy.special import digamma

    nu = post.degrees_of_freedom
    log_consts = (
        expected_log_weights(post)
        - 0.5 * _LOG_2PI
        - 0.5 * np.log(post.covariances)
        - 0.5 * np.log(nu)
        + 0.5 * (_LOG_2 + digamma(0.5 * nu) - 1.0 / post.mean_precision)
    )
    return EStepParams(
        columns=np.asarray(columns, dtype=np.int64),
        shift=priors.shift,
        scale=priors.scale,
        means=np.ascontiguousarray(post.means),
        precisions=np.ascontiguousarray(1.0 / post.covariances),
        log_consts=np.ascontiguousarray(log_consts),
    )


def lower_bound(h: np.ndarray, post: Posterior, priors: Priors) -> np.ndarray:
    """scikit-learn's ``_compute_lower_bound`` per column, summed over rows, in data units.

    Parameters
    ----------
    h : array of shape (n_columns,)
        ``sum r log r`` from the E-step that preceded the M-step giving ``post``.
    """
    from scipy.special import betaln, gammaln

    nu = post.degrees_of_freedom
    log_cov = np.log(post.covariances) + 2.0 * np.log(priors.scale)[:, None]  # data units
    log_det_chol = -0.5 * log_cov - 0.5 * np.log(nu)
    log_wishart = -(nu * log_det_chol + nu * 0.5 * _LOG_2 + gammaln(0.5 * nu))
    log_norm_weight = -np.sum(betaln(post.a, post.b), axis=1)
    return (
        -h
        - np.sum(log_wishart, axis=1)
        - log_norm_weight
        - 0.5 * np.sum(np.log(post.mean_precision), axis=1)
    )


def mixture_weights(post: Posterior) -> np.ndarray:
    """Expected stick-breaking weights, shape (n_columns, K) (sklearn ``_set_parameters``)."""
    total = post.a + post.b
    tmp = post.b / total
    ones = np.ones((tmp.shape[0], 1))
    w = post.a / total * np.concatenate([ones, np.cumprod(tmp[:, :-1], axis=1)], axis=1)
    return w / w.sum(axis=1, keepdims=True)


def data_units(post: Posterior, priors: Priors) -> tuple[np.ndarray, np.ndarray]:
    """``(means, covariances)`` of shape (n_columns, K) converted from the working frame."""
    scale = priors.scale[:, None]
    return post.means * scale + priors.shift[:, None], post.covariances * scale**2


def from_data_units(
    means: np.ndarray, covariances: np.ndarray, priors: Priors
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`data_units`: ``(means, covariances)`` in the working frame."""
    scale = priors.scale[:, None]
    return (means - priors.shift[:, None]) / scale, covariances / scale**2


@dataclass(frozen=True)
class TransformParams:
    """What a backend needs for mode-specific normalization of some columns.

    ``estep`` gives the posterior over all K components; ``means`` and ``stds`` (n, K) are in data
    units; ``valid`` (n, K) marks the components a value may be assigned to (weight above the
    threshold); ``column_keys`` (n,) are the columns' positions in the fitted model, which key the
    counter-based sampler together with ``seed`` and the global row index. ``clip`` is the bound on
    ``|alpha|`` (``inf`` for none). ``sample`` picks the component at random from the posterior
    (RDT/CTGAN) instead of the argmax.
    """

    estep: EStepParams
    means: np.ndarray
    stds: np.ndarray
    valid: np.ndarray
    column_keys: np.ndarray
    seed: int
    sample: bool
    clip: float

    @property
    def n_valid(self) -> np.ndarray:
        return self.valid.sum(axis=1)


@dataclass(frozen=True)
class FitHistory:
    """How a fit went, per column: ``n_iter``, ``converged``, ``lower_bound`` (n_columns,), the
    lower bound at every iteration (``lower_bounds``, None when unknown) and the fit report."""

    n_iter: np.ndarray
    converged: np.ndarray
    lower_bound: np.ndarray
    lower_bounds: list[np.ndarray] | None = None
    report: dict[str, Any] | None = None


@dataclass(frozen=True)
class FittedMixture:
    """The fitted state of a :class:`gpuvgm.VGM`: everything its attributes and its transform
    are computed from, as one value. Fit, ``from_sklearn`` and loading a model file all build
    it through this constructor, so the derived arrays and the validity rule exist once.

    ``columns`` are the column names in order, ``named`` whether they came from the data
    (transform-time input is then checked by name), ``backend`` the backend that fitted it,
    ``seed`` the key of the component sampler, ``weight_threshold`` the validity threshold.
    ``moments`` is None for a mixture converted from scikit-learn.

    Derived (data units, shape (n_columns, K)): ``means``, ``covariances``, ``precisions``,
    ``weights`` and ``valid``: a component is valid when its weight exceeds
    ``weight_threshold``, and the heaviest one always is (RDT).
    """

    priors: Priors
    posterior: Posterior
    moments: Moments | None
    columns: Sequence[str]
    named: bool
    backend: str
    seed: int
    weight_threshold: float
    history: FitHistory
    means: np.ndarray = field(init=False, repr=False)
    covariances: np.ndarray = field(init=False, repr=False)
    precisions: np.ndarray = field(init=False, repr=False)
    weights: np.ndarray = field(init=False, repr=False)
    valid: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        means, covariances = data_units(self.posterior, self.priors)
        weights = mixture_weights(self.posterior)
        valid = weights > self.weight_threshold
        valid[np.arange(valid.shape[0]), np.argmax(weights, axis=1)] = True
        derived = {
            "columns": list(self.columns),
            "means": means,
            "covariances": covariances,
            "precisions": 1.0 / covariances,
            "weights": weights,
            "valid": valid,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def estep_params(self) -> EStepParams:
        """The E-step parameters of every column."""
        return estep_params(self.posterior, self.priors, np.arange(self.n_columns))


def transform_params(fitted: FittedMixture, selection: str, clip: float | None) -> TransformParams:
    """What a backend needs to transform (and invert) every column of ``fitted``.

    ``selection`` is ``"sample"`` or ``"argmax"``; ``clip`` the bound on ``|alpha|`` (None: none).
    """
    return TransformParams(
        estep=fitted.estep_params(),
        means=fitted.means,
        stds=np.sqrt(fitted.covariances),
        valid=fitted.valid,
        column_keys=np.arange(fitted.n_columns, dtype=np.int64),
        seed=fitted.seed,
        sample=selection == "sample",
        clip=math.inf if clip is None else float(clip),
    )


def initial_stats(
    sample: np.ndarray, init_params: str, n_components: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, s1, s2)`` of shape (K,) that start one column's fit from its sample ``sample``
    (working frame) without a pass over the data (scikit-learn's ``_initialize``).

    ``"random"``: random responsibilities of the sample rows (the caller scales them to all
    rows); ``"random_from_data"``: ``n_components`` sample rows as centres, each with a count of
    one. (``"k-means++"`` picks its rows elsewhere, in the seeding frame, and passes them here
    as ``"random_from_data"`` would use them, through :func:`centres_stats`.)
    """
    if init_params == "random":
        resp = rng.uniform(size=(sample.size, n_components))
        resp /= resp.sum(axis=1, keepdims=True)
        return resp.sum(axis=0), resp.T @ sample, resp.T @ (sample * sample)
    return centres_stats(sample, rng.choice(sample.size, size=n_components, replace=False))


def centres_stats(sample: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, s1, s2)`` of one pseudo-row per centre ``sample[idx]``."""
    return np.ones(idx.size), sample[idx], sample[idx] ** 2


def sklearn_mixtures(estimators: Any) -> list[Any]:
    """``estimators`` (one or a list) as a list, checked to be fitted one-feature
    ``BayesianGaussianMixture`` models of one kind that :func:`fitted_from_sklearn` converts."""
    ests = list(estimators) if isinstance(estimators, (list, tuple)) else [estimators]
    for e in ests:
        if (
            getattr(e, "covariance_type", None) != "full"
            or getattr(e, "weight_concentration_prior_type", None) != "dirichlet_process"
            or not hasattr(e, "means_")
            or e.means_.shape[1] != 1
            or e.n_components != ests[0].n_components
        ):
            raise ParameterError(
                "from_sklearn needs fitted BayesianGaussianMixture models with one feature, "
                "covariance_type='full', weight_concentration_prior_type='dirichlet_process' "
                "and the same n_components."
            )
    return ests


def fitted_from_sklearn(
    estimators: Sequence[Any], columns: Sequence[str] | None, seed: int, weight_threshold: float
) -> FittedMixture:
    """The fitted state of scikit-learn ``BayesianGaussianMixture`` models, one per column
    (checked by :func:`sklearn_mixtures`). The working frame is each column's prior mean and
    prior standard deviation."""
    first = estimators[0]
    mean0 = np.array([float(e.mean_prior_[0]) for e in estimators])
    cov0 = np.array([float(np.ravel(e.covariance_prior_)[0]) for e in estimators])
    priors = Priors.from_data_units(
        shift=mean0,
        scale=np.where(cov0 > 0, np.sqrt(cov0), 1.0),
        weight_concentration=first.weight_concentration_prior_,
        mean_precision=first.mean_precision_prior_,
        degrees_of_freedom=first.degrees_of_freedom_prior_,
        mean=mean0,
        covariance=cov0,
        reg_covar=first.reg_covar,
    )
    means, covs = from_data_units(
        np.stack([e.means_[:, 0] for e in estimators]),
        np.stack([e.covariances_[:, 0, 0] for e in estimators]),
        priors,
    )
    post = Posterior(
        a=np.stack([e.weight_concentration_[0] for e in estimators]),
        b=np.stack([e.weight_concentration_[1] for e in estimators]),
        mean_precision=np.stack([e.mean_precision_ for e in estimators]),
        means=means,
        degrees_of_freedom=np.stack([e.degrees_of_freedom_ for e in estimators]),
        covariances=covs,
    )
    history = FitHistory(
        n_iter=np.array([e.n_iter_ for e in estimators]),
        converged=np.array([e.converged_ for e in estimators]),
        lower_bound=np.array([e.lower_bound_ for e in estimators]),
    )
    names = list(columns) if columns is not None else [str(i) for i in range(len(estimators))]
    return FittedMixture(
        priors, post, None, names, columns is not None, "numpy", seed, weight_threshold, history
    )


@dataclass
class Encoded:
    """The output of :meth:`VGM.transform`.

    Attributes
    ----------
    normalized : ndarray of shape (n_rows, n_columns), float64
        ``alpha = (x - mean_c) / (4 std_c)`` for the chosen component (clipped to ``±clip`` unless
        ``clip=None``); NaN where the input was null.
    component : ndarray of shape (n_rows, n_columns), int32
        The chosen component as an index among the column's valid components; -1 for nulls.
    null : ndarray of shape (n_rows, n_columns), bool
        Where the input was null (NaN or missing).
    columns : list of str
        Column names, in order.
    n_clipped : ndarray of shape (n_columns,), int64
        How many values of each column were clipped.
    """

    normalized: np.ndarray
    component: np.ndarray
    null: np.ndarray
    columns: list[str]
    n_clipped: np.ndarray

    def __len__(self) -> int:
        return int(self.normalized.shape[0])


# RDT adds this to each valid component's probability before sampling (ClusterBasedNormalizer).
SAMPLE_PROB_FLOOR = 1e-6
# CTGAN and RDT divide by four standard deviations: alpha lies in [-1, 1] with 99.99 % probability.
STD_MULTIPLIER = 4.0
# ...and clip |alpha| to this (RDT's ClusterBasedNormalizer._transform, CTGAN's DataTransformer);
# gpuvgm's own default is no clip (an exact round trip), its integrations keep this.
RDT_CLIP = 0.99


# The per-column tables every backend evaluates, computed once here (not once per backend).


def inverse_scales(params: EStepParams) -> np.ndarray:
    """``1 / scale`` (n,): the working frame is ``x' = (x - shift) * (1 / scale)`` in every backend
    (a product, so the kernels and their NumPy twins round the same way)."""
    return 1.0 / np.asarray(params.scale, dtype=np.float64)


def neg_half_precisions(params: EStepParams) -> np.ndarray:
    """``-0.5 * precisions`` (n, K): ``l_k(x') = log_consts_k + (-0.5 prec_k) (x' - m_k)**2``."""
    return -0.5 * np.asarray(params.precisions, dtype=np.float64)


def valid_tables(params: TransformParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(valid_means, valid_std4, n_valid)``: (n, K) float64 holding, at position j of row i, the
    mean and ``STD_MULTIPLIER * std`` of column i's j-th valid component (zero-padded), and (n,)
    int64 counts. What the transform divides by and the inverse multiplies by.

    ``4 * std`` is exact in binary floating point, so dividing by it equals dividing by
    ``4 * std`` computed on the fly. Raises :class:`~gpuvgm.DataError` for a column without a
    valid component.
    """
    valid = np.asarray(params.valid, dtype=bool)
    n_cols, k = valid.shape
    n_valid = valid.sum(axis=1).astype(np.int64)
    if (n_valid < 1).any():
        bad = int(np.flatnonzero(n_valid < 1)[0])
        raise DataError(f"column {bad} of the transform has no valid component")
    means = np.zeros((n_cols, k))
    std4 = np.zeros((n_cols, k))
    for i in range(n_cols):
        means[i, : n_valid[i]] = np.asarray(params.means[i], dtype=np.float64)[valid[i]]
        std4[i, : n_valid[i]] = (
            STD_MULTIPLIER * np.asarray(params.stds[i], dtype=np.float64)[valid[i]]
        )
    return means, std4, n_valid
