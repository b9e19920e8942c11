"""Defend++ (seed 003): bottleneck reinforcement by an auto-encoder trained jointly with the classifier.

The classifier is left untouched. Its first ``encoder_blocks`` stages (the
``stage{b}_out`` taps of `hardened.models.stage_outputs`) are the encoder
``E_0 .. E_{M-1}`` of an auto-encoder; the first ``shared_blocks`` of them are
the classifier's own layers, the others (if any) are AE-only copies of the
same stages (seed 003 shares 4 blocks on MNIST, 3 on CIFAR-10). The decoder
mirrors the encoder as a Laplacian pyramid:

* ``D_{M-1}``: conv + stride-2 transposed-conv blocks from the bottleneck up
  to the coarsest scale with a loss, the last one reduced to image channels
  (cropped when the bottleneck is odd-sized, e.g. 4x4 -> 8x8 -> 7x7 on MNIST);
* ``I~^m = U(I~^{m+1}) + H(E_m)`` for the finer scales, with ``U`` =
  `hardened.layers.DecoderUp` and ``H`` = `hardened.layers.DecoderSkip`
  fed by the encoder block at that resolution.

Each scale's output goes through a BatchNormalization whose gamma starts at
0 (``decoder_bn<m>``). Not in the paper's equations, but its mirrored ResNet
blocks have BatchNorm and these U/H modules do not: without it, SGD at the
classifier's learning rate diverged within 5 steps (see `_out_norm`).

Targets ``I^m`` are DCT low-pass images (`hardened.layers.dct_lowpass_targets`)
at ``H/2^m x W/2^m``; scales whose side would fall below 7 have no loss (and no
decoder output). The training loss is::

    L = CE(logits, y) + MSE(I~^0, I^0) + lambda * sum_{m>=1} MSE(I~^m, I^m)

with MSE the mean over pixels and channels (seed 003's "pixel-wise MSE"),
lambda = 0.01. Training is joint, on clean images, optionally preceded by the
paper's alternating warm-up (``warmup: "alternate"``: AE-only epochs, then
classifier-only epochs, repeated; the encoder is shared, so the paper's
weight copies between the two are implicit).

The checkpoint folder holds the classifier alone (``hardened.load_pretrained``
returns a plain logits model); the decoder is saved in ``decoder/`` (its own
config.json + model.safetensors, inputs = the encoder taps), with
``reconstruction.png`` showing clean, target and reconstructed images.

A recipe of kind ``"defendpp"``::

    {"kind": "defendpp", "builder": "resnet18", "dataset": "cifar10",
     "kwargs": {"input_shape": [32, 32, 3], "width": 0.5, ...},
     "fit": {"epochs": 12, "batch_size": 256, "lr": 0.1, ...},
     "defendpp": {"decoder": True, "lambda": 0.01, "encoder_blocks": 4,
                  "shared_blocks": 3, "warmup": None}}

``"decoder": False`` trains the identical classifier with cross-entropy only,
through the same code path (same initialisation, batches and schedule): the
control that Defend++'s clean accuracy is compared with.
"""

import copy
import difflib
import json
import math
import numbers
import time
from collections import namedtuple
from pathlib import Path

import keras
import numpy as np

from hardened.layers import DecoderSkip, DecoderUp
from hardened.layers.defendpp import dct_matrix
from hardened.models import build_model, get_builder, stage_outputs
from hardened.recipes.train import (
    ArrayBatches,
    WarmupLinearDecay,
    build_in_policy,
    checkpoint_metadata,
    load_split,
    plot_training_curve,
    provenance,
    read_log,
    resolve_precision,
    test_accuracy,
    training_metadata,
)
from hardened.zoo.checkpoint import save_pretrained

#: Seed 003: no reconstruction loss (and no decoder output) below 7x7.
MIN_SIZE = 7
#: Settings of a recipe's ``"defendpp"`` block and their defaults (paper values).
DEFAULTS = {"decoder": True, "lambda": 0.01, "encoder_blocks": 4, "shared_blocks": 4, "warmup": None,
            "warmup_cycles": 2, "warmup_phase_epochs": 1}
WARMUPS = (None, "alternate")
#: `fit` keys a defendpp recipe accepts (those of `hardened.recipes.train.fit_model`).
FIT_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "label_smoothing",
            "warmup_epochs", "augment", "pad", "no_decay_layers")
FIT_DEFAULTS = {"batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                "weight_decay": 5e-4, "label_smoothing": 0.0, "warmup_epochs": 1.0, "augment": None, "pad": 2,
                "no_decay_layers": ()}
DECODER_DIR = "decoder"

