"""Policy-gradient reinforcement learning with a Keras policy: REINFORCE with normalised returns.

The policy is an ordinary Keras classifier from states to action probabilities, so one policy-gradient step is
one ``train_on_batch``: the sparse categorical cross-entropy of the action taken is ``-log pi(a|s)``, and
weighting each sample by its advantage gives ``-mean(A * log pi(a|s))``, the REINFORCE loss. Nothing here
needs a backend's own gradient code, so it trains the same under tensorflow, jax and torch.

    policy = policy_mlp(num_observations=4, num_actions=2)
    compile_policy(policy, learning_rate=1e-2)
    batch = play_episodes(keras_policy(policy), 16, seed=0, rng=np.random.default_rng(0))
    advantages = normalise(np.concatenate([discounted_returns(r, 0.99) for r in batch.rewards]))
    policy_gradient_step(policy, batch.all_states, batch.all_actions, advantages)

Episodes are played in lockstep, one policy call for the whole batch of environments per time step (the
environments that have finished keep their last state in the batch and are not stepped), so Keras is called
once per step rather than once per environment per step. gymnasium is imported only by the functions that
play episodes (the ``rl`` extra).
"""
from __future__ import annotations

import dataclasses

import numpy as np

#: Smallest padded batch for a policy-gradient step (see `policy_gradient_step`).
MIN_PADDED_BATCH = 64


def policy_mlp(num_observations: int, num_actions: int, hidden=(32,), activation="relu", name="policy"):
    """A small MLP from observations to action probabilities (softmax): kerastk's `mlp` builder.

    Args:
        num_observations: length of the observation vector (4 for CartPole).
        num_actions: number of discrete actions (2 for CartPole).
        hidden: units of each hidden layer.
        activation: hidden activation.
    """
    from kerastk.models.mlp import mlp

    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    return mlp(input_shape=(num_observations,), num_classes=num_actions, depth=len(hidden), width=hidden,
               activation=activation, output_activation="softmax", name=name)


def compile_policy(model, learning_rate: float = 1e-2, optimizer="adam", **optimizer_options):
    """Compile `model` for `policy_gradient_step`: sparse categorical cross-entropy (= -log pi(a|s)).

    `optimizer_options` (e.g. clipnorm=1.0, weight_decay=1e-4) go into the Keras optimizer's config."""
    import keras

    from kerastk.optimizers import make_optimizer

    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be a number > 0; received {learning_rate!r}.")
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, **optimizer_options),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    return model


def discounted_returns(rewards, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1} for one episode's rewards (G after the last step is 0).

    >>> discounted_returns([1, 1, 1], 0.5)
    array([1.75, 1.5 , 1.  ], dtype=float32)
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"`gamma` must be in [0, 1]; received {gamma!r}.")
    rewards = np.asarray(rewards, dtype="float64")
    if rewards.ndim != 1:
        raise ValueError(f"`rewards` must be one episode's rewards, a 1-D sequence; received shape {rewards.shape}.")
    returns = np.empty_like(rewards)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        returns[t] = g
    return returns.astype("float32")


