"""The `kerastk` command: a thin layer over the library.

    kerastk info                                   active backend and versions; how to switch
    kerastk models [PATTERN]                       registered models
    kerastk train RECIPE [recipe flags]            run recipes/RECIPE.py (e.g. `kerastk train mnist_lenet5 --smoke`)
    kerastk lr-find RECIPE [recipe flags]          LR range test on the recipe's model and data: lr_find.png, suggestion
    kerastk export MODEL.keras [-o MODEL.onnx]     export + validate; exits 1 with the figures when no route validates
        [--optimize rule|measure|off] [--quantize int8|fp16]
    kerastk validate MODEL.onnx --keras MODEL.keras [--runtime onnxruntime|openvino]
    kerastk predict MODEL.onnx INPUT.npy [--raw]   numpy + onnxruntime only
    kerastk bench MODEL|RUN_DIR [--routes|--train] Keras vs onnxruntime fp32/int8 at batch 1/8/32; table + --json
    kerastk bench registry-routes export|time DIR  every registered model through every route (kerastk.bench)
    kerastk bench registry-openvino                 every registered model's file in OpenVINO vs onnxruntime
    kerastk serve MODEL.onnx [--load-test]         HTTP /predict, /health, /metadata (FastAPI + uvicorn)

Exit status, the same rule for every command: 0 done; 1 the command ran and what it checks failed (no export
route validates, parity failed, a load-test request failed, quantisation failed); 2 bad input or a missing
dependency - a file that is not there or not readable, a value out of range, an unknown name, a package to
install - with a message on stderr saying what was wrong and what was expected; 3 the check could not decide
(parity undecided).
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
from pathlib import Path

#: The exit statuses of every command (the module docstring gives the rule).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNDECIDED = 0, 1, 2, 3
#: Exceptions that mean the input was wrong (or a dependency is missing), not that a check failed.
BAD_INPUT = (ValueError, TypeError, OSError, LookupError, ImportError)


def refuse(command: str, exc) -> int:
    """Print `kerastk COMMAND: message` on stderr and return the exit status the rule gives the failure."""
    print(f"kerastk {command}: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT) else EXIT_FAILED


def _recipes_dir() -> Path:
    """recipes/ beside the package (a source checkout or editable install), or $KERASTK_RECIPES, or ./recipes."""
    candidates = [os.environ.get("KERASTK_RECIPES"), Path(__file__).resolve().parent.parent / "recipes",
                  Path.cwd() / "recipes"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise SystemExit("kerastk: cannot find the recipes/ folder; run from a kerastk checkout or set KERASTK_RECIPES.")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in _recipes_dir().glob("*.py") if not p.stem.startswith("_"))


def cmd_info(args) -> int:
    from kerastk.backend import BACKENDS, EXPORTERS, backend_available, package_version, versions

    v = versions()
    print(f"kerastk {package_version('kerastk') or 'source'}")
    print(f"active backend : {v['backend']} {v[v['backend']]}  (exporter: {v['exporter']})")
    print(f"keras          : {v['keras']}")
    print(f"onnx           : {v['onnx']}")
    print(f"onnxruntime    : {v['onnxruntime']}")
    others = ", ".join(f"{b} {'installed' if backend_available(b) else 'missing'} ({EXPORTERS[b]})" for b in BACKENDS)
    print(f"backends       : {others}")
    print("switch backend : KERAS_BACKEND=jax kerastk info   (tensorflow | jax | torch, set before Python starts)")
    return 0


def _human(n) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def cmd_models(args) -> int:
    """Table of registered models: parameters and mult-adds (the paper's reference figures, or measured on the
    default input with --measure), default input size and paper."""
    from kerastk.models.registry import create_model, list_models, model_info

    names = list_models(args.pattern)
    if not names:
        return refuse("models", LookupError(f"no registered model matches {args.pattern!r}; `kerastk models` lists "
                                            "them all"))
    source = "measured at the default input" if args.measure else "reference (paper resolution, 1000 classes)"
    print(f"{'name':22s} {'params':>10s} {'mult-adds':>10s}  {'input':13s} paper   [{source}]")
    for name in names:
        info = model_info(name)
        params, macs = info.get("reference_params"), info.get("reference_macs")
        if args.measure or params is None or macs is None:
            from kerastk.flops import count_flops

            model = create_model(name)
            params, macs = model.count_params(), count_flops(model)
        shape = "x".join(str(d) for d in info.get("default_input_shape", ()))
        print(f"{name:22s} {_human(params):>10s} {_human(macs):>10s}  {shape:13s} {info.get('paper', '')}")
    return 0


def cmd_train(args, rest) -> int:
    recipe = _recipes_dir() / f"{args.recipe}.py"
    if not recipe.is_file():
        import difflib

        close = difflib.get_close_matches(args.recipe, list_recipes(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        print(f"kerastk train: no recipe {args.recipe!r}.{hint} Recipes: {', '.join(list_recipes())}.",
              file=sys.stderr)
        return 2
    if args.command == "lr-find":
        rest = [*rest, "--lr-find"]
    sys.argv = [str(recipe), *rest]
    runpy.run_path(str(recipe), run_name="__main__")  # its recipe_main ends an LR range test (--lr-find) normally
    return 0


def cmd_export(args) -> int:
    from kerastk.core.rundir import run_test_rows
    from kerastk.deploy import ExportError, export_onnx

    out = Path(args.output) if args.output else Path(args.model).with_suffix(".onnx")
    try:
        # a run folder's own test rows exercise the model as it was trained; random inputs otherwise
        rows = run_test_rows(Path(args.model).parent)
        result = export_onnx(args.model, out, opset=args.opset, route=args.route, atol=args.atol, rtol=args.rtol,
                             inputs=rows, verbose=True,
                             optimize={"rule": True, "measure": "measure", "off": False}[args.optimize])
    except (ExportError, *BAD_INPUT) as exc:  # no route validates: 1; a bad file or argument: 2
        return refuse("export", exc)
    card = _card_for(out, args.model, result)
    graph = result.graph
    shape = (f", {graph['nodes']} nodes / {graph['transposes']} Transposes, {graph['latency_ms_batch1']:.3g} ms at "
             f"batch 1" if graph else "")
    print(f"{out} (+ {card.name}): route {result.route}, opset {result.opset}{shape}, {result.validation}")
    return quantize_after_export(args, out)


def _card_for(out: Path, keras_path, result):
    """The card of an exported file: a run folder's card (kept: preprocessing, labels, metrics) updated with the
    new export's figures, else a new one."""
    from kerastk.core.card import ModelCard
    from kerastk.core.rundir import CARD, card_path_for
    from kerastk.deploy import write_card

    card_path = card_path_for(out)
    run_card = Path(keras_path).parent / CARD
    if not run_card.is_file():  # set aside by an export that failed: its training figures are still good
        run_card = run_card.with_name(f"{CARD}.stale")
    kept = ModelCard()
    if run_card.is_file() and out.name == "model.onnx":
        try:
            kept = ModelCard(ModelCard.read(run_card).kept_on_reexport())
        except ValueError:
            kept = ModelCard()
    fields = ("name", "preprocessing", "class_names", "task", "metrics")
    extra = {k: v for k, v in kept.items() if k not in fields}
    return write_card(out, name=kept.name or Path(keras_path).stem, export_result=result,
                      preprocessing=kept.preprocessing, class_names=kept.class_names, task=kept.task,
                      metrics_keras=kept.metrics.get("keras"), metrics_onnx=kept.metrics.get("onnx"), extra=extra,
                      card_path=card_path)