#: What `build_defendpp` returns. ``joint``: image -> dict ``{"logits", "recon0", ...}``
#: (``outputs``: the same dict of symbolic tensors); ``decoder``: list of encoder taps
#: (``taps`` names) -> list of reconstructions (``None`` without decoder); ``scales``:
#: ``(h, w)`` of each reconstructed scale, finest first.
Defendpp = namedtuple("Defendpp", ["joint", "classifier", "decoder", "taps", "scales", "outputs"])


# ----------------------------------------------------------------- recipe checks
def check_settings(settings):
    """Validate a recipe's ``"defendpp"`` block and fill in the defaults.

    Args:
        settings: Dict with keys among `DEFAULTS` (or ``None`` for all defaults).

    Returns:
        A new dict with every key of `DEFAULTS`.

    Raises:
        ValueError: unknown key or out-of-range value; the message says what is accepted.
    """
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ValueError(f"recipe['defendpp'] must be a dict with keys among {sorted(DEFAULTS)}, got {settings!r}.")
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        hints = {k: difflib.get_close_matches(k, list(DEFAULTS), n=1) for k in unknown}
        said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ValueError(f"recipe['defendpp'] has unknown keys {said}; accepted: {sorted(DEFAULTS)}.")
    s = {**DEFAULTS, **settings}
    if not isinstance(s["decoder"], bool):
        raise ValueError(f"defendpp 'decoder' must be True or False, got {s['decoder']!r}.")
    lam = s["lambda"]
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"defendpp 'lambda' (weight of the coarser scales' loss) must be a finite number >= 0, "
                         f"got {lam!r}; seed 003 uses 0.01.")
    s["lambda"] = float(lam)
    for key, low in (("encoder_blocks", 1), ("shared_blocks", 1), ("warmup_cycles", 1), ("warmup_phase_epochs", 1)):
        if isinstance(s[key], bool) or not isinstance(s[key], numbers.Integral) or s[key] < low:
            raise ValueError(f"defendpp {key!r} must be an integer >= {low}, got {s[key]!r}.")
        s[key] = int(s[key])
    if s["shared_blocks"] > s["encoder_blocks"]:
        raise ValueError(f"defendpp 'shared_blocks' ({s['shared_blocks']}) cannot exceed 'encoder_blocks' "
                         f"({s['encoder_blocks']}): only encoder blocks can be shared with the classifier.")
    if s["warmup"] not in WARMUPS:
        raise ValueError(f"defendpp 'warmup' must be one of {WARMUPS}, got {s['warmup']!r}.")
    if s["warmup"] is not None and not s["decoder"]:
        raise ValueError("defendpp 'warmup' alternates decoder-only and classifier-only epochs, so it needs "
                         "'decoder': True; the control run (decoder False) takes warmup None.")
    return s


def check_recipe(name, recipe):
    """Validate a ``"defendpp"`` recipe; return ``(settings, fit)`` with defaults filled in."""
    if not isinstance(recipe, dict) or recipe.get("kind") != "defendpp":
        kind = recipe.get("kind") if isinstance(recipe, dict) else type(recipe).__name__
        raise ValueError(f"Recipe {name!r} is not a defendpp recipe (kind {kind!r}).")
    missing = [k for k in ("builder", "dataset", "kwargs", "fit") if k not in recipe]
    if missing:
        raise ValueError(f"Defendpp recipe {name!r} lacks {missing}; it needs builder, dataset, kwargs, fit "
                         "(and optionally a 'defendpp' block).")
    get_builder(recipe["builder"])  # ValueError with suggestions if unknown
    if not isinstance(recipe["kwargs"], dict):
        raise ValueError(f"Recipe {name!r}: 'kwargs' must be a dict of builder arguments, got {recipe['kwargs']!r}.")
    settings = check_settings(recipe.get("defendpp"))
    fit = recipe["fit"]
    if not isinstance(fit, dict) or "epochs" not in fit:
        raise ValueError(f"Recipe {name!r}: 'fit' must be a dict with at least 'epochs', got {fit!r}.")
    unknown = sorted(set(fit) - set(FIT_KEYS))
    if unknown:
        raise ValueError(f"Recipe {name!r}: unknown fit keys {unknown}; accepted: {list(FIT_KEYS)}.")
    return settings, {**FIT_DEFAULTS, **fit}