def normalise(x, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / std: returns used as advantages with the batch mean as baseline and unit scale.

    A constant batch (std 0) gives zeros: no action is better than another, so no step is taken."""
    x = np.asarray(x, dtype="float64")
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty 1-D array of returns; received shape {x.shape}.")
    std = x.std()
    centred = x - x.mean()
    return (centred / std if std > eps else np.zeros_like(centred)).astype("float32")


def padded_size(n: int, minimum: int = MIN_PADDED_BATCH) -> int:
    """The next power of two >= n (at least `minimum`): the few batch shapes the jitted train step sees."""
    return max(minimum, 1 << (int(n) - 1).bit_length())


def policy_gradient_step(model, states, actions, advantages) -> float:
    """One REINFORCE update: ``train_on_batch(states, actions, sample_weight=advantages)``. Returns the loss.

    The batch is padded with zero-weight rows to a power of two (JAX and TensorFlow compile one train step per
    batch shape; episode batches have a new length every time), and the weights are scaled by
    padded/real so the loss is the mean over the real samples: ``-mean(A * log pi(a|s))``.
    """
    states = np.asarray(states, dtype="float32")
    actions = np.asarray(actions).astype("int32")
    advantages = np.asarray(advantages, dtype="float32")
    n = len(states)
    if states.ndim != 2 or n == 0:
        raise ValueError(f"`states` must be a non-empty (steps, observations) array; received shape {states.shape}.")
    if actions.shape != (n,) or advantages.shape != (n,):
        raise ValueError(f"`actions` and `advantages` must be 1-D with one entry per state ({n}); received shapes "
                         f"{actions.shape} and {advantages.shape}.")
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise ValueError("The policy must be compiled first (kerastk.rl.compile_policy(model)).")
    size = padded_size(n)
    pad = size - n
    x = np.concatenate([states, np.zeros((pad, states.shape[1]), "float32")])
    y = np.concatenate([actions, np.zeros(pad, "int32")])
    w = np.concatenate([advantages * (size / n), np.zeros(pad, "float32")])
    loss = model.train_on_batch(x, y, sample_weight=w)
    return float(np.ravel(np.asarray(loss))[0])


def action_log_probs(model, states, actions) -> np.ndarray:
    """log pi(a|s) of each (state, action) pair under the Keras policy."""
    probs = np.asarray(model.predict_on_batch(np.asarray(states, dtype="float32")))
    return np.log(probs[np.arange(len(probs)), np.asarray(actions)])


def keras_policy(model):
    """`states (n, obs) -> action probabilities (n, actions)` with the Keras model (compiled predict step)."""
    return lambda states: np.asarray(model.predict_on_batch(states))


def onnx_policy(onnx_model):
    """The same function from a kerastk.deploy.OnnxModel (numpy + onnxruntime only)."""
    return lambda states: np.asarray(onnx_model.predict(states))


def choose_actions(probs, greedy: bool = False, rng=None) -> np.ndarray:
    """Greedy (argmax) or sampled actions from rows of action probabilities."""
    probs = np.asarray(probs, dtype="float64")
    if greedy:
        return probs.argmax(axis=1)
    if rng is None:
        raise ValueError("Sampled actions need `rng` (a numpy Generator); pass greedy=True for argmax actions.")
    u = rng.random((len(probs), 1))
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


@dataclasses.dataclass
class Episodes:
    """What a batch of episodes saw and did: one array per episode."""

    states: list  # (steps, observations) float32
    actions: list  # (steps,) int
    rewards: list  # (steps,) float32

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode (CartPole: its length)."""
        return np.array([float(np.sum(r)) for r in self.rewards])

    @property
    def all_states(self) -> np.ndarray:
        return np.concatenate(self.states)

    @property
    def all_actions(self) -> np.ndarray:
        return np.concatenate(self.actions)


def play_episodes(policy, n_episodes: int, env_id: str = "CartPole-v1", seed: int = 0, greedy: bool = False,
                  rng=None, max_steps: int | None = None) -> Episodes:
    """Play `n_episodes` episodes in lockstep, one `policy(states)` call per time step for the whole batch.

    Args:
        policy: `states (n, obs) float32 -> action probabilities (n, actions)` (`keras_policy`, `onnx_policy`).
        n_episodes: environments played side by side, one episode each.
        env_id: a gymnasium environment with a flat Box observation and Discrete actions.
        seed: episode i starts from `env.reset(seed=seed + i)`.
        greedy: argmax actions (evaluation) instead of sampling from the probabilities (training).
        rng: numpy Generator for sampled actions.
        max_steps: stop every episode after this many steps (default: the environment's own time limit).
    """
    import gymnasium as gym

    from kerastk.core.checks import check_int

    check_int("n_episodes", n_episodes)
    envs = [gym.make(env_id) for _ in range(n_episodes)]
    try:
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype("float32")
        alive = np.ones(n_episodes, bool)
        states, actions, rewards = ([[] for _ in envs] for _ in range(3))
        step = 0
        while alive.any() and (max_steps is None or step < max_steps):
            chosen = choose_actions(policy(obs), greedy=greedy, rng=rng)
            for i in np.flatnonzero(alive):
                states[i].append(obs[i].copy())
                actions[i].append(int(chosen[i]))
                next_obs, reward, terminated, truncated, _ = envs[i].step(int(chosen[i]))
                rewards[i].append(float(reward))
                obs[i] = next_obs
                alive[i] = not (terminated or truncated)
            step += 1
    finally:
        for env in envs:
            env.close()
    return Episodes([np.array(s, "float32") for s in states], [np.array(a, "int64") for a in actions],
                    [np.array(r, "float32") for r in rewards])


@dataclasses.dataclass
class TrainingLog:
    """Per iteration of `reinforce`: the mean return of its episodes, the running average over the last
    `window` training episodes, the loss, and every training episode's return."""

    mean_return: list = dataclasses.field(default_factory=list)
    running_average: list = dataclasses.field(default_factory=list)
    loss: list = dataclasses.field(default_factory=list)
    episode_returns: list = dataclasses.field(default_factory=list)
    solved_at_iteration: int | None = None


def reinforce(model, iterations: int, episodes_per_iteration: int = 16, gamma: float = 0.99,
              env_id: str = "CartPole-v1", seed: int = 0, target: float | None = None, window: int = 100,
              on_iteration=None) -> TrainingLog:
    """Train a compiled policy with REINFORCE: play a batch of sampled episodes, take one policy-gradient step
    on their normalised discounted returns, repeat.

    Args:
        model: a compiled policy (`compile_policy`).
        iterations: maximum number of batches (policy-gradient steps).
        episodes_per_iteration: episodes per batch.
        gamma: discount factor.
        target: stop once the average return of the last `window` training episodes reaches it (None: never).
        on_iteration: `on_iteration(iteration, log)` after each step (printing progress).
    """
    from kerastk.core.checks import check_int

    for arg, value in (("iterations", iterations), ("episodes_per_iteration", episodes_per_iteration),
                       ("window", window)):
        check_int(arg, value)
    rng = np.random.default_rng(seed)
    log = TrainingLog()
    for it in range(iterations):
        batch = play_episodes(keras_policy(model), episodes_per_iteration, env_id=env_id,
                              seed=seed * 1_000_003 + it * episodes_per_iteration, rng=rng)
        advantages = normalise(np.concatenate([discounted_returns(r, gamma) for r in batch.rewards]))
        log.loss.append(policy_gradient_step(model, batch.all_states, batch.all_actions, advantages))
        log.episode_returns.extend(batch.returns.tolist())
        log.mean_return.append(float(batch.returns.mean()))
        log.running_average.append(float(np.mean(log.episode_returns[-window:])))
        if on_iteration is not None:
            on_iteration(it, log)
        if target is not None and len(log.episode_returns) >= window and log.running_average[-1] >= target:
            log.solved_at_iteration = it
            break
    return log
