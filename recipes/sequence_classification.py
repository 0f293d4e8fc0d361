"""Memory over time: a simple RNN forgets as sequences grow, LSTM and GRU gates hold on.

Each sequence is random distractor tokens with one marker (A or B) hidden at a random position; the label is
which marker it was, read after the last token. Markers near the end are easy for any RNN. Markers far back need
the information carried through many steps: a simple RNN's gradient shrinks (or explodes) with every step it
travels back, so it fails to learn once sequences are long, while the LSTM's cell state and the GRU's update gate
learn to latch the marker and keep it. The recipe trains all three at three sequence lengths, prints the test
accuracies as a table and saves accuracy-vs-length as a PNG (<out>/sequence_classification/).

On CPU, Keras on torch runs recurrent layers as a Python loop over the time steps, far slower than TensorFlow
or JAX (10 epochs of the simple RNN at length 50 took 410 s here against 12 s on TensorFlow): use --smoke there.

    python recipes/sequence_classification.py        # 9 runs, ~2-3 minutes on 2 CPU cores (TensorFlow, JAX)
    kerastk train sequence_classification --smoke
"""
from pathlib import Path

import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 10  # gated RNNs sit at chance for a few epochs on long sequences, then jump to ~100%
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
LENGTHS = (10, 50, 100)  # sequence lengths: the marker lies up to length - 1 steps before the end
SMOKE_LENGTHS = (8,)  # --smoke: one short length, the three cells
N_SAMPLES = 2000  # 1,400 train / 300 validation / 300 test sequences per length
CELLS = ("simple_rnn", "lstm", "gru")
EMBED_DIM = 8
UNITS = 32


def run_name(cell, length):
    return f"memory_{cell}_len{length}"


def plot(table, lengths, path):
    """Test accuracy against sequence length, one line per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = {"simple_rnn": ("o", "-", 7), "lstm": ("s", "--", 9), "gru": ("^", ":", 6)}  # lines may overlap
    for cell in CELLS:
        marker, line, size = styles[cell]
        ax.plot(lengths, [table[cell, n] for n in lengths], marker=marker, linestyle=line, markersize=size,
                label=cell)
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("sequence length (marker up to length - 1 steps back)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.3, 1.05)
    ax.set_title("Which marker was in the sequence?")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    lengths = SMOKE_LENGTHS if args.smoke else LENGTHS
    results, table = {}, {}
    for length in lengths:
        # --- data: one marker among `length` tokens; 2 classes, chance = 50%
        data = recipe_data("memory", args, n_samples=N_SAMPLES, length=length)
        for cell in CELLS:
            # --- model: embedding -> one recurrent layer -> softmax over the two markers
            set_seed(args.seed)
            model = kerastk.create_model(f"{cell}_classifier", vocab_size=len(data.info["vocab"]),
                                         sequence_length=length, num_classes=data.num_classes,
                                         embed_dim=EMBED_DIM, units=UNITS)
            # --- train: no early stop or LR cut during the first flat epochs (the loss plateaus before it drops)
            name = run_name(cell, length)
            results[name] = run(model, data, name, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                                learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size,
                                out=args.out, seed=args.seed, verbose=args.verbose, options=args.options, patience=args.epochs,
                                lr_patience=args.epochs,
                                notes=f"{cell} ({UNITS} units) on the memory task, sequences of {length} tokens.")
            table[cell, length] = results[name].accuracy

    # --- the table and the plot
    summary_dir = Path(args.out) / "sequence_classification"
    summary_dir.mkdir(parents=True, exist_ok=True)
    header = "| cell | " + " | ".join(f"length {n}" for n in lengths) + " |"
    rows = [header, "|---" * (len(lengths) + 1) + "|"]
    rows += [f"| {cell} | " + " | ".join(f"{table[cell, n]:.3f}" for n in lengths) + " |" for cell in CELLS]
    (summary_dir / "results.md").write_text("Test accuracy on the memory task (chance 0.5)\n\n" + "\n".join(rows)
                                            + "\n\n![accuracy vs length](accuracy_vs_length.png)\n")
    png = plot(table, lengths, summary_dir / "accuracy_vs_length.png")
    print("\n".join(rows))
    longest = lengths[-1]
    seconds = sum(r.seconds for r in results.values())
    print(f"sequence_classification: test accuracy at length {longest}: "
          + ", ".join(f"{cell} {table[cell, longest]:.3f}" for cell in CELLS)
          + f"; routes {sorted({r.export.route for r in results.values()})}, {seconds:.1f} s -> {png}")
    return results


if __name__ == "__main__":
    recipe_main(main)