def _check_fit(fit):
    if isinstance(fit["epochs"], bool) or not isinstance(fit["epochs"], numbers.Integral) or fit["epochs"] < 1:
        raise ValueError(f"fit 'epochs' must be an integer >= 1, got {fit['epochs']!r}.")
    if int(fit["batch_size"]) < 1:
        raise ValueError(f"fit 'batch_size' must be >= 1, got {fit['batch_size']!r}.")
    if fit["optimizer"] not in ("sgd", "adam"):
        raise ValueError(f"fit 'optimizer' must be 'sgd' or 'adam', got {fit['optimizer']!r}.")
    if fit["augment"] not in (None, "crop_flip"):
        raise ValueError(f"fit 'augment' must be None or 'crop_flip', got {fit['augment']!r}.")


# ----------------------------------------------------------------- targets
def lowpass_targets(images, num_scales, min_size=MIN_SIZE):
    """NumPy twin of `hardened.layers.dct_lowpass_targets` (for the data pipeline).

    Computing the targets per batch in NumPy keeps them right for augmented
    images and costs no memory for the whole dataset; a test checks it
    against the `keras.ops` version.

    Args:
        images: ``(N, H, W, C)`` float images in [0, 1].
        num_scales: Number of scales wanted.
        min_size: Scales whose side would fall below this are left out.

    Returns:
        List of float32 arrays ``[I^0, I^1, ...]``, ``I^m`` of shape ``(N, H/2^m, W/2^m, C)``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"lowpass_targets expects NHWC images, got shape {x.shape}.")
    h, w = x.shape[1], x.shape[2]
    coeff = np.einsum("ah,nhwc,bw->nabc", dct_matrix(h), x, dct_matrix(w), optimize=True)
    targets = []
    for m in range(int(num_scales)):
        sh, sw = h // 2 ** m, w // 2 ** m
        if m > 0 and min(sh, sw) < min_size:
            break
        scale = math.sqrt((sh * sw) / (h * w))
        low = np.einsum("ah,nabc,bw->nhwc", dct_matrix(sh), coeff[:, :sh, :sw, :], dct_matrix(sw), optimize=True)
        targets.append(np.ascontiguousarray(low * scale, dtype=np.float32))
    return targets


def scale_sizes(image_size, bottleneck_size=(1, 1), min_size=MIN_SIZE):
    """``(h, w)`` of the scales that get a loss: ``H/2^m`` while at least ``min_size`` and the bottleneck's size.

    Scale 0 (the image itself) always counts.
    """
    h, w = image_size
    sizes = [(h, w)]
    m = 1
    while True:
        sh, sw = h // 2 ** m, w // 2 ** m
        if min(sh, sw) < min_size or sh < bottleneck_size[0] or sw < bottleneck_size[1]:
            return sizes
        sizes.append((sh, sw))
        m += 1


def recon_key(m):
    """Name of the joint model's output (and loss) for scale ``m``."""
    return f"recon{m}"


# ----------------------------------------------------------------- model
def _spatial(tensor):
    return int(tensor.shape[1]), int(tensor.shape[2])


def _renamed(prefix):
    def clone(layer):
        config = layer.get_config()
        config["name"] = prefix + layer.name
        return layer.__class__.from_config(config)

    return clone


def _crop_to(x, size, name):
    """Crop ``x`` at the bottom/right to spatial ``size`` (no-op when it already fits)."""
    h, w = _spatial(x)
    if (h, w) == tuple(size):
        return x
    if h < size[0] or w < size[1]:
        raise ValueError(f"Decoder output {h}x{w} is smaller than the target {size[0]}x{size[1]}.")
    return keras.layers.Cropping2D(((0, h - size[0]), (0, w - size[1])), name=name)(x)


def _out_norm(x, m):
    """BatchNormalization of scale ``m``'s output, gamma initialised to 0 (the reconstruction starts at 0).

    The U and H modules end in plain convolutions on post-ReLU features (fan-in 9 x 32 .. 9 x 256 at
    width 0.5): MSE curvature of order 10^2-10^3, so SGD at the classifier's learning rate (0.05-0.1)
    diverged within 5 steps even at lr 0.01. Normalising each output makes the modules' weights
    scale-invariant, as BatchNorm does in the classifier, and trains stably at lr 0.1.
    """
    return keras.layers.BatchNormalization(gamma_initializer="zeros", name=f"decoder_bn{m}")(x)


