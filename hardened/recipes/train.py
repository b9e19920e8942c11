"""Supervised training of a builder's model: the core every recipe calls.

A run writes a Hub-ready checkpoint folder (`hardened.save_pretrained`) plus
``training_log.csv`` and ``training_curve.png``. It is resumable: Keras'
`BackupAndRestore` keeps the weights, optimizer state and epoch in
``work_dir``; calling the same recipe again with the same ``work_dir``
continues where an interrupted run stopped.

Mixed precision: on TensorFlow the default (``precision="auto"``) trains in
``mixed_bfloat16`` (about 4x float32 on a CPU with oneDNN and AMX). Weights are
float32 either way, and the released model is rebuilt in float32 before it is
saved, so checkpoints never record a bf16 policy.
"""

import csv
import dataclasses
import math
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np

from hardened._provenance import command_line, git_commit  # noqa: F401  (re-exported)
from hardened.data import dataset_info, load_dataset
from hardened.recipes import tricks
from hardened.recipes.distributed import model_scope, replica_count
from hardened.zoo.checkpoint import named_variables

PRECISIONS = ("auto", "float32", "mixed_bfloat16")


#: Training augmentations: random crops after ``pad`` pixels of reflection padding, with (``"crop_flip"``, CIFAR-10)
#: or without (``"crop"``, digits) a random horizontal flip, or with airbench's alternating flip (``"crop_altflip"``:
#: `hardened.recipes.tricks.alternating_flips`).
AUGMENTS = (None, "crop", "crop_flip", "crop_altflip")


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled mini-batches of an in-memory dataset, with optional augmentation.

    Augmentation (``"crop_flip"``): random translation by up to ``pad`` pixels
    (reflect padding, as airbench) and horizontal flips; done in numpy so that
    it runs the same on every backend.

    Args:
        x: Float images ``(N, H, W, C)``.
        y: Integer labels ``(N,)``.
        batch_size: Batch size (the last batch may be smaller).
        augment: One of `AUGMENTS`.
        pad: Translation range of ``crop_flip``.
        seed: Seed of the shuffle and augmentation.
        shuffle: Shuffle every epoch.
        multiple_of: Data-parallel training: trim the last, ragged batch to a
            multiple of this (the number of replicas); ``batch_size`` must be
            a multiple of it.
    """

    def __init__(self, x, y, batch_size, augment=None, pad=2, seed=0, shuffle=True, multiple_of=1):
        super().__init__()
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}.")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.multiple_of = int(multiple_of)
        if self.multiple_of < 1 or self.batch_size % self.multiple_of:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of the {self.multiple_of} replicas.")
        self.augment, self.pad, self.seed, self.shuffle = augment, int(pad), int(seed), bool(shuffle)
        self.epoch = 0
        self._order = self._permutation()

    def _permutation(self):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self):
        full, rest = divmod(len(self.x), self.batch_size)
        return full + int(rest - rest % self.multiple_of > 0)

    def __getitem__(self, index):
        idx = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        idx = idx[:len(idx) - len(idx) % self.multiple_of]
        xb, yb = self.x[idx], self.y[idx]
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            xb = _crop_flip(xb, self.pad, rng, flip=self.augment == "crop_flip")
            if self.augment == "crop_altflip":
                flips = tricks.alternating_flips(len(self.x), self.epoch, self.seed)[idx]
                xb = np.where(flips[:, None, None, None], xb[:, :, ::-1], xb)
        return xb, yb

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch):
        """Draw the order (and augmentation) of ``epoch``: data depend on the epoch index, not on history."""
        self.epoch = int(epoch)
        self._order = self._permutation()


def _crop_flip(xb, pad, rng, flip=True):
    n, h, w, _ = xb.shape
    if pad > 0:
        padded = np.pad(xb, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        dy = rng.integers(0, 2 * pad + 1, n)
        dx = rng.integers(0, 2 * pad + 1, n)
        xb = np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if flip:  # digits are not mirror-symmetric: "crop" leaves them unflipped
        flips = rng.random(n) < 0.5
        xb = np.where(flips[:, None, None, None], xb[:, :, ::-1], xb)
    return np.ascontiguousarray(xb, dtype=np.float32)


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start_factor * peak`` to ``peak``, then linear decay to ``end_factor * peak``."""

    def __init__(self, peak, total_steps, warmup_steps, start_factor=0.1, end_factor=0.0):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.end_factor = float(end_factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        up = self.start_factor + (1.0 - self.start_factor) * step / warm
        rest = max(self.total_steps - self.warmup_steps, 1)
        down = 1.0 - (1.0 - self.end_factor) * (step - self.warmup_steps) / rest
        factor = keras.ops.where(step < self.warmup_steps, up, keras.ops.maximum(down, self.end_factor))
        return self.peak * factor

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "start_factor": self.start_factor, "end_factor": self.end_factor}


