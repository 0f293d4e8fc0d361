"""The export worker's process (kerastk.deploy.export_worker starts it): reads one JSON request per stdin line,
exports the `.keras` file it names under the backend given by KERAS_BACKEND, and answers one JSON line on the
stdout it started with (everything else it prints goes to stderr). Stops when its stdin closes."""
import json
import os
import sys


def _job(request: dict) -> dict:
    import keras

    from kerastk.deploy.export import (
        WRITE_ERRNOS,
        ExporterFailure,
        clean_message,
        export_native,
        exporter_message,
        import_user_modules,
        signature_from_json,
    )
    from kerastk.deploy.export_worker import WRITE_ERROR
    from kerastk.deploy.validate import load_keras

    try:
        objects = import_user_modules([(name, file or None) for name, file in request["modules"]])
        with keras.saving.custom_object_scope(objects):
            model = load_keras(request["keras_path"])
        signature = signature_from_json(request["signature"]) if request["signature"] else None
        fixes = export_native(model, request["onnx_path"], request["opset"]) if signature is None else \
            export_native(model, request["onnx_path"], request["opset"], signature=signature)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            return {"status": 1, "error": f"{type(exc).__name__}: {clean_message(str(exc))[:500]}"}
        return {"status": WRITE_ERROR, "errno": exc.errno, "message": exc.strerror or str(exc)}
    except Exception as exc:
        import traceback

        traceback.print_exc()
        message = clean_message(str(exc)) if isinstance(exc, ExporterFailure) else exporter_message(exc)
        return {"status": 1, "error": message[:800]}
    finally:
        keras.backend.clear_session()
    return {"status": 0, "route": keras.backend.backend(), "path": request["onnx_path"], "fixes": fixes}


def main() -> int:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the exporters' own prints (fd 1 included) go to stderr, never into a reply
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if line.strip():
            replies.write(json.dumps(_job(json.loads(line))) + "\n")
            replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
