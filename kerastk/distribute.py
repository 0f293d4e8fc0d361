"""Data parallelism on the engine Keras already has: one model, replicated on N devices, each step's global batch
split between them and the gradients averaged.

    import kerastk.distribute
    kerastk.distribute.setup(2)        # before the model is built
    model = kerastk.create_model(...)  # variables are placed on both devices
    kerastk.training.run(model, ...)   # fit splits each batch of `batch_size` rows into 2 halves

    python recipes/digits_mlp.py --distribute 2

`setup(n)` fixes the layout for the rest of the process, so call it before the model (and its optimizer) is
created; recipes get it from ``--distribute N`` (``parse_recipe_args`` calls it before the recipe builds its
model). ``batch_size`` stays the GLOBAL batch: with the same global batch, the same seed and the same data, a run
on 2 devices follows the 1-device loss curve up to float rounding (the sum over the batch is split in two
partial sums), which tests/test_distribute.py checks.

Per backend:

- **JAX**: ``keras.distribution.DataParallel`` over the first N devices of ``keras.distribution.list_devices()``
  (GPUs or TPUs when there are any), set with ``keras.distribution.set_distribution``: variables are
  replicated, each input batch is sharded along its first axis, and the jitted train step runs on the whole
  mesh. On a CPU-only machine, N virtual CPU devices are made first (``jax_num_cpu_devices``, the config form
  of ``XLA_FLAGS=--xla_force_host_platform_device_count=N``); this works only before JAX initialises its
  backend (the first array or ``jax.devices()`` call), and `setup` raises ``ValueError`` when it is too late.
- **TensorFlow**: ``tf.distribute.MirroredStrategy`` over N GPUs, or over N logical CPU devices
  (``tf.config.set_logical_device_configuration``, possible only before TensorFlow initialises its runtime).
  The strategy is made the process's default with ``tf.distribute.experimental_set_strategy``: everything after
  `setup` behaves as if it ran inside ``with strategy.scope():`` - model creation, ``compile`` (the optimizer's
  slots) and ``fit``/``evaluate``/``predict``, which Keras runs through the strategy it finds in force. Code that
  needs the object gets it from `strategy()` (or ``tf.distribute.get_strategy()``).
- **torch**: Keras's ``fit`` on the torch backend has no data-parallel path (Keras 3 ships distribution code for
  JAX, and TensorFlow through tf.distribute, not for torch), so `setup(n > 1)` raises ``ValueError``.

Several machines (documented, not tested here):

- JAX multi-host: start the same script on every host and call
  ``keras.distribution.initialize(job_addresses="host0:1234,host1:1234", num_processes=2, process_id=i)`` (or set
  ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``
  and call it without arguments) BEFORE anything touches JAX; ``keras.distribution.list_devices()`` then lists
  every host's devices, ``DataParallel(devices=...)`` spans them all, and each process feeds its own shard of
  the data (``DataParallel`` shards a tf.data dataset by process automatically).
- TensorFlow multi-worker: set ``TF_CONFIG`` on each worker (``{"cluster": {"worker": ["host0:12345",
  "host1:12345"]}, "task": {"type": "worker", "index": i}}``), create ``tf.distribute.MultiWorkerMirroredStrategy()``
  at the start of the program, build and compile the model under its scope (or make it the default with
  ``tf.distribute.experimental_set_strategy``), and fit on a ``tf.data`` dataset (auto-sharded by worker); the
  batch size is the global one. Only the chief (index 0) should write the final model; the others write to
  temporary folders.

What to expect (measured on this machine with 2 virtual CPU devices; tests/test_distribute.py):

- Same global batch, seed and data: the 2-device loss curve equals the 1-device one to ~1e-7 relative on both
  backends, Dropout included on JAX (its random bits do not depend on how the batch is sharded).
- TensorFlow replicas draw the SAME dropout mask for their shards (each replica runs Keras's seed generator
  from the same state), so a model with Dropout or other random layers follows a different, statistically
  equivalent curve (digits_mlp --smoke: ~0.5% apart); BatchNormalization normalises each shard with its own
  statistics. A final batch that does not split evenly (25 rows on 2 replicas: 13 + 12) is averaged per replica
  with equal weights, not per row (~1e-4 relative on that epoch's loss); batch and data sizes divisible by N
  avoid it.
- Virtual CPU devices share the same cores: they show that the program is correct, not a speed-up.

Keras 3.15 needs three small fixes for this, applied by `setup` and only in the process that asks for
N > 1 (each is skipped when the Keras internals it wraps are gone): JAX - a batch the devices cannot split is
replicated instead of raising IndivisibleError (the last, smaller batch of an epoch); TensorFlow - fit/evaluate
build the model from one replica's shard (Keras averages the shards and fails when they differ in size), and
``predict_on_batch`` goes through ``predict`` (Keras ran the whole batch on every replica and returned N copies).
"""
from __future__ import annotations