def whiten_conv(model, layer_name, x, n_images=5000, eps=5e-4):
    """Initialise conv ``layer_name`` as a patch-whitening filter bank (airbench's first layer).

    The layer's input patches (``kh x kw x C`` values, computed on the first
    ``n_images`` of ``x`` through the model's own preprocessing) are
    decorrelated: filter ``k`` is the eigenvector ``v_k`` of their covariance
    scaled by ``1/sqrt(lambda_k + eps)``, for the top ``filters/2``
    eigenvectors, followed by their negatives (so a following ReLU/GELU
    keeps both signs). Deterministic; the weights stay trainable.

    Args:
        model: A functional model containing a ``Conv2D`` named ``layer_name``
            with an even number of filters at most ``2 * kh * kw * C``.
        layer_name: The conv layer to initialise (usually the stem).
        x: Training images in the model's input format.
        n_images: How many images the covariance is estimated on.
        eps: Added to the eigenvalues.

    Returns:
        The eigenvalues used, largest first (for the run's metadata).
    """
    layer = model.get_layer(layer_name)
    kernel = layer.kernel
    kh, kw, channels, filters = (int(d) for d in kernel.shape)
    half = filters // 2
    if filters % 2 or half > kh * kw * channels:
        raise ValueError(f"whiten_conv: {layer_name!r} has {filters} filters; need an even number at most "
                         f"{2 * kh * kw * channels} for {kh}x{kw}x{channels} patches.")
    feed = keras.Model(model.inputs[0], layer.input)
    # training=True: a test-time augmentation before the layer (FlipBatch) must not add mirrored copies.
    # Only stateless preprocessing may precede it, so training mode changes nothing else.
    stateful = [lyr.name for lyr in feed.layers if lyr.weights or isinstance(lyr, keras.layers.Dropout)]
    if stateful:
        raise ValueError(f"whiten_conv: {layer_name!r} must come first; {stateful} precede it.")
    xs = np.asarray(x[:n_images], "float32")
    inputs = np.concatenate([keras.ops.convert_to_numpy(feed(xs[i:i + 500], training=True))
                             for i in range(0, len(xs), 500)]).astype("float64")
    patches = np.lib.stride_tricks.sliding_window_view(inputs, (kh, kw), axis=(1, 2))  # N, H', W', C, kh, kw
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * channels)  # kernel order kh, kw, C
    cov = np.cov(patches, rowvar=False)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:half]
    eigvals, eigvecs = eigvals[order], eigvecs[:, order]
    bank = eigvecs / np.sqrt(eigvals + eps)
    weights = np.concatenate([bank, -bank], axis=1).reshape(kh, kw, channels, filters)
    rest = layer.get_weights()[1:]
    layer.set_weights([weights.astype(kernel.dtype if isinstance(kernel.dtype, str) else "float32"), *rest])
    return [float(v) for v in eigvals]


