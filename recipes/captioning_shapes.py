"""Image captioning: a CNN encoder and a GRU decoder write "a red circle above a blue square" for generated scenes.

The CNN's flattened 4x4 feature map (it keeps where each shape is, which "above" and "left of" need) starts the
GRU's state and is added to every word embedding; the decoder is trained teacher-forced (input "<s> a red circle",
target "a red circle </s>"). Scored by GREEDY DECODING (kerastk.deploy.generate) on test images never seen in
training, in Keras and from the exported ONNX file (numpy + onnxruntime only): exact match of the whole caption
and corpus BLEU-4. captions.png shows test images with the captions the ONNX model wrote.

    python recipes/captioning_shapes.py           # about two minutes on 2 CPU cores
    KERAS_BACKEND=jax python recipes/captioning_shapes.py --epochs 5
    kerastk train captioning_shapes --smoke
"""
import json

import keras
import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.data.captions import corpus_bleu
from kerastk.deploy.generate import decode_tokens, generate, keras_predictor, onnx_predictor
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 20  # val exact match is ~0.9 by epoch 20; more epochs keep improving slowly
BATCH_SIZE = 64
LEARNING_RATE = 2e-3  # Adam; ReduceLROnPlateau halves it when val_loss stalls
N_SAMPLES = 8000  # scenes over train/val/test (70/15/15); with 3,500 training scenes the CNN overfits
SMOKE_SAMPLES = 600  # --smoke draws fewer scenes (it trains on 256 of them anyway)
IMAGE_SIZE = 32  # shapes of radius 5-8 px: a triangle, a square, a cross and a ring stay distinguishable
FILTERS = (16, 32, 64)  # three conv stages, each halving the image: 32x32 -> 4x4x64, flattened (keeps positions)
EMBED_DIM = 32  # word embeddings (15 words)
UNITS = 128  # GRU state
GRID = 16  # test images drawn in captions.png


def greedy_captions(predict, images, vocab, steps):
    """Greedy-decode a caption for every image with `predict`; returns (tokens, texts)."""
    start = np.ones((len(images), 1), dtype=np.int32)  # <s>
    # a fixed buffer of `steps` tokens, right-padded: the decoder is causal, so the padding after position t does
    # not change the logits read there, and Keras traces one input shape instead of one per length
    tokens = generate(predict, start, steps, context=[images], end_id=2, window=steps)
    return tokens, decode_tokens(tokens[:, 1:], vocab, sep=" ")


def plot_captions(images, generated, references, path, n=GRID):
    """A grid of test images titled with the generated caption (green when it equals the reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(images))
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(np.clip(images[k], 0, 1), interpolation="nearest")
        right = generated[k] == references[k]
        title = generated[k] if right else f"{generated[k]}\n(truth: {references[k]})"
        ax.set_title(title, fontsize=8, color="darkgreen" if right else "firebrick")
    fig.suptitle("greedy captions from the ONNX model (red: differs from the reference)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: x = [images in [0, 1], "<s> words"], y = "words </s>", word ids with 0 = padding
    data = recipe_data("shape_captions", args, n_samples=SMOKE_SAMPLES if args.smoke else N_SAMPLES,
                       image_size=IMAGE_SIZE)
    vocab, steps = data.info["vocab"], data.info["caption_length"]

    # --- model: variable caption length, so decoding feeds exactly the words so far
    model = kerastk.create_model("captioner", input_shape=data.input_shape, vocab_size=len(vocab),
                                 caption_length=None, embed_dim=EMBED_DIM, units=UNITS, cell="gru",
                                 condition="both", filters=FILTERS, pooling=None)

    # --- train teacher-forced (padding ignored by the loss), evaluate, save, export, validate, report
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    result = run(model, data, "captioning_shapes", loss=loss, metrics=["accuracy"], learning_rate=LEARNING_RATE,
                 epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed,
                 verbose=args.verbose, options=args.options, patience=6,
                 notes="Small CNN encoder (flattened 4x4 feature map -> initial GRU state, and added to every "
                       "word embedding) with a GRU decoder, on generated scenes of one or two coloured shapes. Test "
                       "metrics here are teacher-forced; greedy-decoding exact match and BLEU-4 are below.")

    # --- greedy captions for the test images, in Keras and from the ONNX file
    images = data.x_test[0]
    references = decode_tokens(data.y_test, vocab, sep=" ")
    keras_tokens, keras_captions = greedy_captions(keras_predictor(model), images, vocab, steps)
    onnx_tokens, onnx_captions = greedy_captions(onnx_predictor(result.run_dir / "model.onnx"), images, vocab,
                                                 steps)
    scores = {}
    for who, captions in (("keras", keras_captions), ("onnx", onnx_captions)):
        scores[f"{who}_exact_match"] = float(np.mean([c == r for c, r in zip(captions, references)]))
        scores[f"{who}_bleu4"] = corpus_bleu(references, captions)
    same = float(np.mean(np.all(keras_tokens == onnx_tokens, axis=1)))
    plot_captions(images, onnx_captions, references, result.run_dir / "captions.png")
    greedy = {**scores, "keras_onnx_same_tokens": same, "test_samples": len(references),
              "parameters": model.count_params(),
              "examples": [{"reference": r, "generated": g} for r, g in zip(references[:12], onnx_captions[:12])]}
    (result.run_dir / "greedy_decoding.json").write_text(json.dumps(greedy, indent=2) + "\n")
    (result.run_dir / "captions.txt").write_text(
        "".join(f"{g}\t|\t{r}\n" for g, r in zip(onnx_captions, references)))
    with open(result.run_dir / "report.md", "a") as f:
        f.write(f"\n## Greedy captions (held-out images)\n- exact match: Keras {scores['keras_exact_match']:.4f}, "
                f"ONNX {scores['onnx_exact_match']:.4f}\n- corpus BLEU-4: Keras {scores['keras_bleu4']:.4f}, "
                f"ONNX {scores['onnx_bleu4']:.4f}\n- identical tokens in {100 * same:.2f}% of rows\n\n"
                f"![captions](captions.png)\n")
    result.greedy = greedy
    print(f"captioning_shapes: greedy exact match {scores['keras_exact_match']:.4f} (ONNX "
          f"{scores['onnx_exact_match']:.4f}), BLEU-4 {scores['keras_bleu4']:.4f} (ONNX {scores['onnx_bleu4']:.4f}), "
          f"same tokens {100 * same:.1f}%, {model.count_params():,} params, route {result.export.route}, "
          f"{result.seconds:.1f} s -> {result.run_dir}")
    return result


if __name__ == "__main__":
    recipe_main(main)
