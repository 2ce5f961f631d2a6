"""The convex head: multinomial logistic regression with L2, solved to convergence.

On frozen features a softmax head *is* a logistic regression, so it is fitted as one. Features
are standardised (or first power-normalised: signed square root and L2 normalisation, a classic
gain on CNN features), a batched L-BFGS solves one problem per (fold, regularisation strength)
at once (the problems share the feature matrix, so one matrix product serves all of them), the
transform and strength with the best cross-validated accuracy are kept (ties: lower log loss),
and the head is refitted with them. The result is written into the Keras layers every head has:
``[PowerNormalization] -> FeatureScaling -> Dense(softmax)``. The scaling stays a layer of its
own rather than being folded into the kernel: a kernel divided by small feature deviations
would span a range that int8 quantization cannot keep.

The objective of one problem is scikit-learn's ``LogisticRegression`` (lbfgs, L2, intercept not
penalised) divided by the sum of sample weights:
``mean_w(cross-entropy) + lam / 2 * ||W||^2`` with ``lam = 1 / (C * sum(weights))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graft.errors import InvalidArgumentError, received

# Per-example L2 strengths searched (on standardised features): 10^-4.5 ... 1, 10 values.
LAMBDAS = tuple(float(v) for v in np.logspace(-4.5, 0, 10))
CV_FOLDS = 5
CV_MAX_EXAMPLES = 6000  # above this many train+val examples, choose on the validation split
IMBALANCE_RATIO = 3.0  # class weights switch on when the largest class is this much the smallest
POWER_EPSILON = 1e-12


@dataclass(frozen=True)
class LinearHead:
    """A fitted convex head: ``softmax(((transform(x) - mean) / scale) @ kernel + bias)``.

    Attributes:
        kernel: ``(dim, classes)`` float32 weights of the Dense layer (on scaled features).
        bias: ``(classes,)`` float32 bias.
        mean: ``(dim,)`` centring of the (transformed) features.
        scale: ``(dim,)`` their scaling (per feature, or one value for power-normalised ones).
        lam: the chosen per-example L2 strength (on standardised features).
        C: scikit-learn's equivalent ``C`` for the examples of the final fit.
        transform: ``"none"`` or ``"power"``: applied to the features before ``kernel``.
        selection: how ``lam`` was chosen (``"5-fold cross-validation on train+val"``...).
        scores: per strength: ``{"lam", "accuracy", "log_loss"}`` on held-out data.
        fitted_on: ``"train"`` or ``"train+val"``.
        class_weighted: whether balanced class weights were used.
        iterations: L-BFGS iterations of the final fit.
    """

    kernel: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    lam: float
    C: float
    transform: str
    selection: str
    scores: tuple[dict, ...] = field(default=())
    fitted_on: str = "train"
    class_weighted: bool = False
    iterations: int = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities for raw features."""
        scaled = (TRANSFORMS[self.transform](x) - self.mean) / self.scale
        return _softmax(scaled @ self.kernel + self.bias)

    def summary(self) -> dict:
        """A JSON-ready description (for run.json and the report)."""
        best = max(self.scores, key=lambda s: (s["accuracy"], -s["log_loss"]), default=None)
        return {
            "solver": "L-BFGS, multinomial logistic regression with L2 (convex)",
            "transform": self.transform,
            "lam": self.lam,
            "C": self.C,
            "selection": self.selection,
            "heldout_accuracy": best["accuracy"] if best else None,
            "fitted_on": self.fitted_on,
            "class_weighted": self.class_weighted,
            "iterations": self.iterations,
            "scores": list(self.scores),
        }


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class _Problems:
    """``P`` logistic-regression problems over one design matrix ``x1`` (n, d+1; ones last).

    Parameters are laid out ``(P, (d+1) * k)``, one contiguous row per problem, so the
    L-BFGS dot products are row-wise; one matrix product evaluates every problem.
    """

    def __init__(self, x1: np.ndarray, onehot: np.ndarray, weights: np.ndarray, lam: np.ndarray):
        self.x1, self.y = x1, onehot  # (n, d+1), (n, k)
        self.w = weights.astype(np.float32)  # (n, P), each column sums to 1
        self.lam = lam.astype(np.float32)  # (P,)
        self.d1, self.k = x1.shape[1], onehot.shape[1]
        self.count = weights.shape[1]
        self.penalised = np.ones((self.d1, self.k), np.float32)
        self.penalised[-1] = 0.0  # the intercept is not penalised
        self.penalised = self.penalised.ravel()

    def __call__(self, theta: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss ``(len(cols),)`` and gradient ``(len(cols), D)`` of the problems ``cols``."""
        p, d1, k = len(cols), self.d1, self.k
        w, lam = self.w[:, cols], self.lam[cols]
        stacked = np.ascontiguousarray(theta.reshape(p, d1, k).transpose(1, 0, 2))
        z = (self.x1 @ stacked.reshape(d1, p * k)).reshape(-1, p, k)
        z -= z.max(axis=2, keepdims=True)
        ez = np.exp(z)
        total = ez.sum(axis=2)  # (n, P)
        nll = np.log(total) - np.einsum("npk,nk->np", z, self.y)
        loss = np.einsum("np,np->p", w, nll).astype(np.float64)
        residual = (ez / total[..., None] - self.y[:, None, :]) * w[..., None]
        grad = (self.x1.T @ residual.reshape(-1, p * k)).reshape(d1, p, k)
        grad = np.ascontiguousarray(grad.transpose(1, 0, 2)).reshape(p, d1 * k)
        pen = theta * self.penalised
        grad += lam[:, None] * pen
        loss += 0.5 * lam * _dot(pen, pen)
        return loss, grad


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.vecdot(a, b).astype(np.float64)


def _direction(g, s_hist, y_hist, rho_hist) -> np.ndarray:
    """The L-BFGS two-loop recursion, per problem (a pair with ``rho == 0`` is skipped)."""
    q = g.copy()
    alphas = []
    for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist), strict=True):
        a = rho * _dot(s, q)
        q -= a.astype(np.float32)[:, None] * y
        alphas.append(a)
    if s_hist:
        yy = _dot(y_hist[-1], y_hist[-1])
        gamma = np.where(rho_hist[-1] > 0, 1.0 / np.maximum(rho_hist[-1] * yy, 1e-30), 1.0)
    else:
        gamma = 1.0 / np.maximum(np.sqrt(_dot(g, g)), 1.0)
    r = q * gamma[:, None].astype(np.float32)
    for s, y, rho, a in zip(s_hist, y_hist, rho_hist, reversed(alphas), strict=True):
        b = rho * _dot(y, r)
        r += (a - b).astype(np.float32)[:, None] * s
    return -r


def lbfgs(
    problems: _Problems,
    theta: np.ndarray | None = None,
    *,
    max_iter: int = 500,
    tol: float = 1e-5,
    memory: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimises every problem at once with L-BFGS and a backtracking (Armijo) line search.

    Each problem keeps its own curvature pairs and step; a problem stops when the largest
    absolute entry of its gradient is at most ``tol`` or its loss stops decreasing, and is
    then dropped from the matrix products.

    Args:
        problems: the problems.
        theta: ``(P, (d+1) * k)`` starting points (zeros by default).
        max_iter: iterations at most.
        tol: gradient tolerance (the objective is a weighted mean, as scikit-learn's).
        memory: curvature pairs kept.

    Returns:
        ``(theta, iterations)``: the solutions and the iterations per problem.
    """
    size = (problems.count, problems.d1 * problems.k)
    out = np.zeros(size, np.float32) if theta is None else theta.astype(np.float32).copy()
    iterations = np.zeros(problems.count, int)
    cols = np.arange(problems.count)
    theta = out.copy()
    f, g = problems(theta, cols)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    rho_hist: list[np.ndarray] = []
    keep = np.abs(g).max(axis=1) > tol
    for _ in range(max_iter):
        if not keep.all():  # drop finished problems from every array
            out[cols[~keep]] = theta[~keep]
            cols, theta, f, g = cols[keep], theta[keep], f[keep], g[keep]
            s_hist = [s[keep] for s in s_hist]
            y_hist = [y[keep] for y in y_hist]
            rho_hist = [r[keep] for r in rho_hist]
        if not len(cols):
            break
        direction = _direction(g, s_hist, y_hist, rho_hist)
        slope = _dot(g, direction)
        bad = slope >= 0  # not a descent direction: fall back to the gradient
        if bad.any():
            direction[bad] = -g[bad] / np.maximum(np.abs(g[bad]).max(), 1.0)
            slope = _dot(g, direction)
        step = np.ones(len(cols))
        pending = np.arange(len(cols))  # problems still looking for a step (local indices)
        new_theta, new_f, new_g = theta.copy(), f.copy(), g.copy()
        for _ in range(30):
            trial = theta[pending] + step[pending, None].astype(np.float32) * direction[pending]
            tf_, tg = problems(trial, cols[pending])
            ok = tf_ <= f[pending] + 1e-4 * step[pending] * slope[pending]
            done = pending[ok]
            new_theta[done], new_f[done], new_g[done] = trial[ok], tf_[ok], tg[ok]
            pending = pending[~ok]
            if not len(pending):
                break
            step[pending] *= 0.5
        failed = np.zeros(len(cols), bool)
        failed[pending] = True
        s, y = new_theta - theta, new_g - g
        sy = _dot(s, y)
        curved = sy > 1e-10 * np.sqrt(_dot(y, y) * _dot(s, s)) + 1e-30
        rho = np.divide(1.0, sy, out=np.zeros_like(sy), where=curved)
        s_hist.append(s)
        y_hist.append(y)
        rho_hist.append(rho)
        if len(s_hist) > memory:
            s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        decrease = f - new_f
        iterations[cols] += 1
        theta, f, g = new_theta, new_f, new_g
        small = decrease <= 1e-10 * np.maximum(np.abs(f), 1.0)
        # ``failed``: no acceptable step, i.e. converged to float32 precision.
        keep = ~failed & ~small & (np.abs(g).max(axis=1) > tol)
    out[cols] = theta
    return out, iterations


def power_normalize(x: np.ndarray) -> np.ndarray:
    """Signed square root, then L2 normalisation per row (what ``PowerNormalization`` does)."""
    x = np.asarray(x, np.float32)
    y = x / np.sqrt(np.abs(x) + POWER_EPSILON)
    return y / np.sqrt((y * y).sum(axis=1, keepdims=True) + POWER_EPSILON)


TRANSFORMS = {"none": (lambda x: np.asarray(x, np.float32)), "power": power_normalize}


def _scaling(x: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale: per feature for raw features, one scale for power-normalised ones
    (their relative variances are what the normalisation made meaningful)."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    if transform == "power":
        std = np.full_like(std, np.sqrt((std**2).mean()) or 1.0)
    std = np.where(std > 1e-6 * max(float(std.max()), 1e-12), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def class_weights(labels: np.ndarray, n_classes: int, mode: str = "auto") -> np.ndarray | None:
    """Balanced class weights (``n / (classes * count)``), or ``None`` when not used.

    ``mode``: ``"auto"`` (balanced when the largest class has more than 3x the examples of the
    smallest), ``"balanced"`` or ``"none"``.
    """
    if mode not in ("auto", "balanced", "none"):
        raise InvalidArgumentError(
            f"class_weight must be 'auto', 'balanced' or 'none'. {received(class_weight=mode)}"
        )
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts[counts > 0]
    if mode == "none" or (mode == "auto" and present.max() <= IMBALANCE_RATIO * present.min()):
        return None
    return np.where(counts > 0, len(labels) / (len(present) * np.maximum(counts, 1)), 0.0)


def _weights(labels: np.ndarray, masks: np.ndarray, cw: np.ndarray | None) -> np.ndarray:
    """(n, P) sample weights: the masks times the class weights, each column summing to 1."""
    w = masks.astype(np.float64)
    if cw is not None:
        w = w * cw[labels][:, None]
    return w / w.sum(axis=0, keepdims=True)


def _heldout_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    accuracy = float((probs.argmax(1) == labels).mean())
    log_loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1)).mean())
    return accuracy, log_loss