def _cpuinfo_lines(cpuinfo):
    """``(key, value)`` pairs of a ``/proc/cpuinfo``-style file; empty where it cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    return [tuple(part.strip() for part in line.split(":", 1)) for line in text.splitlines() if ":" in line]


def cpu_has_native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); ``None`` where unknown.

    Without them oneDNN emulates bf16 and TensorFlow's mixed_bfloat16 training is
    several times *slower* than float32 (measured on an AVX2-only AMD EPYC with the
    seed 002 CIFAR-10 CNN: 20 img/s against 149 img/s in float32).
    """
    flags = {flag for key, value in _cpuinfo_lines(cpuinfo) if key == "flags" for flag in value.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"}) if flags else None


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name (Linux), else ``platform.processor()``; it decides bf16 speed."""
    names = [value for key, value in _cpuinfo_lines(cpuinfo) if key == "model name"]
    return names[0] if names else (platform.processor() or None)


def resolve_precision(precision):
    """``"auto"`` -> ``mixed_bfloat16`` on TensorFlow where bf16 is native, ``float32`` elsewhere.

    Native means a GPU, or a CPU with AVX512-BF16/AMX-BF16 (or one whose flags cannot
    be read); on other CPUs bf16 is emulated and slower than float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        if keras.backend.backend() != "tensorflow":
            return "float32"
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU") or cpu_has_native_bf16() is not False:
            return "mixed_bfloat16"
        return "float32"
    return precision


def build_in_policy(build_fn, policy):
    """Call ``build_fn()`` with the global dtype policy set to ``policy`` (restored after)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return build_fn()
    finally:
        keras.config.set_dtype_policy(previous)


def provenance():
    """Command, commit, host and versions: what a card needs to say how a checkpoint was made."""
    commit, dirty = git_commit()
    return {"command": command_line(), "commit": commit, "commit_dirty": dirty,
            "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "system": platform.system(),
                     "cpu": cpu_model()},
            "backend": keras.backend.backend()}


def dataset_metadata(dataset):
    """Dataset name, class names and the caveats about the copy used."""
    info = dataset_info(dataset)
    copy = "official"
    if info.name == "cifar10":
        copy = ("JPEG re-encoding of CIFAR-10 (the offline copy this zoo was trained on; the lossless original "
                "was not reachable): pixels differ from the official files, test set in class round-robin order")
    return {"dataset": info.name, "data_copy": copy, "class_names": list(info.class_names),
            "preprocessing": {"input_range": [0.0, 1.0], "layout": "NHWC", "normalisation": "inside the model"}}


def float32_copy(build_fn, model, *, by_name=False):
    """A float32 rebuild of ``model`` holding its weights: the release copy of a (mixed-precision) run.

    The copy has the same weights and a config without the training dtype
    policy, so a checkpoint never records ``mixed_bfloat16``.

    Args:
        build_fn: Builds the architecture of ``model`` (called under the float32 policy).
        model: The trained model.
        by_name: Match variables by their `named_variables` keys (cast to
            float32) instead of by position (`set_weights`).

    Returns:
        The float32 model.
    """
    final = build_in_policy(build_fn, "float32")
    if not by_name:
        final.set_weights(model.get_weights())
        return final
    trained = named_variables(model)
    for key, var in named_variables(final).items():
        var.assign(keras.ops.convert_to_numpy(trained[key]).astype("float32"))
    return final


def training_metadata(precision, seed, max_train, n_train, started, **extra):
    """The ``"training"`` entry of a checkpoint's metadata.

    Args:
        precision: The resolved dtype policy the run trained in.
        seed: The run's seed.
        max_train: The ``max_train`` limit asked for (``None``: the whole training set).
        n_train: Number of training images used.
        started: `time.perf_counter` value at the start of the run;
            ``seconds_total_this_run`` is measured up to this call.
        **extra: The runner's own entries (e.g. `fit_model`'s summary), placed first.

    Returns:
        Dict: ``extra``, then ``precision``, ``seed``, ``max_train``, ``n_train``
        and ``seconds_total_this_run``.
    """
    return {**extra, "precision": precision, "seed": int(seed), "max_train": max_train, "n_train": int(n_train),
            "seconds_total_this_run": round(time.perf_counter() - started, 1)}


def checkpoint_metadata(out_dir, name, recipe, *, fit, builder, kwargs, training, test_accuracy, n_test, dataset,
                        note=None, started_from=None, **extra):
    """The ``metadata.json`` content every recipe runner writes with its checkpoint.

    Args:
        out_dir: The checkpoint folder (its name is the ``model_name``).
        name: The recipe's name.
        recipe: The recipe dict as run (recorded as ``recipe_spec``).
        fit: The training settings used.
        builder: Builder name of the architecture.
        kwargs: Builder keyword arguments.
        training: The ``"training"`` entry (see `training_metadata`).
        test_accuracy: Test accuracy of the released model.
        n_test: Number of test images it was measured on.
        dataset: Dataset name (`dataset_metadata` adds its class names and caveats).
        note: Free text from the caller.
        started_from: `provenance` taken when the run started.
        **extra: The runner's own entries, placed after ``n_test``.

    Returns:
        The metadata dict.

    Raises:
        ValueError: An ``extra`` key would replace a common entry.
    """
    head = {
        "model_name": Path(out_dir).name,
        "recipe": name,
        "recipe_spec": recipe,
        "fit": fit,
        "architecture": {"builder": builder, "kwargs": kwargs},
        "training": training,
        "test_accuracy": test_accuracy,
        "n_test": int(n_test),
    }
    tail = {"note": note, **dataset_metadata(dataset), **(started_from or {})}
    clash = sorted(set(extra) & (set(head) | set(tail)))
    if clash:
        raise ValueError(f"checkpoint_metadata: extra entries {clash} would replace common ones.")
    return {**head, **extra, **tail}


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The `fit_model` settings a recipe's ``fit`` block or a command-line override may set, with its defaults.

    Declared once: `FIT_KEYS` and `FIT_DEFAULTS` are read off it, every recipe runner checks its options
    with `check_fit_keys`, and a test checks the defaults against `fit_model`'s signature.
    """

    epochs: int = None
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    warmup_epochs: float = 1.0
    augment: str = None
    pad: int = 2
    no_decay_layers: tuple = ()
    lr_start_factor: float = 0.1
    lr_end_factor: float = 0.0
    bn_bias_lr_scale: float = 1.0
    lookahead: bool = False