def build_defendpp(classifier, encoder_blocks=4, shared_blocks=4, decoder=True, min_size=MIN_SIZE):
    """Attach a Defend++ decoder to a built classifier (the classifier itself is not changed).

    Args:
        classifier: A functional model with ``stage{b}_out`` taps (see
            `hardened.models.stage_outputs`), e.g. from ``resnet18``.
        encoder_blocks: Encoder blocks ``E`` of the auto-encoder (stages 1..E).
        shared_blocks: How many of them are the classifier's own layers; the
            others are AE-only copies (fresh weights, names ``ae_<layer>``).
        decoder: ``False``: no decoder; ``joint`` outputs ``{"logits"}`` only.
        min_size: Smallest side of a reconstructed scale.

    Returns:
        A `Defendpp` tuple. ``joint`` shares every layer of ``classifier``.
    """
    if not decoder:
        outputs = {"logits": classifier.outputs[0]}
        joint = keras.Model(classifier.inputs, outputs, name=f"{classifier.name}_ce")
        return Defendpp(joint, classifier, None, [], [], outputs)
    taps = stage_outputs(classifier)
    stages = [f"stage{b}_out" for b in range(1, encoder_blocks + 1)]
    missing = [s for s in stages if s not in taps]
    if missing:
        have = sorted(k for k in taps if k.startswith("stage"))
        raise ValueError(f"Defend++ needs encoder taps {stages} but {classifier.name!r} has {have or 'none'}; "
                         f"lower 'encoder_blocks' to at most {len(have)}, or use a builder with named stage "
                         "outputs (resnet*, see hardened.models.stage_outputs).")
    image_size = tuple(int(d) for d in classifier.input_shape[1:3])
    channels = int(classifier.input_shape[-1])
    bottleneck = _spatial(taps[stages[-1]])
    scales = scale_sizes(image_size, bottleneck, min_size)
    num_scales = len(scales)

    # E_m for m < M-1 (read by the H modules): the deepest encoder block at scale m's resolution.
    by_size = {_spatial(taps[s]): b for b, s in enumerate(stages, start=1)}
    skip_blocks = []
    for m, size in enumerate(scales[:-1]):
        if size not in by_size:
            raise ValueError(f"Defend++ needs an encoder block at {size[0]}x{size[1]} (scale {m}) for its H module, "
                             f"but the encoder blocks are at {sorted(by_size, reverse=True)}.")
        skip_blocks.append(by_size[size])

    # The decoder is its own functional model; its inputs are the shared taps it reads: those of the
    # H modules, and the last shared block (the bottleneck, or the input of the AE-only blocks).
    used = sorted({b for b in skip_blocks if b <= shared_blocks} | {shared_blocks})
    compute_dtype = keras.config.dtype_policy().compute_dtype
    feats = {b: keras.Input(tuple(taps[f"stage{b}_out"].shape[1:]), dtype=compute_dtype, name=f"stage{b}_out")
             for b in used}
    inputs = [feats[b] for b in used]
    for b in range(shared_blocks + 1, encoder_blocks + 1):
        # AE-only copy of the classifier's stage b (same layers, fresh weights), as a nested model
        # (clone_model only re-wires a sub-graph onto an Input, not onto an intermediate tensor).
        stage = keras.Model(taps[f"stage{b - 1}_out"], taps[f"stage{b}_out"])
        start = keras.Input(tuple(feats[b - 1].shape[1:]), dtype=compute_dtype, name=f"ae_stage{b}_in")
        clone = keras.models.clone_model(stage, input_tensors=start, clone_function=_renamed("ae_"))
        feats[b] = keras.Model(clone.inputs[0], clone.outputs[0], name=f"ae_stage{b}")(feats[b - 1])

    # D_{M-1}: mirror blocks from the bottleneck up to the coarsest scale, reduced to image channels last.
    x = feats[encoder_blocks]
    width = int(x.shape[-1])
    target = scales[-1]
    n_up = 0
    while bottleneck[0] * 2 ** n_up < target[0] or bottleneck[1] * 2 ** n_up < target[1]:
        n_up += 1
    if n_up == 0:
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="decoder_top_conv1")(x)
        x = keras.layers.Conv2D(channels, 3, padding="same", name="decoder_top_out")(x)
    for i in range(1, n_up + 1):
        filters = max(width // 2 ** (i - 1), channels)
        last = i == n_up
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"decoder_top_conv{i}")(x)
        x = keras.layers.Conv2DTranspose(channels if last else max(filters // 2, channels), 3, strides=2,
                                         padding="same", activation=None if last else "relu",
                                         name=f"decoder_top_up{i}")(x)
    recon = {num_scales - 1: _out_norm(_crop_to(x, target, "decoder_top_crop"), num_scales - 1)}
    # Finer scales: I~^m = U(I~^{m+1}) + H(E_m).
    for m in range(num_scales - 2, -1, -1):
        e = feats[skip_blocks[m]]
        filters = int(e.shape[-1])
        up = DecoderUp(filters, channels, name=f"decoder_u{m}")(recon[m + 1])
        up = _crop_to(up, scales[m], f"decoder_u{m}_crop")
        high = DecoderSkip(filters, channels, name=f"decoder_h{m}")(e)
        recon[m] = _out_norm(keras.layers.Add(name=f"decoder_add{m}")([up, high]), m)
    # float32 outputs: the reconstruction losses are computed in float32 under mixed precision.
    outputs = [keras.layers.Activation("linear", dtype="float32", name=recon_key(m))(recon[m])
               for m in range(num_scales)]
    dec = keras.Model(inputs, outputs, name="defendpp_decoder")

    tap_names = [f"stage{b}_out" for b in used]
    recons = dec([taps[n] for n in tap_names])
    joint_outputs = {"logits": classifier.outputs[0], **{recon_key(m): r for m, r in enumerate(recons)}}
    joint = keras.Model(classifier.inputs, joint_outputs, name=f"{classifier.name}_defendpp")
    return Defendpp(joint, classifier, dec, tap_names, scales, joint_outputs)


def joint_losses(num_scales, lam, label_smoothing=0.0):
    """Losses and weights of the joint model: CE + MSE at scale 0 + ``lam`` x MSE at the other scales.

    Returns:
        ``(losses, loss_weights)``, dicts keyed by output name (``"logits"``, ``"recon0"``, ...).
    """
    if label_smoothing:
        ce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    else:
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    losses, weights = {"logits": ce}, {"logits": 1.0}
    for m in range(num_scales):
        losses[recon_key(m)] = keras.losses.MeanSquaredError()
        weights[recon_key(m)] = 1.0 if m == 0 else float(lam)
    return losses, weights


# ----------------------------------------------------------------- data
class DefendppBatches(ArrayBatches):
    """`ArrayBatches` yielding ``(images, {"logits": labels, "recon0": I^0, ...})``.

    The low-pass targets are computed per batch from the (augmented) images.

    Args:
        x, y: Images and integer labels.
        batch_size: Batch size.
        outputs: The output names to give targets for (a subset of
            ``"logits"``, ``"recon0"``, ...).
        num_classes: For one-hot labels when ``label_smoothing``.
        label_smoothing: One-hot labels instead of integers when non-zero.
        **kwargs: ``augment``, ``pad``, ``seed``, ``shuffle`` of `ArrayBatches`.
    """

    def __init__(self, x, y, batch_size, outputs, num_classes=10, label_smoothing=0.0, **kwargs):
        super().__init__(x, y, batch_size, **kwargs)
        self.outputs = tuple(outputs)
        self.num_scales = sum(1 for o in self.outputs if o.startswith("recon"))
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def __getitem__(self, index):
        xb, yb = super().__getitem__(index)
        targets = {}
        if "logits" in self.outputs:
            yb = np.asarray(yb).astype("int64")
            targets["logits"] = np.eye(self.num_classes, dtype="float32")[yb] if self.label_smoothing else yb
        if self.num_scales:
            for m, t in enumerate(lowpass_targets(xb, self.num_scales, min_size=1)):
                targets[recon_key(m)] = t
        return np.ascontiguousarray(xb, dtype=np.float32), targets


# ----------------------------------------------------------------- training
def _optimizer(model, fit, schedule):
    wd = fit["weight_decay"]
    if fit["optimizer"] == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=fit["momentum"], nesterov=fit["nesterov"],
                                   weight_decay=wd or None)
    else:
        opt = keras.optimizers.AdamW(schedule, weight_decay=wd or 0.0)
    if wd:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        # Checked against the joint model in train_defendpp; a warm-up phase's sub-model may lack some.
        names = {layer.name for layer in model.layers}
        keep = [n for n in fit["no_decay_layers"] if n in names]
        if keep:
            opt.exclude_from_weight_decay(var_list=[v for n in keep for v in model.get_layer(n).trainable_weights])
    return opt


