"""The DQN agent: an online Q-network, its target network, and a compiled training step
(Double DQN targets, Huber loss, gradient-norm clipping, Adam)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft._atomic import atomic_path
from graft.rl.config import DQNConfig
from graft.rl.envs import EnvInfo

UNROLL = 16  # up to this many gradient steps per round are unrolled in the compiled graph


def q_network(info: EnvInfo, hidden: tuple[int, ...], seed: int, name: str = "q_network"):
    """Observation in, one Q-value per action out (linear).

    Vectors go through an MLP (ReLU); images (``uint8`` scaled to [0, 1]) through three
    convolutions (the Nature DQN's, 32-64-64 filters) before it.
    """
    import keras

    def dense(units: int, fan_in: int, i: int, **kwargs):
        # PyTorch's nn.Linear initialisation, U(+-1/sqrt(fan_in)) for weights and biases: the
        # one the RL Zoo's settings were tuned with (Glorot's smaller first-layer weights
        # learned worse on MountainCar).
        limit = 1.0 / np.sqrt(fan_in)
        return keras.layers.Dense(
            units,
            kernel_initializer=keras.initializers.RandomUniform(
                -limit, limit, seed=seed * 1000 + i
            ),
            bias_initializer=keras.initializers.RandomUniform(
                -limit, limit, seed=seed * 1000 + 500 + i
            ),
            **kwargs,
        )

    def init(i: int):
        return keras.initializers.GlorotUniform(seed=seed * 1000 + i)

    inputs = keras.Input(info.observation_shape, name="observation", dtype="float32")
    x = inputs
    i = 0
    if info.image:
        if info.observation_dtype == "uint8":
            x = keras.layers.Rescaling(1 / 255.0)(x)
        for filters, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            x = keras.layers.Conv2D(
                filters, kernel, strides=stride, activation="relu", kernel_initializer=init(i)
            )(x)
            i += 1
        x = keras.layers.Flatten()(x)
    for units in hidden:
        x = dense(units, x.shape[-1], i, activation="relu")(x)
        i += 1
    q = dense(info.n_actions, x.shape[-1], i, name="q_values")(x)
    return keras.Model(inputs, q, name=name)


def gradient_steps_total(config: DQNConfig) -> int:
    """How many gradient steps the whole run takes (for the learning-rate schedule)."""
    rounds = max(0, config.steps - config.learning_starts) // config.train_freq
    per_round = config.gradient_steps if config.gradient_steps > 0 else config.train_freq
    return max(1, rounds * per_round)


class DQNAgent:
    """Online and target Q-networks with their optimizer.

    Args:
        info: the environment's spaces.
        config: the run's settings.

    Example:
        >>> agent = DQNAgent(info, config_for("CartPole-v1"))  # doctest: +SKIP
        >>> agent.act(obs[None], epsilon=0.0, rng=np.random.default_rng(0))  # doctest: +SKIP
        array([1])
    """

    def __init__(self, info: EnvInfo, config: DQNConfig):
        import keras
        import tensorflow as tf

        self.info = info
        self.config = config
        self.online = q_network(info, config.hidden, config.seed, "q_network")
        self.target = q_network(info, config.hidden, config.seed, "target_network")
        self.target.set_weights(self.online.get_weights())
        lr = config.learning_rate
        if config.lr_schedule == "linear":
            lr = keras.optimizers.schedules.PolynomialDecay(
                config.learning_rate,
                decay_steps=gradient_steps_total(config),
                end_learning_rate=config.learning_rate * config.lr_final_fraction,
            )
        self.optimizer = keras.optimizers.Adam(learning_rate=lr)
        self.optimizer.build(self.online.trainable_variables)
        self._numpy_layers: list[tuple[np.ndarray, np.ndarray, bool]] | None = None
        self._train = tf.function(self._train_rounds, reduce_retracing=True, jit_compile=True)
        self._call = tf.function(lambda obs: self.online(obs, training=False))

    # -- acting ---------------------------------------------------------------------------
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values of a batch of observations (numpy for MLPs: no TensorFlow call per step)."""
        obs = np.asarray(obs, np.float32)
        if self.info.image:
            return self._call(obs).numpy()
        if self._numpy_layers is None:
            dense = [layer for layer in self.online.layers if layer.weights]
            self._numpy_layers = [
                (*(np.asarray(w) for w in layer.get_weights()), i < len(dense) - 1)
                for i, layer in enumerate(dense)
            ]
        x = obs
        for kernel, bias, relu in self._numpy_layers:
            x = x @ kernel + bias
            if relu:
                x = np.maximum(x, 0.0)
        return x

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """Epsilon-greedy actions for a batch of observations.

        One uniform draw per environment decides exploration, and one more picks the random
        action, whether used or not, so the random stream does not depend on the network.
        """
        greedy = self.q_values(obs).argmax(axis=1)
        explore = rng.random(len(greedy)) < epsilon
        random_actions = rng.integers(0, self.info.n_actions, size=len(greedy))
        return np.where(explore, random_actions, greedy).astype(np.int64)

    # -- learning -------------------------------------------------------------------------
    def _gradient_step(self, obs, actions, rewards, next_obs, terminated):
        import tensorflow as tf

        variables = self.online.trainable_variables
        y = self.td_targets(rewards, next_obs, terminated)
        with tf.GradientTape() as tape:
            q_taken = tf.gather(self.online(obs, training=True), actions, batch_dims=1)
            error = y - q_taken  # Huber loss (delta 1), the mean over the batch
            abs_error = tf.abs(error)
            loss = tf.reduce_mean(
                tf.where(abs_error <= 1.0, 0.5 * tf.square(error), abs_error - 0.5)
            )
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, self.config.max_grad_norm)
        self.optimizer.apply(grads, variables)
        return loss, tf.reduce_mean(q_taken)

    def _train_rounds(self, obs, actions, rewards, next_obs, terminated):
        """``G`` gradient steps on ``(G, batch, ...)`` minibatches, in one graph: unrolled
        when ``G`` is small (XLA fuses across steps), a loop otherwise."""
        import tensorflow as tf

        g_static = actions.shape[0]
        if g_static is not None and g_static <= UNROLL:
            results = [
                self._gradient_step(obs[g], actions[g], rewards[g], next_obs[g], terminated[g])
                for g in range(g_static)
            ]
            losses, q_means = zip(*results, strict=True)
            return tf.reduce_mean(tf.stack(losses)), tf.reduce_mean(tf.stack(q_means))
        count = tf.shape(actions)[0]
        losses = tf.TensorArray(tf.float32, size=count)
        q_means = tf.TensorArray(tf.float32, size=count)
        for g in tf.range(count):
            loss, q_mean = self._gradient_step(
                obs[g], actions[g], rewards[g], next_obs[g], terminated[g]
            )
            losses = losses.write(g, loss)
            q_means = q_means.write(g, q_mean)
        return tf.reduce_mean(losses.stack()), tf.reduce_mean(q_means.stack())

    def td_targets(self, rewards, next_obs, terminated):
        """``r + gamma * (1 - terminated) * V(s')``, where ``V(s')`` is the target network's
        value of the online network's greedy action (Double DQN) or its own maximum."""
        import tensorflow as tf

        next_target = self.target(next_obs, training=False)
        if self.config.double_dqn:
            best = tf.argmax(self.online(next_obs, training=False), axis=1, output_type=tf.int32)
            next_value = tf.gather(next_target, best, batch_dims=1)
        else:
            next_value = tf.reduce_max(next_target, axis=1)
        return tf.stop_gradient(rewards + self.config.gamma * (1.0 - terminated) * next_value)

    def train(self, batch: dict) -> tuple[float, float]:
        """Gradient steps on stacked minibatches (``ReplayBuffer.sample(..., batches=G)``).

        Returns:
            The mean Huber loss and the mean Q-value of the actions taken.
        """
        import tensorflow as tf

        loss, q = self._train(
            tf.constant(batch["obs"], tf.float32),
            tf.constant(batch["actions"], tf.int32),
            tf.constant(batch["rewards"], tf.float32),
            tf.constant(batch["next_obs"], tf.float32),
            tf.constant(batch["terminated"], tf.float32),
        )
        self._numpy_layers = None
        return float(loss), float(q)

    def update_target(self) -> None:
        """Hard copy (``tau == 1``) or Polyak: ``target <- tau * online + (1 - tau) * target``."""
        tau = self.config.tau
        for t, o in zip(self.target.weights, self.online.weights, strict=True):
            t.assign(o if tau == 1.0 else tau * o + (1.0 - tau) * t)

    @property
    def learning_rate(self) -> float:
        return float(np.asarray(self.optimizer.learning_rate))

    # -- checkpoints ----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Online, target and optimizer variables in one ``.npz`` (plain arrays), atomically."""
        arrays = {}
        for prefix, variables in (
            ("online", self.online.weights),
            ("target", self.target.weights),
            ("optimizer", self.optimizer.variables),
        ):
            for i, v in enumerate(variables):
                arrays[f"{prefix}_{i:04d}"] = np.asarray(v)
        with atomic_path(path, ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    def set_online_weights(self, weights: list) -> None:
        """Puts ``weights`` (``online.get_weights()`` order) into the online network."""
        self.online.set_weights(weights)
        self._numpy_layers = None

    def load(self, path: str | Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            for prefix, variables in (
                ("online", self.online.weights),
                ("target", self.target.weights),
                ("optimizer", self.optimizer.variables),
            ):
                for i, v in enumerate(variables):
                    v.assign(data[f"{prefix}_{i:04d}"])
        self._numpy_layers = None
