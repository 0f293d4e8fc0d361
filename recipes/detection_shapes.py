"""Object detection on generated scenes: a YOLO-style single-stage detector, scored by mAP, run from ONNX.

64 x 64 scenes hold 1 to 4 circles, squares and triangles (occluding each other a little) with boxes and
classes. `tiny_yolo` puts a small convolutional head on MobileNet's stride-8 features: an 8 x 8 grid, three
anchor sizes per cell, each predicting a box, an objectness and the class. Steps:

1. target assignment - every true box goes to the cell holding its centre and its best-fitting anchor
   (kerastk.deploy.detection.encode_targets), so the targets have the model's output shape;
2. training with the YOLO loss (box regression + objectness + class, kerastk.losses.YoloLoss);
3. scoring - decode the grid, non-maximum suppression, then PASCAL VOC mAP@0.5 and COCO's mAP@0.5:0.95 against
   the test split's boxes, for the Keras model and its ONNX file alike (run's evaluate_fn);
4. export with decoding - the inference model decodes boxes inside its graph, so `detector.onnx` outputs boxes
   in pixels and class scores; numpy NMS on them must give the same final boxes as the Keras path;
5. detections.png - predicted boxes (class, score) over test images, the true boxes dashed.

Run folder: <out>/detection_shapes/ (model.keras, model.onnx = raw grid, card.json, curves.png, history.csv,
report.md, plus detector.onnx + detector.card.json = the decoding model, and detections.png).

    python recipes/detection_shapes.py
    kerastk train detection_shapes --smoke
"""
import dataclasses

import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.deploy import OnnxModel, export_onnx, write_card
from kerastk.deploy.detection import compare_detections, encode_targets, postprocess
from kerastk.losses import YoloLoss
from kerastk.metrics import detection_metrics
from kerastk.models.detection import detection_inference_model, model_anchors
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz import plot_detections

