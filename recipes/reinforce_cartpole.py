"""REINFORCE on CartPole: a Keras policy network learns to balance a pole by policy gradient, then plays from ONNX.

The policy is a small MLP from the 4 state numbers (cart position and velocity, pole angle and angular velocity)
to the probabilities of pushing left or right. Each iteration plays a batch of episodes in lockstep, sampling
actions from the policy, and takes one policy-gradient step: the discounted return G_t of every step, normalised
over the batch (the batch mean is the baseline), weights the cross-entropy of the action taken, so
``train_on_batch(states, actions, sample_weight=advantages)`` minimises -mean(A * log pi(a|s)): actions that led
to longer-than-average futures become more likely. Training stops when the last 100 training episodes average
the target return; then 100 fresh episodes are played greedily (argmax action) to score the policy. The policy
is exported to ONNX, validated, and plays one more episode from onnxruntime alone, its actions checked against
the Keras policy's on every state it visits.

    python recipes/reinforce_cartpole.py                     # usually solved in 30-50 iterations (< 1 min)
    KERAS_BACKEND=jax python recipes/reinforce_cartpole.py --target 475   # CartPole-v1's own threshold
    kerastk train reinforce_cartpole --smoke                 # 2 iterations, still exports and plays from ONNX

--epochs is the maximum number of iterations (policy-gradient steps), --batch-size the episodes per iteration.
"""
import json
import time
from pathlib import Path

import numpy as np

from kerastk import rl
from kerastk.backend import active_backend, set_seed, versions
from kerastk.training import parse_recipe_args, recipe_main, recipe_parser
from kerastk.viz.curves import save_figure

ENV_ID = "CartPole-v1"  # 500-step episodes, +1 per step the pole stays up
EPOCHS = 200  # maximum iterations; the target is usually reached in 30-50
BATCH_SIZE = 16  # episodes per iteration: enough to average out the policy's sampling noise in one gradient
LEARNING_RATE = 1e-2  # Adam; a tiny network and normalised advantages tolerate a large step
GAMMA = 0.99  # discount: credit reaches ~100 steps ahead, long enough to see a fall coming
HIDDEN = (32,)  # one hidden ReLU layer: 226 parameters are plenty for CartPole
TARGET = 195.0  # average return over 100 consecutive episodes that counts as solved (the classic CartPole goal)
WINDOW = 100  # episodes in the running average
EVAL_EPISODES = 100  # greedy evaluation episodes, never seen in training (their seeds are offset)
EVAL_SEED_OFFSET = 10**8  # evaluation and ONNX episodes start from states training never used
ACTIONS = ["push left", "push right"]
OBSERVATIONS = ["cart position", "cart velocity", "pole angle", "pole angular velocity"]
NAME = "reinforce_cartpole"