import numbers
import os

#: What `setup` configured in this process: None (one device) or {"backend", "strategy", "devices", "object"}.
_STATE: dict | None = None

_XLA_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def setup(devices: int | None) -> str:
    """Split every training batch across `devices` devices for the rest of the process.

    Call before the model is created. ``None`` or 1 is a no-op (one device, as without this module).

    Args:
        devices: number of devices (GPUs/TPUs when there are enough, else virtual CPU devices).

    Returns:
        A one-line description of what is in force, e.g. "jax DataParallel over 2 devices (cpu:0, cpu:1)"
        (asking for 1 device after 2 were set up changes nothing and says so).

    Raises:
        ValueError: `devices` is not a positive integer; the backend is torch; or fewer devices exist than asked
            for (for CPU devices: the backend was initialised before `setup`, too late to make virtual ones).
    """
    global _STATE
    if devices is None:
        return _describe_line()
    if isinstance(devices, bool) or not isinstance(devices, numbers.Integral) or devices < 1:
        raise ValueError(f"`devices` must be a positive integer (or None for one device); received {devices!r}.")
    devices = int(devices)
    import keras

    backend = keras.backend.backend()
    if devices == 1:
        return _describe_line()
    if _STATE is not None:
        if _STATE["devices"] == devices:
            return _describe_line()
        raise ValueError(f"Data parallelism is already set up over {_STATE['devices']} devices in this process; "
                         f"it cannot be changed to {devices}. Start a new process.")
    if backend == "jax":
        _STATE = _setup_jax(devices)
    elif backend == "tensorflow":
        _STATE = _setup_tensorflow(devices)
    else:
        raise ValueError(
            f"--distribute is not supported on the {backend} backend by Keras's fit; use jax or tensorflow "
            "(KERAS_BACKEND=jax: keras.distribution.DataParallel; KERAS_BACKEND=tensorflow: "
            "tf.distribute.MirroredStrategy), or train with your own loop wrapped in "
            f"torch.nn.parallel.DistributedDataParallel (the model is a torch.nn.Module). Received devices={devices}.")
    return _describe_line()


def describe() -> dict:
    """What is in force now: {"backend", "strategy", "devices" (count), "device_names"}.

    Read from the backend itself (Keras's current distribution on JAX, TensorFlow's current strategy), so it
    also reports a distribution set up outside kerastk.
    """
    import keras

    backend = keras.backend.backend()
    info = {"backend": backend, "strategy": "single device", "devices": 1, "device_names": []}
    if backend == "jax":
        dist = keras.distribution.distribution()
        if dist is not None:
            names = [str(d) for d in dist.device_mesh.devices.flatten()]
            info.update(strategy=type(dist).__name__, devices=len(names), device_names=names)
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            strat = tf.distribute.get_strategy()
            # "/job:localhost/replica:0/task:0/device:CPU:1" -> "cpu:1", as keras.distribution.list_devices() says
            names = [d.split("/device:")[-1].lower() for d in getattr(strat.extended, "worker_devices", ())]
            info.update(strategy=type(strat).__name__, devices=int(strat.num_replicas_in_sync),
                        device_names=names)
    return info


