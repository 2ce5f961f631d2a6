"""The convex head: the logistic-regression optimum, batched L-BFGS, selection, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from graft.errors import InvalidArgumentError
from graft.training import linear


@pytest.fixture(scope="module")
def digits_features():
    """A fixed feature set: scikit-learn's digits as 64 pixel features, split 60/20/20."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


@pytest.mark.parametrize("lam", [1e-3, 3e-2])
def test_convex_head_reaches_the_logistic_regression_optimum(digits_features, lam):
    from sklearn.linear_model import LogisticRegression

    (xtr, ytr), (xva, yva), (xte, yte) = digits_features
    head = linear.fit_linear_head(
        xtr, ytr, xva, yva, 10, lam=lam, transforms=("none",), class_weight="none"
    )
    # scikit-learn at the same C on the same standardised train+val features.
    x_all = np.concatenate([xtr, xva])
    mean, std = x_all.mean(0), x_all.std(0)
    std[std == 0] = 1.0
    reference = LogisticRegression(C=head.C, tol=1e-10, max_iter=20000)
    reference.fit((x_all - mean) / std, np.concatenate([ytr, yva]))
    ours = head.predict_proba(xte)
    theirs = reference.predict_proba((xte - mean) / std)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.99
    assert np.abs(ours - theirs).max() < 0.02
    assert head.fitted_on == "train+val" and head.selection == "given"


def test_the_keras_head_computes_the_fitted_probabilities(digits_features):
    from graft.training.head import fit_convex

    (xtr, ytr), (xva, yva), (xte, _) = digits_features
    x = {"train": np.sqrt(xtr), "val": np.sqrt(xva)}  # non-negative: power is a candidate
    result = fit_convex(
        x,
        {"train": ytr, "val": yva},
        10,
        dropout=0.2,
        label_smoothing=0.1,
        class_weight="auto",
        refit_on="train",
        seed=0,
    )
    assert result.kind == "convex" and 0.9 < result.val_accuracy <= 1.0
    layers = [type(layer).__name__ for layer in result.model.layers]
    assert "Dropout" not in layers  # an exact solution needs no dropout
    assert ("PowerNormalization" in layers) == (result.info["transform"] == "power")
    refit = linear.fit_linear_head(
        x["train"],
        ytr,
        x["val"],
        yva,
        10,
        refit_on="train",
        lam=result.info["lam"],
        transforms=(result.info["transform"],),
    )
    keras_probs = np.asarray(result.model.predict(np.sqrt(xte), verbose=0))
    np.testing.assert_allclose(keras_probs, refit.predict_proba(np.sqrt(xte)), atol=2e-3)


def test_cross_validation_picks_the_best_scored_strength(digits_features):
    (xtr, ytr), (xva, yva), (xte, yte) = digits_features
    head = linear.fit_linear_head(xtr, ytr, xva, yva, 10, transforms=("none", "power"))
    assert head.selection == "5-fold cross-validation on train+val"
    assert len(head.scores) == 2 * len(linear.LAMBDAS)
    best = max(head.scores, key=lambda s: (s["accuracy"], -s["log_loss"]))
    assert (head.lam, head.transform) == (best["lam"], best["transform"])
    assert head.summary()["heldout_accuracy"] == best["accuracy"] > 0.9
    accuracies = [s["accuracy"] for s in head.scores if s["transform"] == "none"]
    assert max(accuracies) - min(accuracies) > 0.01  # the strength matters on this data
    assert (head.predict_proba(xte).argmax(1) == yte).mean() > 0.93
    on_val = linear.fit_linear_head(xtr, ytr, xva, yva, 10, folds=0, transforms=("none",))
    assert on_val.selection == "validation split"


def test_batched_problems_equal_problems_solved_one_by_one(digits_features):
    (xtr, ytr), _, _ = digits_features
    x1, _, _ = linear._design(xtr[:300], "none")
    onehot = np.eye(10, dtype=np.float32)[ytr[:300]]
    rng = np.random.default_rng(1)
    masks = rng.random((300, 3)) < 0.8
    weights = linear._weights(ytr[:300], masks, None)
    lams = np.array([1e-3, 1e-2, 1e-1])
    together, _ = linear.lbfgs(linear._Problems(x1, onehot, weights, lams), tol=1e-6)
    for p in range(3):
        alone, _ = linear.lbfgs(
            linear._Problems(x1, onehot, weights[:, p : p + 1], lams[p : p + 1]), tol=1e-6
        )
        z1, z2 = (x1 @ t.reshape(-1, 10) for t in (together[p], alone[0]))
        assert (z1.argmax(1) == z2.argmax(1)).mean() == 1.0
        assert np.abs(z1 - z2).max() < 1e-2


def test_class_weights_switch_on_above_3x_imbalance():
    balanced = np.repeat([0, 1, 2], [30, 40, 80])
    assert linear.class_weights(balanced, 3) is None
    skewed = np.repeat([0, 1, 2], [10, 40, 80])
    weights = linear.class_weights(skewed, 3)
    np.testing.assert_allclose(weights * np.bincount(skewed), len(skewed) / 3)
    assert linear.class_weights(skewed, 3, "none") is None
    assert linear.class_weights(balanced, 3, "balanced") is not None
    with pytest.raises(InvalidArgumentError, match=r"'auto', 'balanced' or 'none'.*Received"):
        linear.class_weights(skewed, 3, "yes")


def test_class_weights_raise_the_minority_recall():
    rng = np.random.default_rng(0)
    counts = [400, 40]  # 10x imbalance, overlapping classes
    x = np.concatenate([rng.normal(0, 1, (c, 5)) + 0.8 * k for k, c in enumerate(counts)])
    y = np.repeat([0, 1], counts)
    order = rng.permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    common = dict(transforms=("none",), lam=1e-3)
    weighted = linear.fit_linear_head(x[:300], y[:300], x[300:350], y[300:350], 2, **common)
    plain = linear.fit_linear_head(
        x[:300], y[:300], x[300:350], y[300:350], 2, class_weight="none", **common
    )
    assert weighted.class_weighted and not plain.class_weighted
    test_x, test_y = x[350:], y[350:]

    def minority_recall(head):
        return (head.predict_proba(test_x).argmax(1)[test_y == 1] == 1).mean()

    assert minority_recall(weighted) > minority_recall(plain) + 0.2


def test_power_normalization_layer_matches_numpy():
    from graft.models.layers import PowerNormalization

    x = np.random.default_rng(0).normal(size=(5, 9)).astype(np.float32)
    x[0, :3] = 0.0
    layer = np.asarray(PowerNormalization()(x))
    np.testing.assert_allclose(layer, linear.power_normalize(x), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(layer, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.sign(layer) == np.sign(x))


def test_bad_arguments_are_named():
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(InvalidArgumentError, match=r"refit_on.*Received: refit_on='all'"):
        linear.fit_linear_head(x, y, x, y, 2, refit_on="all")
    with pytest.raises(InvalidArgumentError, match=r"transforms must be among.*Received"):
        linear.fit_linear_head(x, y, x, y, 2, transforms=("log",))