def _fit_phase(model, outputs, losses, weights, train, test, fit, schedule, epochs, log_path, backup_dir, seed,
               verbose, num_classes):
    """Compile ``model`` (dict outputs ``outputs``) and fit it resumably; return the log rows."""
    losses = {k: losses[k] for k in outputs}
    weights = {k: weights[k] for k in outputs}
    metrics = {"logits": [_accuracy(fit)]} if "logits" in outputs else None
    model.compile(optimizer=_optimizer(model, fit, schedule), loss=losses, loss_weights=weights, metrics=metrics)
    common = dict(outputs=outputs, num_classes=num_classes, label_smoothing=fit["label_smoothing"])
    data = DefendppBatches(*train, fit["batch_size"], augment=fit["augment"], pad=fit["pad"], seed=seed, **common)
    val = DefendppBatches(*test, 512, shuffle=False, **common)
    Path(backup_dir).mkdir(parents=True, exist_ok=True)
    callbacks = [keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False),
                 keras.callbacks.CSVLogger(str(log_path), append=True)]
    # BackupAndRestore leaves model._initial_epoch set after a restore; the warm-up fits the same sub-model
    # again in the next cycle, which would then skip its epochs (as fit_model does: the backup alone decides).
    model._initial_epoch = None
    # shuffle=False: DefendppBatches shuffles itself per (seed, epoch), as fit_model's ArrayBatches.
    model.fit(data, epochs=int(epochs), validation_data=val, callbacks=callbacks, verbose=verbose, shuffle=False)
    return read_log(log_path)