#: Keys of `FitSettings`, in order.
FIT_KEYS = tuple(f.name for f in dataclasses.fields(FitSettings))
#: `fit_model`'s defaults (every key but ``epochs``, which a recipe must give).
FIT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FitSettings) if f.name != "epochs"}


def check_fit_keys(options, label="training options", extra=()):
    """Raise TypeError naming the keys of ``options`` that are neither `FIT_KEYS` nor ``extra``."""
    unknown = set(options) - set(FIT_KEYS) - set(extra)
    if unknown:
        raise TypeError(f"Unknown {label} {sorted(unknown)}; accepted: {sorted(set(FIT_KEYS) | set(extra))}.")


def fit_model(model, train, test, out_dir, *, epochs, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9,
              nesterov=True, weight_decay=5e-4, label_smoothing=0.0, warmup_epochs=1.0, augment=None, pad=2,
              no_decay_layers=(), lr_start_factor=0.1, lr_end_factor=0.0, bn_bias_lr_scale=1.0, lookahead=False,
              seed=0, work_dir=None, verbose="auto"):
    """Compile and fit ``model`` on ``train``, resumably; log to ``out_dir``.

    Data-parallel: build ``model`` (and call this) inside
    `hardened.recipes.distributed.data_parallel`; ``batch_size`` is then the
    global batch, and ragged batches are trimmed to a multiple of the replicas.

    Args:
        model: An uncompiled `keras.Model` returning logits.
        train: ``(x, y)`` arrays.
        test: ``(x, y)`` arrays evaluated after every epoch (monitoring only).
        out_dir: Where ``training_log.csv`` and ``training_curve.png`` go.
        epochs: Total epochs (a resumed run continues up to this count).
        batch_size: Mini-batch size.
        optimizer: ``"sgd"`` (momentum, Nesterov) or ``"adam"``.
        lr: Peak learning rate (linear warm-up from ``lr_start_factor x lr``,
            then linear decay to ``lr_end_factor x lr``).
        momentum, nesterov: SGD settings.
        weight_decay: Decoupled weight decay per step x lr (Keras semantics),
            not applied to biases or BatchNorm parameters.
        label_smoothing: Of the cross-entropy.
        warmup_epochs: Length of the linear warm-up.
        augment: One of `AUGMENTS`.
        pad: Translation range of the augmentation.
        no_decay_layers: Names of layers whose weights get no weight decay
            (e.g. an FC head that no BatchNorm follows, where decay only shrinks
            the weights that a test-time weight transform is measured against).
        lr_start_factor, lr_end_factor: Shape of the schedule (airbench: 0.2, 0.07).
        bn_bias_lr_scale: SGD only: BatchNorm biases take steps this many times
            larger (airbench: 64; `hardened.recipes.tricks.ScaledSGD`).
        lookahead: airbench's lookahead (`hardened.recipes.tricks.Lookahead`).
        seed: Seed of shuffling and augmentation.
        work_dir: Folder for the `BackupAndRestore` state (``None``: ``out_dir/_backup``).
        verbose: Keras' verbosity (``"auto"``: progress bar).

    Returns:
        Dict with ``epochs``, ``seconds``, final ``train_accuracy``/``test_accuracy``/losses.
    """
    x, y = train
    replicas = replica_count(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "_backup"
    work_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    schedule = WarmupLinearDecay(lr, steps_per_epoch * epochs, int(steps_per_epoch * warmup_epochs),
                                 start_factor=lr_start_factor, end_factor=lr_end_factor)
    if optimizer == "sgd" and bn_bias_lr_scale != 1.0:
        opt = tricks.ScaledSGD(schedule, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None,
                               scaled_paths=[v.path for v in tricks.batchnorm_betas(model)], scale=bn_bias_lr_scale)
    elif optimizer == "sgd":
        # Plain SGD when nothing is scaled: torch swaps in its fused SGD for this exact class only.
        opt = keras.optimizers.SGD(schedule, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None)
    elif bn_bias_lr_scale != 1.0:
        raise ValueError("bn_bias_lr_scale applies to optimizer 'sgd' only.")
    elif optimizer == "adam":
        opt = keras.optimizers.AdamW(schedule, weight_decay=weight_decay or 0.0)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if weight_decay:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        if no_decay_layers:
            missing = sorted(set(no_decay_layers) - {layer.name for layer in model.layers})
            if missing:
                raise ValueError(f"no_decay_layers names layers the model does not have: {missing}.")
            opt.exclude_from_weight_decay(
                var_list=[v for name in no_decay_layers for v in model.get_layer(name).trainable_weights])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if label_smoothing:
        # Sparse CE has no label smoothing; one-hot the labels in the data instead.
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    num_classes = int(model.output_shape[-1])
    with model_scope(model):
        model.compile(optimizer=opt, loss=loss, metrics=[_accuracy_metric(label_smoothing)])
    data = ArrayBatches(x, _labels(y, num_classes, label_smoothing), batch_size, augment=augment, pad=pad, seed=seed,
                        multiple_of=replicas)
    n_val = len(test[0]) - len(test[0]) % replicas  # data-parallel: every batch splits evenly
    val = (test[0][:n_val], _labels(test[1][:n_val], num_classes, label_smoothing))
    log = out_dir / "training_log.csv"
    # The data's epoch follows Keras' epoch counter (a resumed run draws what an uninterrupted one would;
    # JAX's fit also calls on_epoch_end once before the first epoch).
    callbacks = [keras.callbacks.BackupAndRestore(str(work_dir), delete_checkpoint=False),
                 keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: data.set_epoch(epoch)),
                 keras.callbacks.CSVLogger(str(log), append=True)]
    if lookahead:
        # After BackupAndRestore: its average starts from the restored weights and step count. Its update
        # after an epoch's last batch still precedes validation and the backup (both come at epoch end).
        callbacks.append(tricks.Lookahead(steps_per_epoch * epochs))
    # BackupAndRestore sets model._initial_epoch when it restores and Keras never clears it: a later
    # fit of the same model object (the next pruning round, HRS block) would start at that epoch and skip
    # training. This run's own backup folder alone decides where it starts.
    model._initial_epoch = None
    started = time.perf_counter()
    # shuffle=False: ArrayBatches shuffles itself per (seed, epoch); Keras' own batch-order shuffle would
    # make the order depend on the global RNG state (differs after a resume or under a strategy).
    with model_scope(model):
        model.fit(data, epochs=epochs, validation_data=val, validation_batch_size=512 * replicas,
                  callbacks=callbacks, verbose=verbose, shuffle=False)
    seconds = time.perf_counter() - started
    rows = read_log(log)
    plot_training_curve(rows, out_dir / "training_curve.png", title=getattr(model, "name", ""))
    last = rows[-1] if rows else {}
    return {"epochs": int(epochs), "seconds_this_run": round(seconds, 1),
            "train_accuracy": last.get("accuracy"), "train_loss": last.get("loss"),
            "test_accuracy_last_epoch": last.get("val_accuracy"), "test_loss": last.get("val_loss")}