def strategy():
    """The ``tf.distribute`` strategy `setup` made the default (TensorFlow), else None."""
    return _STATE["object"] if _STATE and _STATE["backend"] == "tensorflow" else None


def _describe_line() -> str:
    info = describe()
    if info["devices"] <= 1:
        return f"{info['backend']}: one device (no data parallelism)"
    return (f"{info['backend']} {info['strategy']} over {info['devices']} devices "
            f"({', '.join(info['device_names'])})")


def _too_few(backend: str, wanted: int, found: list, why: str) -> ValueError:
    return ValueError(f"--distribute {wanted}: the {backend} backend has only {len(found)} device(s) "
                      f"({', '.join(map(str, found)) or 'none'}); {why}")


# --- backend adapters: each imports its backend inside the function -----------------------------------------


def _setup_jax(devices: int) -> dict:
    """keras.distribution.DataParallel over `devices` JAX devices (virtual CPU devices when there is no
    accelerator, made before JAX initialises its backend)."""
    import jax
    import keras
    from jax._src import xla_bridge

    initialised = xla_bridge.backends_are_initialized()
    flags = os.environ.get("XLA_FLAGS", "")
    if not initialised and _XLA_DEVICE_FLAG not in flags:
        # Only the CPU platform reads this; a GPU/TPU machine still lists its accelerators first.
        if hasattr(jax.config, "jax_num_cpu_devices"):
            if jax.config.jax_num_cpu_devices < devices:
                jax.config.update("jax_num_cpu_devices", devices)
        else:  # older JAX: the XLA flag, read when the backend initialises
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_DEVICE_FLAG}={devices}".strip()
    found = keras.distribution.list_devices()
    if len(found) < devices:
        if initialised:
            why = ("JAX was initialised before kerastk.distribute.setup() could add virtual CPU devices: call "
                   "setup before anything creates a JAX array, or start Python with "
                   f"XLA_FLAGS={_XLA_DEVICE_FLAG}={devices}.")
        elif _XLA_DEVICE_FLAG in flags:
            why = f"XLA_FLAGS={flags!r} asks for fewer; raise its {_XLA_DEVICE_FLAG} to {devices}."
        else:
            why = "ask for fewer devices."
        raise _too_few("jax", devices, found, why)
    dist = _data_parallel_class()(devices=found[:devices])
    keras.distribution.set_distribution(dist)
    _jax_layout_per_batch_shape()
    return {"backend": "jax", "strategy": "DataParallel", "devices": devices, "object": dist}


def _data_parallel_class():
    """keras.distribution.DataParallel that replicates a batch it cannot split evenly.

    Keras shards every batch along its first axis, and JAX refuses a batch whose size the device count does
    not divide (the last, smaller batch of an epoch; a 23-row test split). In one process such a batch is
    placed whole on every device instead (the same result, without the speed-up). Across several processes
    each holds different rows, so Keras's behaviour is kept there.
    """
    import keras

    class DataParallel(keras.distribution.DataParallel):
        def get_data_layout(self, data_shape):
            n = self.device_mesh.shape[0]
            if self.num_processes == 1 and data_shape and data_shape[0] is not None and data_shape[0] % n:
                return keras.distribution.TensorLayout([None] * len(data_shape), self.device_mesh)
            return super().get_data_layout(data_shape)

    return DataParallel