def _accuracy(fit):
    if fit["label_smoothing"]:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def _curve_rows(rows):
    """Log rows with the logits metrics under the plain names `plot_training_curve` reads."""
    out = []
    for r in rows:
        row = dict(r)
        for split in ("", "val_"):
            for key in (f"{split}logits_accuracy", f"{split}accuracy"):
                if key in r:
                    row[f"{split}accuracy"] = r[key]
                    break
        out.append(row)
    return out


def train_defendpp(models, train, test, out_dir, fit, settings, *, seed=0, work_dir=None, verbose="auto"):
    """Train a `Defendpp` (joint, or the classifier alone without decoder), resumably.

    Warm-up (``settings["warmup"] == "alternate"``): ``warmup_cycles`` x (AE
    phase, classifier phase) of ``warmup_phase_epochs`` each, at the peak
    learning rate (linear warm-up during the first phase of each kind). Each
    phase is a resumable fit of its own (``work_dir/warmup/phase<j>``); the
    weights after each finished phase are kept so that a restart skips it.
    Then joint training for ``fit["epochs"]`` epochs with the same schedule
    as `fit_model` (linear warm-up, linear decay to 0), resumable through
    `BackupAndRestore` in ``work_dir/joint``.

    Returns:
        Summary dict for metadata.json (``training``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "_backup"
    missing = sorted(set(fit["no_decay_layers"]) - {layer.name for layer in models.classifier.layers})
    if missing:
        raise ValueError(f"no_decay_layers names layers the classifier does not have: {missing}.")
    num_classes = int(models.classifier.output_shape[-1])
    losses, weights = joint_losses(len(models.scales), settings["lambda"], fit["label_smoothing"])
    steps = math.ceil(len(train[0]) / int(fit["batch_size"]))
    recon_keys = [recon_key(m) for m in range(len(models.scales))]
    started = time.perf_counter()
    warmup_info = None
    if settings["warmup"] == "alternate":
        warmup_info = _alternate_warmup(models, recon_keys, losses, weights, train, test, fit, settings, steps,
                                        work_dir / "warmup", seed, verbose, num_classes)
    epochs = int(fit["epochs"])
    schedule = WarmupLinearDecay(fit["lr"], steps * epochs, int(steps * fit["warmup_epochs"]))
    log = out_dir / "training_log.csv"
    rows = _fit_phase(models.joint, ["logits", *recon_keys], losses, weights, train, test, fit, schedule, epochs,
                      log, work_dir / "joint", seed, verbose, num_classes)
    rows = _curve_rows(rows)
    plot_training_curve(rows, out_dir / "training_curve.png", title=models.joint.name)
    last = rows[-1] if rows else {}
    summary = {"epochs": epochs, "seconds_this_run": round(time.perf_counter() - started, 1),
               "train_accuracy": last.get("accuracy"), "train_loss": last.get("loss"),
               "test_accuracy_last_epoch": last.get("val_accuracy"), "test_loss": last.get("val_loss")}
    if recon_keys:
        summary["recon_loss_last_epoch"] = {k: last.get(f"{k}_loss") for k in recon_keys}
        summary["val_recon_loss_last_epoch"] = {k: last.get(f"val_{k}_loss") for k in recon_keys}
    if warmup_info is not None:
        summary["warmup"] = warmup_info
    return summary


def _alternate_warmup(models, recon_keys, losses, weights, train, test, fit, settings, steps, state_dir, seed, verbose,
                      num_classes):
    """The alternating warm-up of `train_defendpp`; returns its summary for metadata.json."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / "state.json"
    done = json.loads(state_path.read_text())["done"] if state_path.exists() else 0
    # Sub-models of the joint one (shared layers): the AE alone, the classifier alone.
    inputs = models.joint.inputs
    phase_models = {
        "autoencoder": (keras.Model(inputs, {k: models.outputs[k] for k in recon_keys}, name="defendpp_autoencoder"),
                        recon_keys),
        "classifier": (keras.Model(inputs, {"logits": models.outputs["logits"]}, name="defendpp_classifier"),
                       ["logits"]),
    }
    phases = [kind for _ in range(settings["warmup_cycles"]) for kind in ("autoencoder", "classifier")]
    n_epochs = settings["warmup_phase_epochs"]
    if done:
        models.joint.load_weights(str(state_dir / f"phase{done - 1}.weights.h5"))
    for j in range(done, len(phases)):
        model, outputs = phase_models[phases[j]]
        # Warm up the LR in the first phase of each kind, then hold it at its peak.
        warm = int(steps * fit["warmup_epochs"]) if j < 2 else 0
        schedule = WarmupLinearDecay(fit["lr"], steps * n_epochs, warm, end_factor=1.0)
        _fit_phase(model, outputs, losses, weights, train, test, fit, schedule, n_epochs,
                   state_dir / f"phase{j}_{phases[j]}_log.csv", state_dir / f"phase{j}", seed + j + 1, verbose,
                   num_classes)
        models.joint.save_weights(str(state_dir / f"phase{j}.weights.h5"))
        state_path.write_text(json.dumps({"done": j + 1}))
    return {"phases": phases, "epochs_per_phase": n_epochs,
            "logs": [read_log(state_dir / f"phase{j}_{p}_log.csv")[-1:] for j, p in enumerate(phases)]}