def _labels(y, num_classes, label_smoothing):
    y = np.asarray(y).astype("int64")
    if label_smoothing:
        return np.eye(num_classes, dtype="float32")[y]
    return y


def _accuracy_metric(label_smoothing):
    if label_smoothing:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def read_log(path):
    """Rows of a Keras `CSVLogger` file as dicts of floats; a resumed run's repeated epochs keep the last."""
    path = Path(path)
    if not path.exists():
        return []
    by_epoch = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                parsed = {k: float(v) for k, v in row.items() if k and v not in (None, "")}
            except ValueError:
                continue  # a repeated header from an appended run
            by_epoch[int(parsed.get("epoch", len(by_epoch)))] = parsed
    return [by_epoch[k] for k in sorted(by_epoch)]


def plot_training_curve(rows, path, title=""):
    """Loss and accuracy per epoch (train and test) as a PNG."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("loss", "train"), ("val_loss", "test")):
        if key in rows[0]:
            ax1.plot(epochs, [r[key] for r in rows], marker="o", ms=3, label=label)
    for key, label in (("accuracy", "train"), ("val_accuracy", "test")):
        if key in rows[0]:
            ax2.plot(epochs, [100 * r[key] for r in rows], marker="o", ms=3, label=label)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def test_accuracy(model, x, y, batch_size=512):
    """Top-1 accuracy of ``model`` (logits) on ``(x, y)``."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))


def load_split(dataset, data_dir=None, max_train=None, max_test=None):
    """``((x, y), (xt, yt))`` of ``dataset``, optionally the first ``max_*`` images."""
    (x, y), (xt, yt) = load_dataset(dataset, data_dir=data_dir)
    if max_train:
        x, y = x[:max_train], y[:max_train]
    if max_test:
        xt, yt = xt[:max_test], yt[:max_test]
    return (x, y), (xt, yt)