def _setup_tensorflow(devices: int) -> dict:
    """tf.distribute.MirroredStrategy over `devices` GPUs or logical CPU devices, made the process default."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [f"/gpu:{i}" for i in range(len(tf.config.list_logical_devices("GPU")))]
        if len(names) < devices:
            raise _too_few("tensorflow", devices, names, "ask for fewer devices.")
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        current = tf.config.get_logical_device_configuration(cpu) or []
        if len(current) < devices:
            try:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])
            except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
                pass
        names = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(names) < devices:
            raise _too_few("tensorflow", devices, names,
                           "TensorFlow's runtime was initialised before kerastk.distribute.setup() could make "
                           "logical CPU devices: call setup before any tensor is created or a model is built.")
    strat = tf.distribute.MirroredStrategy(devices=names[:devices])
    # The process default from now on: as if the rest of the program ran inside `with strat.scope():`.
    tf.distribute.experimental_set_strategy(strat)
    _tf_build_from_one_replica()
    _tf_predict_on_batch_once()
    return {"backend": "tensorflow", "strategy": "MirroredStrategy", "devices": devices, "object": strat}


def _tf_build_from_one_replica() -> None:
    """Work around Keras 3's TensorFlow trainer under a tf.distribute strategy.

    Before each fit/evaluate, the trainer builds the model from the first batch, which it gets by averaging the
    replicas' shards (``strategy.reduce("MEAN", batch)``): that fails when the batch does not split evenly
    ("Inputs to operation AddN ... must have the same size and shape", e.g. ``evaluate`` on a 23-row test split
    over 2 replicas). Building only needs the shapes, so the first replica's shard is passed instead.
    """
    import tensorflow as tf
    from keras import tree

    try:
        from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

        original = TensorFlowTrainer._maybe_symbolic_build
    except (ImportError, AttributeError):  # Keras reorganised: nothing to work around here
        return
    if getattr(original, "_kerastk", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(
                    lambda v: self.distribute_strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
                break
            return original(self, data_batch=data_batch)
        return original(self, iterator=iterator, data_batch=data_batch)

    _maybe_symbolic_build._kerastk = True
    TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build


def _tf_predict_on_batch_once() -> None:
    """Work around Keras 3's ``predict_on_batch`` under a tf.distribute strategy: it runs the whole batch on
    every replica and concatenates the results (1 row in, 2 rows out on 2 replicas). ``predict`` splits the
    batch between the replicas and puts the rows back in order, so the batch goes through it as one batch."""
    from keras import tree

    try:
        from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    except ImportError:  # Keras reorganised: nothing to work around here
        return
    original = TensorFlowTrainer.predict_on_batch
    if getattr(original, "_kerastk", False):
        return

    def predict_on_batch(self, x):
        if self.distribute_strategy.num_replicas_in_sync > 1:
            rows = int(tree.flatten(x)[0].shape[0])
            return self.predict(x, batch_size=max(rows, 1), verbose=0)
        return original(self, x)

    predict_on_batch._kerastk = True
    TensorFlowTrainer.predict_on_batch = predict_on_batch


def _jax_layout_per_batch_shape() -> None:
    """Work around Keras 3's JAX epoch iterator under a distribution: it takes the data layout from the first
    batch and reuses it for every batch, so the epoch's last, smaller batch gets a sharding it cannot take
    (IndivisibleError when the device count does not divide it). Here the layout is looked up per batch
    shape (and `_data_parallel_class` replicates the batches it cannot split)."""
    from keras import tree

    try:
        from keras.src.backend.jax import trainer

        original = trainer.JAXEpochIterator._get_distributed_iterator
    except (ImportError, AttributeError):  # Keras reorganised: nothing to work around here
        return
    if getattr(original, "_kerastk", False):
        return

    def _get_distributed_iterator(self, distribution):
        layouts = {}  # batch shapes -> their layouts (an epoch has at most two: full batches and the last one)
        for data in self.data_adapter.get_jax_iterator():
            shapes = tuple(None if d is None else tuple(d.shape) for d in tree.flatten(data))
            if shapes not in layouts:
                layouts[shapes] = tree.map_structure(
                    lambda d: None if d is None else distribution.get_data_layout(d.shape).backend_layout, data)
            yield trainer._distribute_data(data, layouts[shapes])

    _get_distributed_iterator._kerastk = True
    trainer.JAXEpochIterator._get_distributed_iterator = _get_distributed_iterator