def add_quantize_arguments(parser):
    """`--quantize int8|fp16` and `--calibration FILE` for `kerastk export`."""
    from kerastk.core.rundir import QUANTIZATION_DATA
    from kerastk.deploy.quantize import MODES

    parser.add_argument("--quantize", choices=MODES, default=None,
                        help="also write a quantised copy (model.int8.onnx / model.fp16.onnx + card) and measure it")
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help=f"int8 calibration rows (.npy or .npz of real inputs); default: the run folder's "
                             f"{QUANTIZATION_DATA}")
    return parser


def quantize_after_export(args, onnx_path=None) -> int:
    """After `kerastk export` wrote `onnx_path`: quantise it when --quantize was given and print the summary
    line. Exit status 2 (message on stderr) when quantisation cannot run on this input (no calibration rows, a
    bad file), 1 when it ran and failed (onnxruntime's errors are RuntimeErrors); 0 otherwise."""
    from kerastk.deploy.quantize import format_summary, quantize_run

    if not getattr(args, "quantize", None):
        return 0
    onnx_path = onnx_path or (Path(args.output) if getattr(args, "output", None)
                              else Path(args.model).with_suffix(".onnx"))
    try:
        summary = quantize_run(onnx_path, args.quantize, calibration=args.calibration)
    except (*BAD_INPUT, RuntimeError) as exc:
        return refuse("export --quantize", exc)
    print(format_summary(summary))
    return 0


