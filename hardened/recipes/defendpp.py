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
from pathlib import Path

import keras
import numpy as np

from hardened.layers.defendpp import dct_lowpass_targets
from hardened.models import build_model, get_builder
from hardened.models.defendpp import (  # noqa: F401  (re-exported: the recipe's API)
    MIN_SIZE,
    Defendpp,
    build_defendpp,
    encoder_features,
    recon_key,
    reconstruct,
    scale_sizes,
)
from hardened.recipes.run import DEFAULT_ROOT
from hardened.recipes.train import (
    AUGMENTS,
    FIT_DEFAULTS,
    FIT_KEYS,
    ArrayBatches,
    WarmupLinearDecay,
    build_in_policy,
    check_fit_keys,
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

#: Settings of a recipe's ``"defendpp"`` block and their defaults (paper values).
DEFAULTS = {"decoder": True, "lambda": 0.01, "encoder_blocks": 4, "shared_blocks": 4, "warmup": None,
            "warmup_cycles": 2, "warmup_phase_epochs": 1}
WARMUPS = (None, "alternate")
DECODER_DIR = "decoder"



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
    if fit["augment"] not in AUGMENTS:
        raise ValueError(f"fit 'augment' must be one of {AUGMENTS}, got {fit['augment']!r}.")
    for key in ("lr_start_factor", "lr_end_factor", "bn_bias_lr_scale", "lookahead"):
        if fit[key] != FIT_DEFAULTS[key]:  # its own joint training loop has none of these
            raise ValueError(f"Defend++ recipes do not take fit {key!r}.")


# ----------------------------------------------------------------- targets
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
def lowpass_targets(images, num_scales, min_size=MIN_SIZE):
    """`hardened.layers.dct_lowpass_targets` computed in NumPy, per batch of the data pipeline.

    Per batch keeps the targets right for augmented images and costs no memory for the whole dataset.

    Returns:
        List of float32 arrays ``[I^0, I^1, ...]``, ``I^m`` of shape ``(N, H/2^m, W/2^m, C)``.
    """
    return [np.ascontiguousarray(t, dtype=np.float32)
            for t in dct_lowpass_targets(images, num_scales, min_size, xp=np)]


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
    started_from = provenance()  # before training: the code that ran, not the tree at the end
    settings, fit = check_recipe(name, recipe)
    if base_dir is not None:
        raise ValueError(f"Recipe {name!r} (defendpp) trains from scratch; it takes no base checkpoint (got "
                         f"base_dir={base_dir!r}).")
    check_fit_keys(fit_overrides or {})
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