def plot_learning(log, eval_returns, target, path, title):
    """Return per iteration (each episode a dot), the 100-episode running average, and the greedy evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_eval) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    iterations = np.arange(1, len(log.mean_return) + 1)
    per_iteration = len(log.episode_returns) // len(log.mean_return)
    ax.scatter(np.repeat(iterations, per_iteration), log.episode_returns[:per_iteration * len(iterations)], s=4,
               color="tab:blue", alpha=0.15, label="episode return")
    ax.plot(iterations, log.mean_return, color="tab:blue", label="mean return of the iteration")
    ax.plot(iterations, log.running_average, color="tab:orange", lw=2, label=f"average of last {WINDOW} episodes")
    ax.axhline(target, color="gray", ls="--", label=f"target {target:g}")
    ax.set_xlabel("iteration (one policy-gradient step)")
    ax.set_ylabel("return (steps balanced)")
    ax.set_title("training (sampled actions)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax_eval.plot(np.arange(1, len(eval_returns) + 1), eval_returns, ".", color="tab:green")
    ax_eval.axhline(np.mean(eval_returns), color="tab:green")  # no legend: it would hide episodes
    ax_eval.axhline(target, color="gray", ls="--")
    ax_eval.set_ylim(0, 520)
    ax_eval.set_xlabel("evaluation episode")
    ax_eval.set_title(f"{len(eval_returns)} greedy episodes: mean {np.mean(eval_returns):.1f} (green line)",
                      fontsize=10)
    ax_eval.grid(alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)


def write_history(log, path):
    """history.csv, one row per iteration (the runner's layout: an `epoch` column counted from 0)."""
    rows = ["epoch,mean_return,average_return_100,loss"]
    rows += [f"{i},{m:.4f},{a:.4f},{loss:.6g}"
             for i, (m, a, loss) in enumerate(zip(log.mean_return, log.running_average, log.loss))]
    Path(path).write_text("\n".join(rows) + "\n")


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--gamma", type=float, default=GAMMA, help="discount factor in [0, 1]")
    parser.add_argument("--target", type=float, default=TARGET,
                        help=f"stop when the last {WINDOW} training episodes average this return")
    parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES, help="greedy evaluation episodes")
    args = parse_recipe_args(parser, argv)
    if not 0.0 <= args.gamma <= 1.0:
        parser.error(f"--gamma must be in [0, 1]; received {args.gamma}")
    if args.eval_episodes < 1:
        parser.error(f"--eval-episodes must be >= 1; received {args.eval_episodes}")
    # The toolbox flags that act on the optimizer apply; the ones that need fit() (schedules, EMA, penalties,
    # diagnostics, data parallelism, the LR finder) do not: say so rather than ignore them.
    unsupported = [f"--{k.replace('_', '-')}" for k in sorted(args.options.changed())
                   if k not in ("learning_rate", "clipnorm", "weight_decay", "lr_schedule")]
    if args.options.lr_schedule not in ("plateau", "constant"):
        unsupported.append(f"--lr-schedule {args.options.lr_schedule}")
    if unsupported:
        parser.error(f"{NAME} trains with train_on_batch, not fit(): it takes --learning-rate, --clipnorm and "
                     f"--weight-decay (constant learning rate); received {', '.join(unsupported)}")
    learning_rate = args.options.learning_rate or LEARNING_RATE
    eval_episodes = min(args.eval_episodes, 10) if args.smoke else args.eval_episodes
    start = time.perf_counter()
    set_seed(args.seed)
    run_dir = Path(args.out) / NAME
    run_dir.mkdir(parents=True, exist_ok=True)

    # --- policy: states -> action probabilities, compiled so that train_on_batch is a policy-gradient step
    policy = rl.policy_mlp(len(OBSERVATIONS), len(ACTIONS), hidden=HIDDEN, name="cartpole_policy")
    rl.compile_policy(policy, learning_rate=learning_rate, clipnorm=args.options.clipnorm,
                      weight_decay=args.options.weight_decay)

    # --- train: batches of sampled episodes, one REINFORCE step each, until the running average hits the target
    def progress(it, log):
        if args.verbose and (it % 5 == 0 or log.running_average[-1] >= args.target):
            print(f"iteration {it + 1:3d}: mean return {log.mean_return[-1]:6.1f}, average of last "
                  f"{min(WINDOW, len(log.episode_returns))} episodes {log.running_average[-1]:6.1f}, "
                  f"loss {log.loss[-1]:+.4f}")

    t0 = time.perf_counter()
    log = rl.reinforce(policy, args.epochs, args.batch_size, gamma=args.gamma, env_id=ENV_ID, seed=args.seed,
                       target=args.target, window=WINDOW, on_iteration=progress)
    train_seconds = time.perf_counter() - t0

    # --- evaluate: fresh episodes, greedy actions
    evaluation = rl.play_episodes(rl.keras_policy(policy), eval_episodes, env_id=ENV_ID,
                                  seed=EVAL_SEED_OFFSET + args.seed * 1000, greedy=True)
    eval_returns = evaluation.returns
    solved = bool(len(eval_returns) >= WINDOW and eval_returns.mean() >= args.target)
    policy.save(run_dir / "model.keras")

    # --- export, validate, and play one episode from onnxruntime alone
    from kerastk.deploy import OnnxModel, export_onnx, write_card

    states = evaluation.all_states
    export = export_onnx(policy, run_dir / "model.onnx", inputs=states[:64])
    onnx_model = OnnxModel(run_dir / "model.onnx", card={})
    probs_diff = float(np.max(np.abs(onnx_model.predict(states) - np.asarray(policy.predict(states, verbose=0)))))
    onnx_episode = rl.play_episodes(rl.onnx_policy(onnx_model), 1, env_id=ENV_ID,
                                    seed=EVAL_SEED_OFFSET + args.seed * 1000 + 999_999, greedy=True)
    onnx_states, onnx_actions = onnx_episode.states[0], onnx_episode.actions[0]
    keras_actions = np.asarray(policy.predict(onnx_states, verbose=0)).argmax(axis=1)
    same_actions = int(np.sum(keras_actions == onnx_actions))
    onnx_return = float(onnx_episode.returns[0])
    if same_actions != len(onnx_actions):
        raise RuntimeError(f"model.onnx chose {len(onnx_actions) - same_actions} of {len(onnx_actions)} actions "
                           "differently from the Keras policy on the same states.")

    keras_metrics = {"eval_mean_return": float(eval_returns.mean()), "eval_min_return": float(eval_returns.min()),
                     "eval_episodes": len(eval_returns), "solved": solved}
    onnx_metrics = {"episode_return": onnx_return, "actions_equal_keras": same_actions / len(onnx_actions),
                    "max_abs_diff_test_split": probs_diff}
    write_card(run_dir / "model.onnx", name=NAME, export_result=export, preprocessing={"type": "none"},
               class_names=ACTIONS, task="policy", metrics_keras=keras_metrics, metrics_onnx=onnx_metrics,
               extra={"environment": ENV_ID, "observations": OBSERVATIONS, "input_shape": [len(OBSERVATIONS)],
                      "input": "CartPole observation (batch, 4), raw float32 as gymnasium returns it",
                      "output": "action probabilities (batch, 2); argmax is the greedy action",
                      "dataset": {"name": ENV_ID, "source": "gymnasium", "test_samples": len(states)}})

    # --- record: curves, history, summary, report
    write_history(log, run_dir / "history.csv")
    plot_learning(log, eval_returns, args.target, run_dir / "curves.png",
                  f"REINFORCE on {ENV_ID} ({active_backend()})")
    seconds = time.perf_counter() - start
    summary = {
        "environment": ENV_ID, "backend": active_backend(), "algorithm": "REINFORCE, normalised discounted returns",
        "parameters": policy.count_params(), "hidden": list(HIDDEN), "learning_rate": learning_rate,
        "gamma": args.gamma, "episodes_per_iteration": args.batch_size, "target": args.target,
        "iterations": len(log.mean_return), "training_episodes": len(log.episode_returns),
        "solved_at_iteration": None if log.solved_at_iteration is None else log.solved_at_iteration + 1,
        "final_training_average": log.running_average[-1],
        "evaluation": {"policy": "greedy (argmax)", "episodes": len(eval_returns),
                       "mean_return": float(eval_returns.mean()), "min_return": float(eval_returns.min()),
                       "max_return": float(eval_returns.max()), "solved": solved},
        "onnx": {"route": export.route, "parity_max_abs_diff": export.validation.max_abs_diff,
                 "probs_max_abs_diff_eval_states": probs_diff, "episode_return": onnx_return,
                 "actions_equal_keras": f"{same_actions}/{len(onnx_actions)}"},
        "train_seconds": round(train_seconds, 2), "seconds": round(seconds, 2), "versions": versions(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if log.solved_at_iteration is not None:
        reached = (f"the last {WINDOW} training episodes averaged {args.target:g} at iteration "
                   f"{log.solved_at_iteration + 1}")
    else:
        reached = f"target {args.target:g} not reached (last running average {log.running_average[-1]:.1f})"
    report = [
        f"# {NAME}", "",
        ("REINFORCE (policy gradient with the batch-mean baseline: discounted returns normalised over each batch) "
         f"on gymnasium's {ENV_ID}. One `train_on_batch(states, actions, sample_weight=advantages)` with sparse "
         "categorical cross-entropy per iteration is the policy-gradient step."), "",
        "## Setup",
        (f"- backend: {active_backend()}; policy {policy.name}: MLP 4-{'-'.join(map(str, HIDDEN))}-2, "
         f"{policy.count_params()} parameters; Adam lr {learning_rate:g}, gamma {args.gamma:g}, "
         f"{args.batch_size} episodes per iteration"), "",
        "## Training",
        f"- {len(log.mean_return)} iterations, {len(log.episode_returns)} episodes, {train_seconds:.1f} s; {reached}",
        "",
        "## Evaluation (greedy actions, fresh episodes)",
        (f"- {len(eval_returns)} episodes: mean return {eval_returns.mean():.1f} (min {eval_returns.min():.0f}, "
         f"max {eval_returns.max():.0f}); solved (mean >= {args.target:g} over {WINDOW}): {solved}"), "",
        "## Export",
        f"- model.onnx via the {export.route} route; parity: {export.validation}",
        (f"- one episode played from onnxruntime: return {onnx_return:.0f}; actions equal to the Keras policy's on "
         f"{same_actions}/{len(onnx_actions)} states; action probabilities max abs diff {probs_diff:.2e} on "
         f"{len(states)} evaluation states"), "",
        "![curves](curves.png)", "",
    ]
    (run_dir / "report.md").write_text("\n".join(report))

    print(f"{NAME}: {'solved' if log.solved_at_iteration is not None else 'not solved'} in "
          f"{len(log.mean_return)} iterations ({len(log.episode_returns)} episodes, {train_seconds:.1f} s); "
          f"greedy evaluation over {len(eval_returns)} episodes: mean return {eval_returns.mean():.1f} "
          f"(min {eval_returns.min():.0f}) -> {'>=' if eval_returns.mean() >= args.target else '<'} "
          f"{args.target:g}; ONNX ({export.route}) episode return {onnx_return:.0f}, actions equal to Keras "
          f"{same_actions}/{len(onnx_actions)}, probs max abs diff {probs_diff:.1e}; {seconds:.1f} s -> {run_dir}")
    return {"run_dir": run_dir, "summary": summary, "log": log, "export": export, "solved": solved}


if __name__ == "__main__":
    recipe_main(main)
