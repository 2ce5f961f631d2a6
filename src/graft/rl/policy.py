"""A trained Q-network as a graft module: observation in, Q-values and the greedy action out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft.rl.envs import EnvInfo

OBSERVATIONS_ASSET = "observations.npy"  # a sample of observations: export checks and int8


def policy_model(q_network):
    """Wraps a Q-network into a model with named outputs ``q_values`` and ``action``."""
    import keras

    from graft.models.layers import GreedyAction

    inputs = keras.Input(q_network.input_shape[1:], name="observation", dtype="float32")
    q = q_network(inputs)
    action = GreedyAction(name="action")(q)
    return keras.Model(inputs, {"q_values": q, "action": action}, name="policy")


def save_policy(
    q_network,
    info: EnvInfo,
    directory: str | Path,
    *,
    name: str,
    observations: np.ndarray,
    metrics: dict[str, float],
    description: str = "",
) -> Path:
    """Saves the policy as a module (``task="rl-policy"``) with a sample of observations."""
    import io

    from graft import __version__
    from graft.module.io import save
    from graft.module.manifest import InputSpec, Manifest, OutputSpec, Provenance

    manifest = Manifest(
        name=name,
        task="rl-policy",
        description=description,
        inputs=InputSpec(kind="observation", shape=info.observation_shape, environment=info.env_id),
        outputs=OutputSpec(kind="q_values", dim=info.n_actions),
        labels=info.action_names,
        provenance=Provenance(source=f"graft {__version__} DQN on gymnasium:{info.env_id}"),
        metrics=metrics,
        tags=("reinforcement-learning", "dqn", info.env_id),
    )
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(observations, np.float32), allow_pickle=False)
    save(
        policy_model(q_network),
        directory,
        manifest,
        assets={OBSERVATIONS_ASSET: buffer.getvalue()},
        overwrite=True,
    )
    return Path(directory)


def load_policy(handle: str | Path):
    """Loads a policy module (checksums, allowlist, safe_mode).

    Returns:
        ``(model, manifest, directory)``.

    Raises:
        InvalidArgumentError: the module is not an ``rl-policy``.
    """
    from graft.errors import InvalidArgumentError, received
    from graft.handles import resolve
    from graft.module.io import load

    directory = resolve(handle)
    loaded = load(directory)
    if loaded.manifest.task != "rl-policy":
        raise InvalidArgumentError(
            f"{directory} is a {loaded.manifest.task} module, not a policy: pass the module or "
            f"run folder of `graft rl train`. {received(module=str(handle))}"
        )
    return loaded.model, loaded.manifest, directory


def observations_of(directory: str | Path) -> np.ndarray:
    """The module's sample of observations (``assets/observations.npy``)."""
    return np.load(Path(directory) / "assets" / OBSERVATIONS_ASSET, allow_pickle=False)
