"""kerastk.rl: the pieces of REINFORCE (returns, advantages, the train_on_batch policy-gradient step, lockstep
episodes) and the policy's ONNX export, under the backend this process runs."""
import gymnasium  # noqa: F401  (the `rl` extra, in `all`: a missing install fails here rather than skipping)
import numpy as np
import pytest

from kerastk import rl
from kerastk.backend import set_seed


@pytest.fixture
def policy():
    set_seed(1)
    model = rl.policy_mlp(4, 2, hidden=(16,))
    return rl.compile_policy(model, learning_rate=0.05, optimizer="sgd")


def random_states(n, seed=0):
    return np.random.default_rng(seed).normal(0, 0.5, (n, 4)).astype("float32")


def test_discounted_returns_hand_values():
    np.testing.assert_allclose(rl.discounted_returns([1, 1, 1], 0.5), [1.75, 1.5, 1.0])
    np.testing.assert_allclose(rl.discounted_returns([0, 0, 1], 0.9), [0.81, 0.9, 1.0], rtol=1e-6)
    np.testing.assert_allclose(rl.discounted_returns([2, -1, 3, 0.5], 1.0), [4.5, 2.5, 3.5, 0.5])
    np.testing.assert_allclose(rl.discounted_returns([5, 7], 0.0), [5, 7])
    # CartPole: +1 per step, so G_0 of a T-step episode is (1 - gamma^T) / (1 - gamma)
    g = rl.discounted_returns(np.ones(200), 0.99)
    assert g[0] == pytest.approx((1 - 0.99**200) / 0.01, rel=1e-5) and g[-1] == 1.0
    assert np.all(np.diff(g) < 0)


@pytest.mark.parametrize("kwargs", [{"rewards": [1, 1], "gamma": 1.5}, {"rewards": [1, 1], "gamma": -0.1},
                                    {"rewards": [[1, 1]], "gamma": 0.9}])
def test_discounted_returns_rejects_bad_input(kwargs):
    with pytest.raises(ValueError, match="gamma|rewards"):
        rl.discounted_returns(**kwargs)


def test_normalise_advantages():
    a = rl.normalise([1.0, 2.0, 3.0, 10.0])
    assert a.mean() == pytest.approx(0, abs=1e-6) and a.std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(a, (np.array([1, 2, 3, 10]) - 4) / np.std([1, 2, 3, 10]), rtol=1e-6)
    np.testing.assert_array_equal(rl.normalise([3.0, 3.0, 3.0]), [0, 0, 0])  # no better action: no step
    with pytest.raises(ValueError, match="non-empty 1-D"):
        rl.normalise([])


def test_padded_size():
    assert [rl.padded_size(n) for n in (1, 64, 65, 500, 1024, 1025)] == [64, 64, 128, 512, 1024, 2048]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_policy_gradient_step_moves_log_prob_with_advantage(policy, sign):
    states, actions = random_states(3), np.array([0, 1, 1])
    initial = policy.get_weights()
    for i in range(3):  # one (state, action) pair per step, from the same weights (plain SGD keeps no state)
        policy.set_weights(initial)
        before = rl.action_log_probs(policy, states[i:i + 1], actions[i:i + 1])[0]
        rl.policy_gradient_step(policy, states[i:i + 1], actions[i:i + 1], [sign])
        change = rl.action_log_probs(policy, states[i:i + 1], actions[i:i + 1])[0] - before
        assert sign * change > 1e-4, change  # the action became more (less) likely
        assert abs(change) < 0.5  # one small SGD step, not a jump


def test_policy_gradient_step_raises_the_objective(policy):
    """On a mixed batch the actions pull against each other; the REINFORCE objective mean(A * log pi) rises."""
    states, actions = random_states(32, seed=2), np.random.default_rng(2).integers(0, 2, 32)
    advantages = rl.normalise(np.random.default_rng(3).normal(size=32))
    before = np.mean(advantages * rl.action_log_probs(policy, states, actions))
    rl.policy_gradient_step(policy, states, actions, advantages)
    after = np.mean(advantages * rl.action_log_probs(policy, states, actions))
    assert after > before + 1e-4, (before, after)


