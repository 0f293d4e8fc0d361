"""Linear regression on the Boston housing table: the same model trained with MSE and with MAE.

MSE punishes large errors quadratically, so a few expensive outliers pull the fit; MAE weighs every error
linearly. Both runs are reported side by side with both test figures.

    python recipes/housing_linear_regression.py
    kerastk train housing_linear_regression --smoke
"""
import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 300  # 354 training rows: epochs are cheap; early stopping ends each run
BATCH_SIZE = 32
LEARNING_RATE = 0.05  # standardised features: a convex problem that tolerates a large Adam step
LOSSES = ("mse", "mae")  # the comparison this lesson makes


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)

    # --- data: 13 features standardised with the training split's statistics; target in k$
    data = recipe_data("housing", args)

    results = {}
    for loss in LOSSES:
        set_seed(args.seed)  # the same initial weights for both losses
        model = kerastk.create_model("linear_regression", input_shape=data.input_shape)
        results[loss] = run(
            model, data, f"housing_linear_regression_{loss}", loss=loss, metrics=["mse", "mae"],
            learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
            seed=args.seed, verbose=args.verbose, options=args.options, patience=20, lr_patience=8,
            notes=f"Linear regression y = w.x + b on Boston housing, trained with {loss.upper()}.")

    # --- side by side
    print(f"{'trained with':>14} | {'test MSE':>9} | {'test MAE':>9} | {'test RMSE (k$)':>14} | route")
    for loss, r in results.items():
        m = r.test_metrics
        print(f"{loss.upper():>14} | {m['mse']:9.3f} | {m['mae']:9.3f} | {m['mse'] ** 0.5:14.3f} | {r.export.route}")
    return results


if __name__ == "__main__":
    recipe_main(main)