def _design(x: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transformed, centred and scaled features with a column of ones; and the scaling."""
    xt = TRANSFORMS[transform](x)
    mean, std = _scaling(xt, transform)
    return np.concatenate([(xt - mean) / std, np.ones((len(x), 1), np.float32)], 1), mean, std


def fit_linear_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    *,
    refit_on: str = "train+val",
    folds: int | None = None,
    class_weight: str = "auto",
    lambdas: tuple[float, ...] = LAMBDAS,
    transforms: tuple[str, ...] = ("none", "power"),
    lam: float | None = None,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
) -> LinearHead:
    """Fits the convex head, choosing its feature transform and L2 strength on held-out data.

    Args:
        x_train, y_train: training features and integer labels.
        x_val, y_val: validation features and labels.
        n_classes: number of classes (some may be absent from small splits).
        refit_on: ``"train+val"`` (the final head sees every labelled example) or ``"train"``
            (keeps the validation split clean for a later comparison, e.g. with fine-tuning).
        folds: k-fold cross-validation on train+val to choose; ``None`` picks 5 folds up to
            6,000 examples and the validation split above; 0 forces the split.
        class_weight: ``"auto"``, ``"balanced"`` or ``"none"`` (see ``class_weights``).
        lambdas: per-example L2 strengths to search.
        transforms: feature transforms to search: ``"none"`` (standardised features) and
            ``"power"`` (signed square root + L2 normalisation, which often helps on CNN
            features).
        lam: a fixed strength (no search; the first transform is used).
        sample_weight: optional per-example weights of the training examples (e.g. pseudo-
            labels), multiplied with the class weights.
        seed: seed of the folds.

    Returns:
        The fitted ``LinearHead``.

    Raises:
        InvalidArgumentError: an unknown ``refit_on`` or transform.

    Example:
        >>> head = fit_linear_head(xtr, ytr, xva, yva, 10)  # doctest: +SKIP
        >>> head.predict_proba(xte).argmax(1)  # doctest: +SKIP
    """
    if refit_on not in ("train", "train+val"):
        raise InvalidArgumentError(
            f"refit_on must be 'train' or 'train+val'. {received(refit_on=refit_on)}"
        )
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown or not transforms:
        raise InvalidArgumentError(
            f"transforms must be among {sorted(TRANSFORMS)}. {received(transforms=transforms)}"
        )
    x_all = np.concatenate([x_train, x_val]).astype(np.float32)
    y_all = np.concatenate([y_train, y_val]).astype(int)
    n_train = len(y_train)
    extra = np.ones(len(y_all))
    if sample_weight is not None:
        extra[:n_train] = np.asarray(sample_weight, np.float64)
    cw = class_weights(y_train, n_classes, class_weight)
    onehot = np.eye(n_classes, dtype=np.float32)[y_all]
    scores: list[dict] = []
    start = None
    transform = transforms[0]
    if lam is None:
        if folds is None:
            folds = CV_FOLDS if len(y_all) <= CV_MAX_EXAMPLES or not len(y_val) else 0
        if folds:
            folds = max(2, min(folds, int(np.bincount(y_all).max())))
            assignment = _fold_assignment(y_all, folds, seed)
            heldout = [assignment == f for f in range(folds)]
            selection = f"{folds}-fold cross-validation on train+val"
        else:
            heldout = [np.arange(len(y_all)) >= n_train]
            selection = "validation split"
        masks = np.stack([~h for h in heldout for _ in lambdas], axis=1)
        lam_vec = np.array([v for _ in heldout for v in lambdas])
        weights = _weights(y_all, masks * extra[:, None], cw)
        truth = np.concatenate([y_all[h] for h in heldout])
        best_key, solutions = None, {}
        for name in transforms:
            x1, _, _ = _design(x_all, name)
            theta, _ = lbfgs(_Problems(x1, onehot, weights, lam_vec), tol=3e-4, max_iter=300)
            solutions[name] = theta
            for j, value in enumerate(lambdas):
                probs = np.concatenate(
                    [
                        _softmax(x1[h] @ theta[i * len(lambdas) + j].reshape(-1, n_classes))
                        for i, h in enumerate(heldout)
                    ]
                )
                accuracy, log_loss = _heldout_scores(probs, truth)
                scores.append(
                    {"transform": name, "lam": value, "accuracy": accuracy, "log_loss": log_loss}
                )
                key = (accuracy, -log_loss)
                if best_key is None or key > best_key:
                    best_key, transform, lam, best_j = key, name, value, j
        start = solutions[transform][best_j :: len(lambdas)].mean(axis=0, keepdims=True)
    else:
        selection = "given"
    x1, mean, std = _design(x_all, transform)
    rows = np.arange(len(y_all)) < (n_train if refit_on == "train" else len(y_all))
    weights = _weights(y_all, (rows * extra)[:, None], cw)
    theta, iterations = lbfgs(_Problems(x1, onehot, weights, np.array([lam])), start)
    solution = theta[0].reshape(-1, n_classes)
    w_std, b_std = solution[:-1], solution[-1]
    kernel = np.ascontiguousarray(w_std, dtype=np.float32)
    bias = np.asarray(b_std, dtype=np.float32)
    total_weight = float((rows * extra * (cw[y_all] if cw is not None else 1.0)).sum())
    return LinearHead(
        kernel=kernel,
        bias=bias,
        mean=mean,
        scale=std,
        lam=float(lam),
        C=1.0 / (float(lam) * total_weight),
        transform=transform,
        selection=selection,
        scores=tuple(scores),
        fitted_on=refit_on,
        class_weighted=cw is not None,
        iterations=int(iterations[0]),
    )


def _fold_assignment(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold index per example (every class spread over the folds)."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), int)
    offset = 0
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        assignment[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)
    return assignment
