"""Variational autoencoder on MNIST: a 2-D latent space you can draw, and new digits decoded from it.

The VAE (Kingma & Welling 2014) encodes each digit as a Gaussian q(z|x) in a 2-D latent space, samples z with
the reparameterisation trick, and decodes z back to pixel probabilities. It trains on the negative ELBO per
digit = reconstruction (Bernoulli cross-entropy summed over the 784 pixels, the compiled loss) + KL(q(z|x) ||
N(0, I)) (added by the Sampling layer). The KL term pulls every code towards the prior, so the latent space
has no holes: any point of it decodes to something digit-like.

Outputs in export/vae_mnist/: the usual run folder (the exported model maps a digit to its reconstruction,
deterministically, z = z_mean), plus
  samples.png       a grid of digits decoded from a grid of latent points (the prior's quantiles)
  samples_onnx.png  the same grid decoded by the exported decoder alone (decoder.onnx, numpy + onnxruntime)
  latent_map.png    the test digits' z_mean, coloured by their label

    python recipes/vae_mnist.py                     # 25 epochs on the offline 5,000-digit sample
    KERAS_BACKEND=jax python recipes/vae_mnist.py --upsampling nearest   # XLA's CPU transposed convs are slow
    kerastk train vae_mnist --smoke
"""
import dataclasses
from statistics import NormalDist

import numpy as np

import kerastk
from kerastk.backend import active_backend, set_seed
from kerastk.losses import ReconstructionLoss
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 25  # the validation ELBO still improves slowly at 25 (~166 nats); ~2 min on 2 busy cores
BATCH_SIZE = 64  # 55 updates per epoch on 3,500 digits
LEARNING_RATE = 3e-3  # 3x Adam's default: 25 epochs reach the ELBO that 1e-3 needs 40 for; halved on plateaus
LATENT_DIM = 2  # two dimensions: the latent space can be drawn and walked as a grid
GRID = 15  # samples.png shows GRID x GRID digits
QUANTILES = (0.05, 0.95)  # the latent grid spans these quantiles of the N(0, 1) prior on each axis


def latent_grid(n=GRID, quantiles=QUANTILES):
    """n*n points of a 2-D latent space, evenly spaced in the prior's probability (not in z): the inverse
    normal CDF of a regular grid of quantiles, rows from high to low z2 so the picture reads like a plot."""
    values = np.array([NormalDist().inv_cdf(q) for q in np.linspace(*quantiles, n)], dtype="float32")
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


def save_grid(images, path, n, title):
    """Tile n*n images (N, H, W, 1) into one picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = images.shape[1:3]
    canvas = images[: n * n, ..., 0].reshape(n, n, h, w).transpose(0, 2, 1, 3).reshape(n * h, n * w)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_latent_map(z, labels, path, title):
    """Scatter the test digits' codes, one colour per digit (a 2-D PCA projection when latent_dim > 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if z.shape[1] > 2:
        centred = z - z.mean(0)
        z = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    fig, ax = plt.subplots(figsize=(7, 6))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--latent-dim", type=int, default=LATENT_DIM, help=f"size of z (default {LATENT_DIM})")
    parser.add_argument("--upsampling", choices=("transpose", "nearest"), default="transpose",
                        help="decoder x2 steps: stride-2 transposed convolutions (default) or nearest upsampling + "
                             "convolution (same parameters; ~2.4x faster training under JAX on CPU)")
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: pixels in [0, 1] are both input and target (Bernoulli likelihood); labels only colour the map
    digits = recipe_data("mnist", args)
    info = {k: v for k, v in digits.info.items() if k not in ("class_names", "num_classes")}
    data = dataclasses.replace(digits, y_train=digits.x_train, y_val=digits.x_val, y_test=digits.x_test,
                               info={**info, "task": "regression"})

    # --- model: encoder -> Sampling (adds the KL) -> decoder; at inference z = z_mean
    model = kerastk.create_model("vae", input_shape=data.input_shape, latent_dim=args.latent_dim,
                                 upsampling=args.upsampling, seed=args.seed)

    # --- train on the negative ELBO (reconstruction + KL), evaluate, save, export, validate, report
    result = run(model, data, "vae_mnist", loss=ReconstructionLoss("bce"), metrics=(), learning_rate=LEARNING_RATE,
                 epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose, options=args.options,
                 notes="Convolutional VAE (2 stride-2 convs -> dense 16 -> z_mean, z_log_var -> Sampling -> "
                       "mirrored transposed convs, sigmoid) trained on the negative ELBO: Bernoulli reconstruction "
                       "summed over pixels + KL to N(0, I). The exported model reconstructs with z = z_mean; "
                       "decoder.onnx generates digits from latent points.")
    loss, val_loss = result.history["loss"], result.history["val_loss"]

    # --- look at what it learned: samples from a latent grid (Keras and the exported decoder), the latent map
    decoder, encoder = model.get_layer("decoder"), model.get_layer("encoder")
    if args.latent_dim == 2:
        z = latent_grid()
    else:  # no grid to walk in more dimensions: draw from the prior
        z = np.random.default_rng(args.seed).standard_normal((GRID * GRID, args.latent_dim)).astype("float32")
    samples = np.asarray(decoder.predict(z, batch_size=256, verbose=0))
    save_grid(samples, result.run_dir / "samples.png", GRID, f"VAE samples from a latent grid (keras, "
              f"{active_backend()})")

    from kerastk.deploy import OnnxModel, export_onnx, write_card

    decoder_export = export_onnx(decoder, result.run_dir / "decoder.onnx", inputs=z)
    onnx_samples = OnnxModel(result.run_dir / "decoder.onnx", card={}).predict(z)
    samples_diff = float(np.max(np.abs(onnx_samples - samples)))
    if samples_diff > 1e-4:
        raise RuntimeError(f"decoder.onnx samples differ from Keras's by {samples_diff:.3g} (> 1e-4).")
    write_card(result.run_dir / "decoder.onnx", name="vae_mnist_decoder", export_result=decoder_export,
               preprocessing={"type": "none"}, task="generation",
               extra={"input": "latent points z (batch, latent_dim); z ~ N(0, I) gives new digits",
                      "output": "pixel probabilities (batch, 28, 28, 1) in [0, 1]", "latent_dim": args.latent_dim})
    save_grid(onnx_samples, result.run_dir / "samples_onnx.png", GRID,
              f"the same grid from decoder.onnx (max abs diff {samples_diff:.1e})")

    z_test = np.asarray(encoder.predict(data.x_test, batch_size=256, verbose=0)[0])
    save_latent_map(z_test, digits.y_test, result.run_dir / "latent_map.png",
                    f"test digits' z_mean ({len(z_test)} digits)")

    print(f"vae_mnist: negative ELBO per digit (nats) train {loss[0]:.1f} -> {loss[-1]:.1f}, "
          f"validation {val_loss[0]:.1f} -> {val_loss[-1]:.1f} over {len(loss)} epochs; test reconstruction MSE "
          f"{result.test_metrics['mse']:.4f} (ONNX {result.onnx_metrics['mse']:.4f}), route {result.export.route}; "
          f"decoder.onnx via {decoder_export.route}, samples max abs diff {samples_diff:.1e}; {result.seconds:.1f} s "
          f"-> {result.run_dir}")
    return result


if __name__ == "__main__":
    recipe_main(main)