def cmd_validate(args) -> int:
    import numpy as np

    from kerastk.deploy import validate_onnx
    from kerastk.deploy.openvino import RuntimeNotInstalled, require_runtime

    if not Path(args.onnx).is_file():
        print(f"kerastk validate: no ONNX file at {args.onnx!r}", file=sys.stderr)
        return 2
    try:
        require_runtime(args.runtime)  # before loading the Keras model: a missing runtime is known at once
        from kerastk.core.rundir import run_test_rows

        inputs = np.load(args.inputs) if args.inputs else run_test_rows(Path(args.keras).parent)
        report = validate_onnx(args.onnx, args.keras, inputs=inputs, atol=args.atol, rtol=args.rtol,
                               runtime=args.runtime)
    except RuntimeNotInstalled as exc:
        return refuse("validate", exc)
    print(report)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.passed else (3 if report.verdict == "undecided" else 1)


def cmd_predict(args) -> int:
    import numpy as np

    from kerastk.deploy.runtime import OnnxModel

    try:
        model = OnnxModel(args.onnx)
        x = np.load(args.input)
        if args.raw:
            x = model.preprocess(x)
        y = model.predict(x)
    except (ValueError, FileNotFoundError) as exc:
        return refuse("predict", exc)
    if args.output:
        np.save(args.output, y)
    if model.class_names and not isinstance(y, list) and y.ndim == 2 and y.shape[-1] == len(model.class_names):
        for row, label in zip(y, model.predict_labels(x)):
            print(f"{label}\t{float(np.max(row)):.4f}")
    else:
        np.set_printoptions(precision=5, suppress=True)
        print(y)
    return 0


def _add_parity_arguments(p) -> None:
    """--atol and --rtol of the parity criterion (kerastk.deploy.parity), with its defaults."""
    from kerastk.deploy.parity import DEFAULT_ATOL, DEFAULT_RTOL

    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help="absolute floor of the parity criterion |onnx - keras| <= atol + rtol * (|keras| + std)")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"relative tolerance of the parity criterion (default {DEFAULT_RTOL:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kerastk", description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="active backend, versions, how to switch")
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--measure", action="store_true", help="build each model and count its parameters and MACs")
    p = sub.add_parser("train", help="run a recipe (extra flags go to the recipe)")
    p.add_argument("recipe")
    p = sub.add_parser("lr-find", help="LR range test on a recipe's model and data (extra flags go to the recipe)")
    p.add_argument("recipe")
    p = sub.add_parser("export", help="export a .keras file to a validated ONNX file")
    p.add_argument("model")
    p.add_argument("-o", "--output")
    p.add_argument("--opset", type=int)
    p.add_argument("--route", default="auto", help="auto, tensorflow, jax or torch")
    p.add_argument("--optimize", choices=("rule", "measure", "off"), default="rule",
                   help="rule (default): the fastest route by rule (TensorFlow's when installed) + onnxruntime's "
                        "offline optimisation; measure: export every installed route, ship the fastest; off: the "
                        "active backend's exporter, as written")
    _add_parity_arguments(p)
    add_quantize_arguments(p)
    from kerastk.deploy.openvino import RUNTIMES

    p = sub.add_parser("validate", help="compare an ONNX file with its Keras model in onnxruntime (or OpenVINO)")
    p.add_argument("onnx")
    p.add_argument("--keras", required=True)
    p.add_argument("--inputs", help=".npy of real inputs (default: the run folder's test rows beside the .keras, else "
                                    "random ones)")
    _add_parity_arguments(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--runtime", choices=RUNTIMES, default="onnxruntime",
                   help='runtime to check the file in (openvino: CPU, fp32 precision; pip install "kerastk[openvino]")')
    p = sub.add_parser("predict", help="run an ONNX model on a .npy file (numpy + onnxruntime only)")
    p.add_argument("onnx")
    p.add_argument("input")
    p.add_argument("--raw", action="store_true", help="apply the card's preprocessing first")
    p.add_argument("-o", "--output", help="save the outputs as .npy")
    add_bench_arguments(sub.add_parser("bench", help="Keras vs onnxruntime fp32/int8 latency, export routes, "
                                                     "training overhead"))
    add_serve_arguments(sub.add_parser("serve", help="serve an ONNX file over HTTP (/predict, /health, "
                                                     "/metadata); --load-test"))
    return parser


