"""The DQN agent: target-network updates, Double DQN targets, the training step, acting."""

import numpy as np
import pytest

from graft.rl.agent import DQNAgent
from graft.rl.config import config_for
from graft.rl.envs import EnvInfo

INFO = EnvInfo("Test-v0", (3,), "float32", 2, ("a", "b"), None)


def _agent(**settings) -> DQNAgent:
    return DQNAgent(INFO, config_for("Test-v0", hidden=(8,), seed=1, **settings))


def _batch(rng, g=1, b=16):
    return {
        "obs": rng.normal(size=(g, b, 3)).astype(np.float32),
        "actions": rng.integers(0, 2, size=(g, b)).astype(np.int32),
        "rewards": rng.normal(size=(g, b)).astype(np.float32),
        "next_obs": rng.normal(size=(g, b, 3)).astype(np.float32),
        "terminated": (rng.random((g, b)) < 0.2).astype(np.float32),
    }


def _weights(model):
    return [np.asarray(w).copy() for w in model.weights]


def test_hard_target_changes_only_when_updated():
    agent = _agent()
    start = _weights(agent.target)
    agent.train(_batch(np.random.default_rng(0), g=3))
    online = _weights(agent.online)
    assert any(not np.allclose(a, b) for a, b in zip(online, start, strict=True))
    for a, b in zip(_weights(agent.target), start, strict=True):  # training leaves it alone
        np.testing.assert_array_equal(a, b)
    agent.update_target()
    for a, b in zip(_weights(agent.target), online, strict=True):
        np.testing.assert_array_equal(a, b)


def test_soft_target_moves_by_tau():
    agent = _agent(tau=0.1)
    agent.train(_batch(np.random.default_rng(0), g=3))
    before, online = _weights(agent.target), _weights(agent.online)
    agent.update_target()
    for t, b, o in zip(_weights(agent.target), before, online, strict=True):
        np.testing.assert_allclose(t, 0.1 * o + 0.9 * b, rtol=1e-6, atol=1e-7)


def test_double_dqn_target_uses_the_online_networks_argmax():
    rng = np.random.default_rng(3)
    agent = _agent(gamma=0.9)
    agent.train(_batch(rng, g=5))  # the online network now differs from the target
    b = _batch(rng, b=256)
    r, s2, done = b["rewards"][0], b["next_obs"][0], b["terminated"][0]
    q_online = np.asarray(agent.online(s2))
    q_target = np.asarray(agent.target(s2))
    chosen = q_online.argmax(1)
    double = r + 0.9 * (1 - done) * q_target[np.arange(256), chosen]
    plain = r + 0.9 * (1 - done) * q_target.max(1)
    assert (q_target.argmax(1) != chosen).any(), "the test needs the networks to disagree"
    assert not np.allclose(double, plain)
    np.testing.assert_allclose(np.asarray(agent.td_targets(r, s2, done)), double, rtol=1e-5)
    classic = _agent(gamma=0.9, double_dqn=False)
    classic.online.set_weights(agent.online.get_weights())
    classic.target.set_weights(agent.target.get_weights())
    np.testing.assert_allclose(np.asarray(classic.td_targets(r, s2, done)), plain, rtol=1e-5)


def test_training_fits_fixed_targets():
    rng = np.random.default_rng(0)
    agent = _agent(learning_rate=1e-2, gamma=0.0)  # targets are the rewards
    batch = _batch(rng, g=1, b=64)
    batch["rewards"] = np.abs(batch["obs"][..., 0])  # learnable from the observation
    first, _ = agent.train(batch)
    for _ in range(30):
        last, _ = agent.train({k: np.repeat(v, 4, axis=0) for k, v in batch.items()})
    assert last < 0.3 * first


def test_acting_matches_keras_and_explores_at_epsilon():
    agent = _agent()
    obs = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_allclose(agent.q_values(obs), np.asarray(agent.online(obs)), atol=1e-5)
    greedy = agent.act(obs, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(greedy, np.asarray(agent.online(obs)).argmax(1))
    rng = np.random.default_rng(0)
    actions = np.concatenate([agent.act(obs, 1.0, rng) for _ in range(40)])
    assert 0.4 < actions.mean() < 0.6  # uniform over the two actions


def test_checkpoint_round_trip_includes_the_optimizer(tmp_path):
    agent = _agent(lr_schedule="linear", steps=5000)
    agent.train(_batch(np.random.default_rng(0), g=4))
    agent.update_target()
    agent.save(tmp_path / "agent.npz")
    other = _agent(lr_schedule="linear", steps=5000)
    other.load(tmp_path / "agent.npz")
    for a, b in zip(other.optimizer.variables, agent.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(other.optimizer.iterations) == 4
    # the next steps are the same on both
    batch = _batch(np.random.default_rng(1), g=2)
    assert agent.train(batch) == pytest.approx(other.train(batch))
    for a, b in zip(_weights(agent.online), _weights(other.online), strict=True):
        np.testing.assert_array_equal(a, b)


def test_linear_learning_rate_schedule_decays():
    agent = _agent(
        lr_schedule="linear",
        steps=1004,
        learning_starts=0,
        train_freq=4,
        gradient_steps=1,
        learning_rate=1e-3,
        lr_final_fraction=0.1,
    )
    start = agent.learning_rate
    agent.train(_batch(np.random.default_rng(0), g=125))  # half of the 251 gradient steps
    assert start == pytest.approx(1e-3)
    assert agent.learning_rate == pytest.approx(1e-3 - 0.9e-3 * 125 / 251, rel=1e-3)


def test_image_observations_get_a_cnn_that_trains_and_acts():
    info = EnvInfo("Pixels-v0", (36, 36, 3), "uint8", 3, ("a", "b", "c"), None)
    agent = DQNAgent(info, config_for("Pixels-v0", hidden=(16,), seed=0))
    kinds = [type(layer).__name__ for layer in agent.online.layers]
    assert kinds.count("Conv2D") == 3 and "Rescaling" in kinds  # uint8 pixels scaled to [0, 1]
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(2, 8, 36, 36, 3)).astype(np.float32)
    batch = {
        "obs": obs,
        "actions": rng.integers(0, 3, size=(2, 8)).astype(np.int32),
        "rewards": np.ones((2, 8), np.float32),
        "next_obs": obs[:, ::-1],
        "terminated": np.zeros((2, 8), np.float32),
    }
    before = _weights(agent.online)
    loss, _ = agent.train(batch)
    assert np.isfinite(loss)
    assert any(not np.allclose(a, b) for a, b in zip(_weights(agent.online), before, strict=True))
    q = agent.q_values(obs[0])
    np.testing.assert_allclose(q, np.asarray(agent.online(obs[0])), rtol=1e-5, atol=1e-5)
    assert agent.act(obs[0], 0.0, rng).tolist() == q.argmax(1).tolist()