def test_policy_gradient_loss_and_step_equal_unpadded_reinforce(policy):
    """The padded, rescaled batch gives the loss -mean(A * log pi(a|s)) and the same update as the plain batch."""
    import keras

    states, actions = random_states(5, seed=3), np.array([0, 1, 0, 0, 1])
    advantages = np.array([1.5, -0.5, 0.25, -1.0, 0.75], "float32")
    twin = keras.models.clone_model(policy)
    twin.set_weights(policy.get_weights())
    rl.compile_policy(twin, learning_rate=0.05, optimizer="sgd")

    initial = policy.get_weights()
    expected = -np.mean(advantages * rl.action_log_probs(policy, states, actions))
    loss = rl.policy_gradient_step(policy, states, actions, advantages)  # padded to 64 rows
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
    twin.train_on_batch(states, actions, sample_weight=advantages)  # the textbook step, 5 rows
    for a, b in zip(policy.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert max(np.abs(a - w0).max() for a, w0 in zip(policy.get_weights(), initial)) > 1e-3  # it did move


def test_policy_gradient_step_rejects_bad_input(policy):
    states = random_states(4)
    with pytest.raises(ValueError, match="one entry per state"):
        rl.policy_gradient_step(policy, states, [0, 1, 0], np.ones(4))
    with pytest.raises(ValueError, match="non-empty"):
        rl.policy_gradient_step(policy, states[0], [0], [1.0])
    with pytest.raises(ValueError, match="compiled"):
        rl.policy_gradient_step(rl.policy_mlp(4, 2), states, [0, 1, 0, 1], np.ones(4))
    with pytest.raises(ValueError, match="learning_rate"):
        rl.compile_policy(rl.policy_mlp(4, 2), learning_rate=0)


def test_choose_actions_greedy_and_sampled():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    np.testing.assert_array_equal(rl.choose_actions(probs, greedy=True), [0, 1, 0])
    many = np.repeat([[0.2, 0.8]], 20000, axis=0)
    sampled = rl.choose_actions(many, rng=np.random.default_rng(0))
    assert set(np.unique(sampled)) == {0, 1} and sampled.mean() == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="rng"):
        rl.choose_actions(probs)


def test_play_episodes_in_lockstep_matches_a_plain_gymnasium_loop():
    import gymnasium as gym

    def always_right(states):
        return np.tile([0.0, 1.0], (len(states), 1))

    episodes = rl.play_episodes(always_right, 3, seed=7, greedy=True)
    for i in range(3):  # the same episodes, played one at a time
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=7 + i)
        first, steps, done = obs, 0, False
        while not done:
            obs, _, terminated, truncated, _ = env.step(1)
            steps, done = steps + 1, terminated or truncated
        assert episodes.returns[i] == steps and len(episodes.states[i]) == steps
        np.testing.assert_allclose(episodes.states[i][0], first)
        assert np.all(episodes.actions[i] == 1)
    assert 5 < episodes.returns.max() < 20  # pushing one way drops the pole within a few dozen steps
    assert len(episodes.all_states) == len(episodes.all_actions) == int(episodes.returns.sum())
    with pytest.raises(ValueError, match="n_episodes"):
        rl.play_episodes(always_right, 0)


def test_onnx_policy_picks_the_keras_actions(policy, tmp_path):
    from kerastk.deploy import OnnxModel, export_onnx

    states = random_states(256, seed=5)
    result = export_onnx(policy, tmp_path / "policy.onnx", inputs=states[:32])
    assert result.validation.passed
    onnx_policy = rl.onnx_policy(OnnxModel(tmp_path / "policy.onnx", card={}))
    keras_probs, onnx_probs = rl.keras_policy(policy)(states), onnx_policy(states)
    np.testing.assert_allclose(onnx_probs, keras_probs, atol=1e-5)
    np.testing.assert_array_equal(rl.choose_actions(onnx_probs, greedy=True),
                                  rl.choose_actions(keras_probs, greedy=True))
    # and the same episode from either policy
    keras_episode = rl.play_episodes(rl.keras_policy(policy), 1, seed=11, greedy=True)
    onnx_episode = rl.play_episodes(onnx_policy, 1, seed=11, greedy=True)
    np.testing.assert_array_equal(keras_episode.actions[0], onnx_episode.actions[0])


@pytest.mark.slow
def test_reinforce_raises_the_return():
    set_seed(0)
    model = rl.compile_policy(rl.policy_mlp(4, 2, hidden=(32,)), learning_rate=1e-2)
    log = rl.reinforce(model, 15, 16, seed=0)
    assert len(log.mean_return) == len(log.loss) == 15 and len(log.episode_returns) == 15 * 16
    assert np.mean(log.mean_return[-3:]) > 1.5 * np.mean(log.mean_return[:3]), log.mean_return
    with pytest.raises(ValueError, match="iterations"):
        rl.reinforce(model, 0)


def test_recipe_rejects_flags_that_need_fit(capsys):
    import runpy
    from pathlib import Path

    main = runpy.run_path(str(Path(__file__).resolve().parent.parent / "recipes" / "reinforce_cartpole.py"))["main"]
    for argv, message in ((["--ema", "--lr-schedule", "cosine"], "received --ema, --lr-schedule cosine"),
                          (["--gamma", "1.5"], "--gamma must be in [0, 1]")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
