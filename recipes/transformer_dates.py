"""A Transformer on the dates task: the same translation as seq2seq_dates, with attention only (no recurrence).

Encoder and decoder of Keras MultiHeadAttention blocks with sinusoidal positional encoding; the decoder's
self-attention is causal. Trained teacher-forced on human-readable -> ISO dates, scored by GREEDY DECODING
(kerastk.deploy.generate) on held-out dates in Keras and from the exported ONNX file, then compared with the
seq2seq_dates run when one exists in the same --out folder (parameters and exact match).

    python recipes/transformer_dates.py
    python recipes/seq2seq_dates.py && python recipes/transformer_dates.py     # with the comparison
    kerastk train transformer_dates --smoke
"""
import json

import keras

import kerastk
from kerastk.backend import set_seed
from kerastk.deploy.generate import keras_onnx_greedy
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 8  # about 99% exact match by then; early stopping on val_loss may end the run sooner
BATCH_SIZE = 64  # 175 updates per epoch on 11,200 training pairs
LEARNING_RATE = 2e-3  # Adam; ReduceLROnPlateau halves it when val_loss stalls
N_SAMPLES = 16_000  # as seq2seq_dates: same data, same held-out dates for the same seed
NUM_LAYERS = 2  # encoder blocks and decoder blocks
D_MODEL = 32  # token state width
NUM_HEADS = 4  # 8 features per head
FF_DIM = 64  # feed-forward hidden width
DROPOUT = 0.0  # generated data without noise: dropout (the paper's 0.1) only slows learning here
NORM_FIRST = True  # pre-norm blocks train without a warm-up schedule


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: character ids, 0 = padding, 1 = <s>, 2 = </s>; x = [source, <s> + target[:-1]], y = target
    data = recipe_data("dates", args, n_samples=N_SAMPLES)
    target_vocab = data.info["target_vocab"]

    # --- model
    model = kerastk.create_model("transformer", source_vocab=len(data.info["source_vocab"]),
                                 target_vocab=len(target_vocab), source_length=data.info["source_length"],
                                 target_length=data.info["target_length"], num_layers=NUM_LAYERS, d_model=D_MODEL,
                                 num_heads=NUM_HEADS, ff_dim=FF_DIM, dropout=DROPOUT, norm_first=NORM_FIRST)

    # --- train teacher-forced, evaluate, save, export, validate, report
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    result = run(model, data, "transformer_dates", loss=loss, metrics=["accuracy"], learning_rate=LEARNING_RATE,
                 epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed,
                 verbose=args.verbose, options=args.options,
                 notes=f"Transformer ({NUM_LAYERS}+{NUM_LAYERS} blocks, d_model {D_MODEL}, {NUM_HEADS} heads) on "
                       "generated human-readable -> ISO dates (test dates disjoint from training dates). Test "
                       "metrics here are teacher-forced; greedy-decoding exact match is below.")

    # --- greedy decoding on the held-out dates, in Keras and from the ONNX file
    decoded = keras_onnx_greedy(model, result.run_dir / "model.onnx", [data.x_test[0]], data.y_test, target_vocab)
    predicted = decoded["predicted"]
    keras_exact, onnx_exact = decoded["keras_exact_match"], decoded["onnx_exact_match"]
    same = decoded["keras_onnx_same_tokens"]
    greedy = {"keras_exact_match": keras_exact, "onnx_exact_match": onnx_exact, "keras_onnx_same_tokens": same,
              "test_samples": len(predicted), "parameters": model.count_params(),
              "train_seconds": result.train_seconds}
    (result.run_dir / "greedy_decoding.json").write_text(json.dumps(greedy, indent=2) + "\n")

    # --- comparison with the recurrent model, when seq2seq_dates ran into the same folder
    lines = [(f"transformer: {model.count_params():,} params, greedy exact match {keras_exact:.4f}, "
              f"training {result.train_seconds:.0f} s")]
    other = result.run_dir.parent / "seq2seq_dates" / "greedy_decoding.json"
    if other.is_file():
        s2s = json.loads(other.read_text())
        lines.append(f"seq2seq_attention: {s2s['parameters']:,} params, greedy exact match "
                     f"{s2s['keras_exact_match']:.4f} (from {other})")
    with open(result.run_dir / "report.md", "a") as f:
        f.write("\n## Greedy decoding (held-out dates)\n"
                f"- exact match: Keras {keras_exact:.4f}, ONNX {onnx_exact:.4f}; "
                f"identical tokens in {100 * same:.2f}% of rows\n" + "".join(f"- {ln}\n" for ln in lines))
    result.greedy = greedy
    print(f"transformer_dates: greedy exact match {keras_exact:.4f} (ONNX {onnx_exact:.4f}, same tokens "
          f"{100 * same:.1f}%), token accuracy {result.accuracy:.4f}, route {result.export.route}, "
          f"{result.seconds:.1f} s -> {result.run_dir}")
    for line in lines:
        print("  " + line)
    return result


if __name__ == "__main__":
    recipe_main(main)