# ----------------------------------------------------------------- outputs
def plot_reconstructions(images, targets, recons, path, title=""):
    """Clean images, then per scale the DCT target and the reconstruction, as a PNG grid.

    Args:
        images: ``(n, H, W, C)`` clean images.
        targets, recons: Lists (one per scale) of ``(n, h_m, w_m, C)`` arrays.
        path: Output file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # I^0 is the image itself: one "clean" row, then the reconstruction (and target) per scale.
    rows = [(f"clean $I^0$\n{images.shape[1]}x{images.shape[2]}", images)]
    for m, (t, r) in enumerate(zip(targets, recons)):
        h, w = t.shape[1:3]
        if m > 0:
            rows.append((f"target $I^{m}$\n{h}x{w}", t))
        rows.append((f"recon $\\tilde{{I}}^{m}$\n{h}x{w}", r))
    n = len(images)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n + 0.9, 1.25 * len(rows)), squeeze=False)
    for i, (label, arr) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            img = np.clip(np.asarray(arr[j], dtype=np.float32), 0.0, 1.0)
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def encoder_features(classifier, taps):
    """A model mapping images to the classifier's ``taps`` (the decoder's inputs)."""
    outs = stage_outputs(classifier)
    return keras.Model(classifier.inputs[0], [outs[t] for t in taps], name="defendpp_encoder_taps")


def reconstruct(classifier, decoder, images, batch_size=256):
    """Reconstructions ``[I~^0, ...]`` of ``images`` by a (possibly reloaded) classifier and decoder.

    Args:
        classifier: The classifier (its encoder taps feed the decoder).
        decoder: The decoder model (e.g. ``load_pretrained(folder / "decoder")``);
            its input names are the taps it reads.
        images: ``(N, H, W, C)`` images in [0, 1].
        batch_size: Images per forward pass (the taps of a whole test set would
            not fit in memory).

    Returns:
        List of float32 arrays, finest scale first.
    """
    feats = encoder_features(classifier, [t.name for t in decoder.inputs])  # inputs are named after the taps
    outs = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start:start + batch_size], dtype=np.float32)
        f = feats(x, training=False)
        r = decoder(list(f) if isinstance(f, (list, tuple)) else [f], training=False)
        outs.append([keras.ops.convert_to_numpy(t).astype(np.float32) for t in (r if isinstance(r, (list, tuple))
                                                                                  else [r])])
    return [np.concatenate(parts) for parts in zip(*outs)]


# ----------------------------------------------------------------- run
def run(name, recipe, *, out_dir, base_dir, work_dir, data_dir, precision, seed, max_train, max_test, verbose, note,
        fit_overrides):
    """Run a ``"defendpp"`` recipe (called by `hardened.recipes.run_recipe`) and write its checkpoint folder.

    Args:
        name: Recipe name (recorded in metadata.json).
        recipe: The recipe dict (see the module docstring).
        out_dir: Output folder (``None``: ``runs/recipes/<name>``).
        base_dir: Must be ``None``: Defend++ trains from scratch.
        work_dir: `BackupAndRestore` state (``None``: ``out_dir/_backup``).
        data_dir: Dataset folder.
        precision: ``"auto"``, ``"float32"`` or ``"mixed_bfloat16"``.
        seed: Seed of initialisation, shuffling and augmentation.
        max_train, max_test: Use only the first images.
        verbose: Keras fit verbosity.
        note: Free text for metadata.json.
        fit_overrides: Dict of fit hyper-parameters to override (``None`` values ignored).

    Returns:
        The output folder as a `Path`.
    """
    from hardened.recipes.run import DEFAULT_ROOT

    started_from = provenance()  # before training: the code that ran, not the tree at the end
    settings, fit = check_recipe(name, recipe)
    if base_dir is not None:
        raise ValueError(f"Recipe {name!r} (defendpp) trains from scratch; it takes no base checkpoint (got "
                         f"base_dir={base_dir!r}).")
    unknown = sorted(set(fit_overrides or {}) - set(FIT_KEYS))
    if unknown:
        raise TypeError(f"Unknown training options {unknown}; accepted: {sorted(FIT_KEYS)}.")
    fit.update({k: v for k, v in (fit_overrides or {}).items() if v is not None})
    _check_fit(fit)
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / name
    policy = resolve_precision(precision)
    keras.utils.set_random_seed(int(seed))
    dataset = recipe["dataset"]
    train, test = load_split(dataset, data_dir=data_dir, max_train=max_train, max_test=max_test)
    builder, kwargs = recipe["builder"], dict(recipe["kwargs"])

    def build():
        return build_defendpp(build_model(builder, **kwargs), settings["encoder_blocks"], settings["shared_blocks"],
                              decoder=settings["decoder"])

    started = time.perf_counter()
    models = build_in_policy(build, policy)
    summary = train_defendpp(models, train, test, out_dir, fit, settings, seed=seed, work_dir=work_dir,
                             verbose=verbose)
    # Release in float32: same weights, configs without the bf16 policy.
    final = build_in_policy(build, "float32")
    final.joint.set_weights(models.joint.get_weights())
    acc = test_accuracy(final.classifier, *test)
    info = {**settings, "min_size": MIN_SIZE, "num_scales": len(final.scales),
            "scale_sizes": [list(s) for s in final.scales],
            "loss": "CE + MSE(I~0, I0) + lambda * sum_{m>=1} MSE(I~m, Im); MSE = mean over pixels and channels",
            "targets": "DCT low-pass (top-left H/2^m x W/2^m coefficients), hardened.layers.dct_lowpass_targets",
            "decoder_folder": None}
    if final.decoder is not None:
        pred = final.joint.predict(test[0], batch_size=256, verbose=0)
        recons = [pred[recon_key(m)] for m in range(len(final.scales))]
        targets = lowpass_targets(test[0], len(final.scales))
        info.update(decoder_folder=DECODER_DIR, encoder_taps=final.taps,
                    decoder_parameters=int(sum(int(np.prod(v.shape)) for v in final.decoder.trainable_weights)),
                    test_recon_mse=[float(np.mean((r - t) ** 2)) for r, t in zip(recons, targets)])
    metadata = checkpoint_metadata(
        out_dir, name, copy.deepcopy(recipe), fit=fit, builder=builder, kwargs=kwargs,
        training=training_metadata(policy, seed, max_train, len(train[0]), started, **summary),
        test_accuracy=acc, n_test=len(test[0]), dataset=dataset, note=note, started_from=started_from,
        defendpp=info,
    )
    save_pretrained(final.classifier, out_dir, metadata=metadata)
    if final.decoder is not None:
        dec_meta = {
            "model_name": f"{out_dir.name}-decoder",
            "role": "Defend++ decoder (training-time only, not part of inference): encoder taps of the classifier "
                    "in the parent folder -> reconstructions I~^0 (finest) .. I~^{M-1}",
            "classifier_folder": "..",
            "recipe": name,
            "input_taps": final.taps,
            "input_shape": [list(t.shape[1:]) for t in final.decoder.inputs],
            "output_names": [recon_key(m) for m in range(len(final.scales))],
            "output_shape": [list(o.shape[1:]) for o in final.decoder.outputs],
            "defendpp": info,
            **started_from,
        }
        save_pretrained(final.decoder, out_dir / DECODER_DIR, metadata=dec_meta)
        n = min(8, len(test[0]))
        plot_reconstructions(test[0][:n], [t[:n] for t in targets], [r[:n] for r in recons],
                             out_dir / "reconstruction.png", title=f"{name}: clean, DCT targets and reconstructions")
    print(f"{name}: test accuracy {100 * acc:.2f} % on {len(test[0])} images -> {out_dir}")
    return out_dir
