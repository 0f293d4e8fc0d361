"""`kerastk bench`: Keras against onnxruntime (fp32 and int8) on one model, the export routes, training overhead,
and the registry-wide benchmarks.

    kerastk bench lenet5                          # a registered model (random weights)
    kerastk bench resnet18 --input-shape 32,32,3  # builder arguments
    kerastk bench export/mnist_lenet5             # a run folder: its model, calibration rows and test split
    kerastk bench mobilenet --routes              # every installed export route: nodes, Transposes, latency
    kerastk bench lenet5 --train                  # samples/s of the runner's fit against a bare model.fit
    kerastk bench registry-routes export runs/routes   # every registered model through this backend's route
    kerastk bench registry-routes time runs/routes     # ... then every route's file timed (quiet machine)
    kerastk bench registry-openvino                    # every registered model's file in OpenVINO vs onnxruntime

Every latency is the median of repeated calls after warm-up calls (kerastk.deploy.timing.time_call), all in one
process, so the ratios in the table compare figures of the same run. Threads: onnxruntime gets one intra-op
thread per core this process may use and one inter-op thread (sequential execution); each Keras backend keeps
its own default (one per core). A benchmark owns the machine: on 2 cores, torch training beside one busy process
was measured at 12x its idle time, so the load average is read before and after and a busy machine is flagged
in the table and the JSON (`quiet: false`, from the CPU time other processes used during the run) - re-run such
figures.
"""
from kerastk.bench.one_model import (
                                     BUSY_CORES,
                                     DEFAULT_BATCH_SIZES,
                                     OtherLoad,
                                     bench_inference,
                                     bench_routes,
                                     bench_training,
                                     format_table,
                                     keras_latency,
                                     load_line,
                                     resolve_target,
                                     thread_report,
)

__all__ = ["BUSY_CORES", "DEFAULT_BATCH_SIZES", "OtherLoad", "bench_inference", "bench_routes", "bench_training",
           "format_table", "keras_latency", "load_line", "resolve_target", "thread_report"]
