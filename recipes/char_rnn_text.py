"""Character-level language model: a GRU reads English text one character at a time and writes more of it.

The model sees windows of 64 characters and predicts, at every position, the next character (teacher forcing:
the targets are the inputs shifted by one). Its held-out perplexity - exp of the mean cross-entropy per
character - says how many characters it is still hesitating between (the vocabulary has ~100). After training,
the same decoding loop (kerastk.deploy.generate) samples text from the Keras model and from the exported ONNX
file at several temperatures: low temperatures repeat the most common phrases, high ones invent words. With the
same seed both files write the same characters, as long as their logits agree to float precision.

The default corpus is the docstrings of a fixed list of Python standard-library modules (on every machine);
pass --text FILE to learn your own text instead.

On CPU, Keras on torch runs recurrent layers as a Python loop over the time steps: a training step of this
model took ~4 s there against ~0.15 s on TensorFlow, so prefer TensorFlow (or JAX) for the full run.

    python recipes/char_rnn_text.py                       # ~2 minutes on 2 CPU cores (TensorFlow)
    python recipes/char_rnn_text.py --text my_book.txt --max-chars 0
    kerastk train char_rnn_text --smoke
"""
import keras
import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.deploy.generate import decode_tokens, encode_text, generate, keras_predictor, onnx_predictor
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 6  # about 2 minutes on 2 cores; perplexity keeps falling for longer runs
BATCH_SIZE = 32  # small batches: more updates per epoch
LEARNING_RATE = 5e-3  # a little above Adam's default: recurrent LMs tolerate it and learn faster
SEQUENCE_LENGTH = 64  # characters per training window, and the context window when generating
MAX_CHARS = 200_000  # the first 200k characters of the corpus (~2,500 training windows)
CELL = "gru"  # learned faster than an LSTM of the same width in our runs (perplexity 5.3 vs 7.4 after 4 epochs)
UNITS = 256
NUM_LAYERS = 1  # 2 stacks a second GRU: better text, twice the time
EMBED_DIM = 32
DROPOUT = 0.0  # the model underfits in this budget; raise for long runs on a small corpus
TEMPERATURES = (0.5, 1.0, 1.5)
GENERATED_CHARS = 300
PROMPT = "The "
SMOKE = dict(sequence_length=16, units=64, chars=40)  # --smoke: short windows (Keras's RNN loop is slow on torch)


def prompt_tokens(vocab, data, prompt=PROMPT):
    """The prompt as token ids, or - when the corpus lacks one of its characters - the start of held-out text."""
    if all(c in vocab for c in prompt):
        return encode_text([prompt], vocab)
    return np.asarray(data.x_test[:1, :8], dtype=np.int32)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--text", default=None, metavar="FILE", help="a UTF-8 text file to learn instead")
    parser.add_argument("--max-chars", type=int, default=MAX_CHARS,
                        help=f"use the first N characters (default {MAX_CHARS:,}; 0 = all)")
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    length, units, steps = ((SMOKE["sequence_length"], SMOKE["units"], SMOKE["chars"]) if args.smoke
                            else (SEQUENCE_LENGTH, UNITS, GENERATED_CHARS))

    # --- data: (windows, windows shifted by one) of character ids; blocks of windows held out for val / test
    data = recipe_data("text", args, text=args.text, sequence_length=length, max_chars=args.max_chars or None)
    vocab = data.info["vocab"]

    # --- model: any sequence length (the ONNX file too); logits, not probabilities
    model = kerastk.create_model("char_rnn", vocab_size=len(vocab), embed_dim=EMBED_DIM, units=units,
                                 num_layers=NUM_LAYERS, cell=CELL, dropout=DROPOUT)

    # --- train, evaluate (perplexity on held-out text), save, export, validate, report
    result = run(model, data, "char_rnn_text",
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                 learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                 seed=args.seed, verbose=args.verbose, options=args.options, patience=3,
                 notes=f"Character-level {CELL.upper()} language model ({NUM_LAYERS} x {units} units) on "
                       f"{data.info['source']}; windows of {length} characters. Samples at temperatures "
                       f"{', '.join(map(str, TEMPERATURES))} from Keras and ONNX are in samples.txt.")

    # --- generate from the Keras model and from the ONNX file: same loop, same seed
    prompt = prompt_tokens(vocab, data)
    predictors = {"Keras": keras_predictor(model), "ONNX": onnx_predictor(result.run_dir / "model.onnx")}
    shown_prompt = decode_tokens(prompt, vocab, end_id=None, skip=(0,))[0]
    perplexity = f"{result.test_metrics['perplexity']:.3f} (Keras) / {result.onnx_metrics['perplexity']:.3f} (ONNX)"
    lines = [f"# char_rnn_text samples: {data.info['source']}",
             f"# perplexity {perplexity} on held-out text; prompt {shown_prompt!r}", ""]
    agreement = {}
    for temperature in TEMPERATURES:
        tokens = {name: generate(predict, prompt, steps, temperature=temperature, seed=args.seed,
                                 window=length)
                  for name, predict in predictors.items()}
        same = int(np.sum(tokens["Keras"] == tokens["ONNX"]) - prompt.shape[1])
        agreement[temperature] = same / steps
        for name, t in tokens.items():
            lines += [f"## temperature {temperature} ({name})", decode_tokens(t, vocab, end_id=None, skip=(0,))[0],
                      ""]
        lines.append(f"(Keras and ONNX agree on {same} of {steps} generated characters)\n")
    (result.run_dir / "samples.txt").write_text("\n".join(lines))

    print(f"char_rnn_text: held-out perplexity {result.test_metrics['perplexity']:.3f} "
          f"(ONNX {result.onnx_metrics['perplexity']:.3f}), next-char accuracy {result.accuracy:.3f}, "
          f"Keras/ONNX samples agree {', '.join(f'T={t}: {100 * a:.0f}%' for t, a in agreement.items())}, "
          f"route {result.export.route}, {result.seconds:.1f} s -> {result.run_dir / 'samples.txt'}")
    return result


if __name__ == "__main__":
    recipe_main(main)