def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `kerastk serve MODEL.onnx ...`."""
    p.add_argument("onnx", help="the ONNX file (its card beside it is served at /metadata)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-rows", type=int, default=64, help="most rows per request and per merged run")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="how long a request waits for others to join")
    p.add_argument("--no-batching", action="store_true", help="one session.run per request")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB")
    p.add_argument("--max-queue", type=int, default=1024, help="most requests in flight; more get 503")
    p.add_argument("--load-test", action="store_true",
                   help="serve on a free loopback port, run a bounded load test, print the figures and exit "
                        "(0 only when no request failed)")
    p.add_argument("--concurrency", type=int, default=8, help="load test: client threads")
    p.add_argument("--requests", type=int, default=400, help="load test: requests in all")
    p.add_argument("--rows", type=int, default=1, help="load test: rows per request")
    p.add_argument("--format", choices=("json", "npy"), default="json", help="load test: request body format")
    p.add_argument("--json", metavar="OUT", help="load test: also write the figures to this JSON file")
    return p


def cmd_serve(args) -> int:
    """`kerastk serve`: serve until interrupted, or with --load-test run a bounded load test and exit."""
    if not args.max_body_mb > 0:
        print(f"kerastk serve: --max-body-mb must be > 0; received {args.max_body_mb}", file=sys.stderr)
        return 2
    app_kwargs = {"max_batch_rows": args.max_batch_rows, "batch_wait_ms": args.batch_wait_ms,
                  "batching": not args.no_batching, "max_queue": args.max_queue,
                  "max_body_bytes": max(1, int(args.max_body_mb * 2**20))}
    import http.client
    from urllib.parse import urlsplit

    from kerastk.deploy.runtime import OnnxModel
    from kerastk.deploy.serve import format_load_test, load_test, running_server, sample_body, serve
    from kerastk.deploy.serve.requests import positive_int

    try:
        if not args.load_test:
            print(f"Serving {args.onnx} on http://{args.host}:{args.port} (POST /predict, GET /metadata, "
                  f"GET /health; batching {'off' if args.no_batching else 'on'}). Ctrl-C stops it.")
            serve(args.onnx, host=args.host, port=args.port, **app_kwargs)
            return 0
        body, content_type = sample_body(OnnxModel(args.onnx), positive_int("--rows", args.rows), args.format)
        with running_server(args.onnx, **app_kwargs) as url:
            result = load_test(f"{url}/predict", body, content_type, concurrency=args.concurrency,
                               requests=args.requests)
            conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10)
            conn.request("GET", "/health")
            result["server"] = json.loads(conn.getresponse().read())["stats"]
            conn.close()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return refuse("serve", exc)
    result.update({"model": str(args.onnx), "rows_per_request": args.rows, "format": args.format,
                   "batching": not args.no_batching})
    print(format_load_test(result))
    server = result["server"]
    print(f"server: {server['requests']} requests in {server['session_runs']} session runs "
          f"({server['merged_runs']} merged, largest {server['largest_run_requests']} requests)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failed"] == 0 else 1


def _parse_shape(text):
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"--input-shape must be comma-separated integers such as 32,32,3; "
                                         f"received {text!r}") from None


def add_bench_arguments(p) -> None:
    p.add_argument("target", help="a registered model name, or a run folder (or its model.keras)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=30, help="timed calls per figure (after --warmup calls)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-int8", action="store_true", help="skip the int8 (static QDQ) model")
    p.add_argument("--input-shape", type=_parse_shape, help="builder input_shape, e.g. 32,32,3")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--routes", action="store_true", help="compare the export routes instead (batch 1)")
    p.add_argument("--train", action="store_true", help="training throughput: runner vs bare model.fit")
    p.add_argument("--dataset", help="dataset for --train (default: mnist for 1-channel inputs, else cifar10)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per --train fit (the first is left out)")
    p.add_argument("--rows", type=int, help="training rows for --train (default: the whole split)")
    p.add_argument("--json", help="write the result here as JSON")


def cmd_bench(args) -> int:
    from kerastk.bench import bench_inference, bench_routes, bench_training, format_table, load_line

    kwargs = {k: v for k, v in (("input_shape", args.input_shape), ("num_classes", args.num_classes))
              if v is not None}
    for flag, value, low in (("--repeats", args.repeats, 3), ("--warmup", args.warmup, 0),
                             ("--epochs", args.epochs, 2)):
        if value < low:
            print(f"kerastk bench: {flag} must be >= {low}; received {value}", file=sys.stderr)
            return 2
    if any(b < 1 for b in args.batch_sizes):
        print(f"kerastk bench: --batch-sizes must be positive; received {args.batch_sizes}", file=sys.stderr)
        return 2
    try:
        if args.train:
            result = bench_training(args.target, dataset=args.dataset, epochs=args.epochs, rows=args.rows,
                                    builder_kwargs=kwargs)
            print(f"{result['model']} on {result['dataset']} ({result['backend']}, {result['train_rows']} rows, "
                  f"batch {result['batch_size']}): bare fit {result['samples_per_second']['bare']:.0f} samples/s, "
                  f"runner {result['samples_per_second']['runner']:.0f} samples/s, runner overhead "
                  f"{100 * result['runner_overhead']:+.1f}% (target <= 5%); {load_line(result)}")
        elif args.routes:
            result = bench_routes(args.target, builder_kwargs=kwargs, repeats=args.repeats)
            for r, v in result["routes"].items():
                text = v.get("error") or (f"{v['latency_ms_batch1']:.3f} ms at batch 1, {v['nodes']} nodes / "
                                          f"{v['transposes']} Transposes, export {v['export_seconds']} s")
                print(f"{result['name']:20s} {r:10s} {text}")
            print(f"rule picks {result['rule_route']}, fastest {result['best_route']}: ratio {result['rule_ratio']}; "
                  f"{load_line(result)}")
        else:
            result = bench_inference(args.target, builder_kwargs=kwargs, batch_sizes=args.batch_sizes,
                                     int8=not args.no_int8, warmup=args.warmup, repeats=args.repeats)
            print(format_table(result))
    except (OSError, ValueError, TypeError, RuntimeError) as exc:  # ExportError is a RuntimeError
        return refuse("bench", exc)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0

#: `kerastk bench registry-...`: the benchmarks that run over the whole registry.
REGISTRY_BENCHES = ("registry-routes", "registry-openvino")


def cmd_bench_registry(argv) -> int:
    """`kerastk bench registry-routes export|time DIR ...` and `kerastk bench registry-openvino ...`."""
    kind, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"kerastk bench {kind}")
    parser.add_argument("--models", default="*", help="comma-separated fnmatch patterns (default: every model)")
    if kind == "registry-routes":
        from kerastk.bench import registry_routes as bench

        parser.description = bench.__doc__.strip().splitlines()[0]
        parser.add_argument("phase", choices=("export", "time"))
        parser.add_argument("folder")
        parser.add_argument("--budget-seconds", type=float, help="export phase: stop starting new models after this")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--repeats", type=int, default=10)
        parser.add_argument("--json")
        args = parser.parse_args(rest)
        if args.phase == "export":
            return bench.export_phase(Path(args.folder), args.models, args.budget_seconds)
        return bench.time_phase(Path(args.folder), args.models, args.rounds, args.repeats, args.json)
    from kerastk.bench import registry_openvino as bench

    parser.description = bench.__doc__.strip().splitlines()[0]
    parser.add_argument("--json", help="write the table and totals here")
    args = parser.parse_args(rest)
    return bench.run(args.models, args.json)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in REGISTRY_BENCHES:
        return cmd_bench_registry(argv[1:])
    if argv and argv[0] in ("train", "lr-find"):  # everything after the recipe name belongs to the recipe
        args = parser.parse_args(argv[:2])
        return cmd_train(args, argv[2:])
    args = parser.parse_args(argv)
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "serve":
        import importlib.util

        missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
        if missing:  # kerastk.deploy.serve imports them only when serving: say how to get them before anything starts
            print(f"kerastk serve needs {' and '.join(missing)}: pip install 'kerastk[serve]'", file=sys.stderr)
            return 2
        return cmd_serve(args)
    return {"info": cmd_info, "models": cmd_models, "export": cmd_export, "validate": cmd_validate,
            "predict": cmd_predict}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