EPOCHS = 12  # mAP@0.5 passes 0.6 after ~5 epochs on 5,600 scenes; early stopping may end the run sooner
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
N_SAMPLES = 8000  # scenes generated (70 % train): with 1,400 (the default 2,000) the detector overfits
SMOKE_SAMPLES = 600  # --smoke: generate fewer scenes (the runner then keeps 256 / 128 / 128)
BACKBONE_ALPHA = 0.5  # MobileNet width: half the channels, a quarter of the multiply-adds of alpha 1
HEAD_FILTERS, HEAD_CONVS = 64, 1  # one 3x3 conv before the prediction conv: 9.4 M multiply-adds in all
SCORE_THRESHOLD_MAP = 0.05  # mAP integrates over the whole ranking, so keep the low-scoring tail
SCORE_THRESHOLD_SHOW = 0.3  # boxes drawn and compared between Keras and ONNX
IOU_THRESHOLD = 0.5  # NMS: drop a box overlapping a better one of its class by more than this


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: y is (n, 4, 5) rows [class, x1, y1, x2, y2] in pixels, class -1 = padding
    data = recipe_data("detection", args, n_samples=SMOKE_SAMPLES if args.smoke else N_SAMPLES)
    image_size = data.input_shape[:2]

    # --- model: raw grid predictions (n, 8, 8, 3 anchors, 5 + 3)
    model = kerastk.create_model("tiny_yolo", input_shape=data.input_shape, num_classes=len(data.class_names),
                                 backbone="mobilenet", backbone_kwargs={"alpha": BACKBONE_ALPHA},
                                 head_filters=HEAD_FILTERS, head_convs=HEAD_CONVS)
    anchors = model_anchors(model)
    grid = model.output_shape[1:3]

    # --- targets: each true box to its centre's cell and best anchor
    def encode(y):
        return encode_targets(y, grid, anchors, len(data.class_names), image_size)

    encoded = dataclasses.replace(data, y_train=encode(data.y_train), y_val=encode(data.y_val),
                                  y_test=encode(data.y_test))

    def detect(predictions, score_threshold=SCORE_THRESHOLD_MAP):
        """Raw or decoded predictions -> per image (boxes, scores, classes) after NMS."""
        return postprocess(predictions, anchors, image_size, score_threshold=score_threshold,
                           iou_threshold=IOU_THRESHOLD)

    def evaluate(predictions):  # the Keras model's and model.onnx's test-split outputs
        return detection_metrics(detect(predictions), data.y_test, data.class_names)

    # --- train, score (mAP), export the raw model
    result = run(model, encoded, "detection_shapes", loss=YoloLoss(), metrics=(), learning_rate=LEARNING_RATE,
                 epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed,
                 verbose=args.verbose, options=args.options, evaluate_fn=evaluate,
                 notes="YOLO-style detector (tiny_yolo: MobileNet stride-8 features, 8x8 grid, 3 anchors) "
                       "trained with the YOLO loss on encoded grid targets; test metrics are mAP@0.5 and "
                       "mAP@0.5:0.95 after decoding and non-maximum suppression. detector.onnx is the same "
                       "model with its decoding in the graph.")

    # --- export with decoding: detector.onnx outputs (n, 192, 4 + 3) boxes in pixels and class scores
    detector = detection_inference_model(model)
    onnx_path = result.run_dir / "detector.onnx"
    exported = export_onnx(detector, onnx_path, inputs=data.x_test[:64])
    decoded_onnx = OnnxModel(onnx_path, card={}).predict(data.x_test)

    # the same final boxes from the Keras model (numpy decoding) and from the ONNX file (in-graph decoding)
    keras_raw = np.asarray(model.predict(data.x_test, batch_size=256, verbose=0))
    keras_boxes = detect(keras_raw, SCORE_THRESHOLD_SHOW)
    onnx_boxes = detect(decoded_onnx, SCORE_THRESHOLD_SHOW)
    same = compare_detections(keras_boxes, onnx_boxes)
    onnx_metrics = detection_metrics(detect(decoded_onnx), data.y_test, data.class_names)
    write_card(onnx_path, name="detection_shapes_detector", export_result=exported,
               preprocessing=data.info["preprocessing"], class_names=data.class_names, task="detection",
               metrics_keras=result.test_metrics, metrics_onnx=onnx_metrics,
               extra={"anchors": [list(a) for a in anchors], "grid": list(grid), "input_shape": list(data.input_shape),
                      "output": "(n, S_h * S_w * A, 4 + C): x1, y1, x2, y2 in pixels, then p(object) * "
                                "p(class | object) per class; apply kerastk.deploy.detection.postprocess",
                      "postprocess": {"score_threshold": SCORE_THRESHOLD_SHOW, "iou_threshold": IOU_THRESHOLD,
                                      "class_aware": True},
                      "keras_vs_onnx_final_boxes": same})

    # --- look at them
    png = plot_detections(data.x_test, onnx_boxes, result.run_dir / "detections.png", ground_truth=data.y_test,
                          class_names=data.class_names, n=9)

    m, o = result.test_metrics, result.onnx_metrics
    print(f"test mAP@0.5 {m['map50']:.3f}, mAP@0.5:0.95 {m['map50_95']:.3f} (AP@0.5 {m['ap50']}); "
          f"ONNX (raw grid + numpy decoding) mAP@0.5 {o['map50']:.3f}; detector.onnx mAP@0.5 "
          f"{onnx_metrics['map50']:.3f}, route {exported.route}")
    print(f"final boxes at score >= {SCORE_THRESHOLD_SHOW}: Keras {same['boxes']} on {same['images']} images, "
          f"ONNX {'the same' if same['match'] else 'DIFFERENT'} (max box diff {same['max_box_diff']:.2g} px); "
          f"{png}")
    return {"run": result, "export": exported, "keras_vs_onnx": same, "detector_metrics": onnx_metrics}


if __name__ == "__main__":
    recipe_main(main)
