"""A tour of the zoo: several registered architectures trained briefly on the same small images.

Prints, for each: test accuracy, parameters, mult-adds per image (kerastk.count_flops) and onnxruntime
latency per image at batch 1 on the exported file — the trade-offs the architecture lessons discuss.

    python recipes/architectures_tour.py
    python recipes/architectures_tour.py --models lenet5 resnet20 mobilenet
    kerastk train architectures_tour --smoke
"""
import time

import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.deploy import OnnxModel
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 8  # a brief run each: the point is the comparison, not the last point of accuracy
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
MODELS = {  # registry name -> builder arguments beyond input shape and classes
    "lenet5": {},
    "mnist_cnn": {"filters": (32, 64)},
    "resnet20": {},
    "resnet18": {},
    "mobilenet": {"alpha": 0.5},
    "densenet121": {},
}
# --smoke compares two quick ones unless --models is given. Not MobileNet: a few smoke steps leave its
# BatchNormalization statistics at their initial values, where its 13-block stack gives the same output for every
# input (its export's parity is then "undecided": no check can tell that file from a corrupted one).
SMOKE_MODELS = ["lenet5", "mnist_cnn"]
LATENCY_RUNS = 50  # onnxruntime calls timed per model (median reported)


def onnx_latency_ms(path, x, runs=LATENCY_RUNS):
    model = OnnxModel(path)
    for _ in range(5):  # warm-up
        model.predict(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--models", nargs="+", default=None, help="registry names to compare")
    args = parse_recipe_args(parser, argv)
    args.models = args.models or (SMOKE_MODELS if args.smoke else list(MODELS))
    unknown = sorted(set(args.models) - set(kerastk.list_models()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; see `kerastk models`")
    data = recipe_data("shapes", args)

    rows = []
    for name in args.models:
        set_seed(args.seed)
        model = kerastk.create_model(name, input_shape=data.input_shape, num_classes=data.num_classes,
                                     **MODELS.get(name, {}))
        r = run(model, data, f"tour_{name}", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                seed=args.seed, verbose=args.verbose, options=args.options, notes=f"{name} in the architectures tour.")
        ms = onnx_latency_ms(r.run_dir / "model.onnx", data.x_test[:1], runs=10 if args.smoke else LATENCY_RUNS)
        rows.append((name, r.accuracy, model.count_params(), kerastk.count_flops(model), ms, r.train_seconds,
                     r.export.route))

    print(f"\n{'model':>12} | {'accuracy':>8} | {'params':>10} | {'mult-adds':>11} | {'ONNX ms/img':>11} | "
          f"{'train s':>7} | route")
    for name, acc, params, macs, ms, secs, route in rows:
        print(f"{name:>12} | {acc:8.3f} | {params:10,d} | {macs:11,d} | {ms:11.3f} | {secs:7.1f} | {route}")
    return rows


if __name__ == "__main__":
    recipe_main(main)
