"""Adversarial training (Madry et al., 2018; FGSM with random start, Wong et al., 2020).

Every training batch is replaced by adversarial examples crafted against the
current weights with our own attack code (`hardened.attacks`: input gradients
from `hardened.attacks._grad`, so it runs on every backend), then the model
takes one optimizer step on them (`Model.train_on_batch`). The attack is
run between steps rather than inside a compiled train step or a prefetching
data pipeline: both would either need backend-specific code here or craft
examples against stale weights.

Attacks (recipe ``attack``), l_inf, cross-entropy, untargeted:

``"pgd"``: ``steps`` iterations of size ``step_size`` (default ``2.5 eps /
    steps``) from a uniform random start, projected on the eps-ball; the last
    iterate is used (`hardened.attacks.PGD` with ``keep_best=False``).
``"fgsm_rs"``: one step of size ``step_size`` (default ``1.25 eps``) from a
    uniform random start (Wong et al.'s "fast is better than free").

Resumable at epoch granularity: ``work_dir`` (default ``out_dir/_adv``) holds
the weights with the optimizer state after the last finished epoch and
``state.json`` (epoch, history). Data order, augmentation and attack starts
are drawn from ``(seed, epoch, batch)``, so a resumed run repeats what an
uninterrupted one would have done.
"""

import csv
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from hardened.attacks import _grad, get_attack
from hardened.attacks.base import project, random_start, step_direction
from hardened.attacks.losses import get_loss
from hardened.models import build_model
from hardened.recipes.hrs import STATE_NAME, _atomic_write, _load_state
from hardened.recipes.run import DEFAULT_ROOT
from hardened.recipes.train import (
    FIT_DEFAULTS,
    ArrayBatches,
    WarmupLinearDecay,
    build_in_policy,
    check_fit_keys,
    checkpoint_metadata,
    float32_copy,
    load_split,
    plot_training_curve,
    provenance,
    resolve_precision,
    test_accuracy,
    training_metadata,
)
from hardened.zoo.checkpoint import save_pretrained

ATTACKS = ("pgd", "fgsm_rs")
STATE_VERSION = 1
WEIGHTS_NAME = "last_epoch.weights.h5"
#: Default monitor: PGD-20 on the first 500 test images after every epoch. It catches FGSM
#: training's "catastrophic overfitting" (PGD accuracy collapsing while FGSM accuracy rises).
DEFAULT_MONITOR = {"n": 500, "steps": 20}

def attack_settings(recipe):
    """The recipe's adversary, validated and with defaults resolved.

    Returns:
        ``{"attack", "eps", "steps", "step_size", "random_start", "norm", "loss", "eps_ramp_epochs"}``.
    """
    attack = recipe.get("attack")
    if attack not in ATTACKS:
        raise ValueError(f"An adversarial recipe needs attack in {ATTACKS}, got {attack!r}.")
    eps = recipe.get("eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < float(eps) <= 1:
        raise ValueError(f"eps must be a number in (0, 1] (l_inf, images in [0, 1]), got {eps!r}.")
    eps = float(eps)
    if attack == "fgsm_rs":
        steps = recipe.get("steps", 1)
        if steps != 1:
            raise ValueError(f"fgsm_rs takes exactly one step; got steps={steps!r} (use attack 'pgd' for more).")
        default_step = 1.25 * eps  # Wong et al. 2020: alpha = 1.25 eps
    else:
        steps = recipe.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"pgd needs steps, a positive int, got {steps!r}.")
        default_step = 2.5 * eps / steps  # Madry et al.'s rule of thumb
    step_size = recipe.get("step_size")
    step_size = default_step if step_size is None else float(step_size)
    if step_size <= 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}.")
    ramp = float(recipe.get("eps_ramp_epochs", 0.0))
    if ramp < 0:
        raise ValueError(f"eps_ramp_epochs must be >= 0, got {ramp!r}.")
    return {"attack": attack, "eps": eps, "steps": int(steps), "step_size": step_size, "random_start": True,
            "norm": "linf", "loss": "ce", "eps_ramp_epochs": ramp}


def adversarial_batch(model, x, y, *, eps, steps, step_size, rng, num_classes):
    """l_inf PGD on cross-entropy from a uniform random start; returns the last iterate.

    With ``steps=1`` and ``step_size=1.25 eps`` this is FGSM with random start.
    Same arithmetic as ``PGD(random_start=True, keep_best=False).generate``
    with the same generator, without its final evaluation pass.

    Args:
        model: The model being trained (logits).
        x: Clean images ``(N, H, W, C)`` in [0, 1].
        y: Integer labels ``(N,)``.
        eps: l_inf radius (``0``: the clean images are returned).
        steps: Gradient steps.
        step_size: Size of each signed step.
        rng: `numpy.random.Generator` of the random start.
        num_classes: Number of logits.

    Returns:
        float32 images within ``eps`` of ``x`` and in [0, 1].
    """
    x = np.asarray(x, dtype=np.float32)
    if eps <= 0:
        return x.copy()
    loss_grad = _grad.make_loss_grad(model, get_loss("ce", False))
    y_oh = np.eye(num_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    x_adv = random_start(x, eps, "linf", rng)
    for _ in range(int(steps)):
        _, grad, _ = loss_grad(x_adv, y_oh, y_oh)  # objectives take (logits, y, target)
        x_adv = project(x_adv + step_size * step_direction(grad, "linf"), x, eps, "linf")
    return x_adv


def _train_step(model, x, y):
    """One optimizer step on a (adversarial) batch; a seam for tests."""
    return model.train_on_batch(x, y, return_dict=True)


def run(name, recipe, *, out_dir, base_dir, work_dir, data_dir, precision, seed, max_train, max_test, verbose, note,
        fit_overrides):
    """Adversarially train a builder's model from scratch and write its checkpoint folder.

    Args:
        name: Recipe name (recorded in the metadata).
        recipe: ``builder``, ``kwargs``, ``dataset``, ``fit`` (`fit_model`-style
            options), the adversary (``attack``, ``eps``, ``steps``,
            ``step_size``, ``eps_ramp_epochs``: eps grows linearly from 0 over
            that many epochs) and optional ``monitor`` (``{"n", "steps"}``:
            PGD on the first n test images after each epoch; ``n=0`` skips it).
        out_dir: Checkpoint folder (default ``runs/recipes/<name>``).
        base_dir: Must be ``None`` (training starts from scratch).
        work_dir: Resume state (default ``out_dir/_adv``).
        data_dir: Dataset folder.
        precision: ``"auto"``, ``"float32"`` or ``"mixed_bfloat16"`` (training; the checkpoint is float32).
        seed: Seed of initialisation, data order, augmentation and attack starts.
        max_train, max_test: Use only the first images (smoke tests).
        verbose: Keras-style: ``"auto"`` / ``1`` a progress bar per epoch and a
            line at its end; ``2`` (``hardened train --quiet``) the line only;
            ``0`` nothing.
        note: Free text recorded in metadata.json.
        fit_overrides: Override ``fit`` options (``epochs``, ``lr``, ...).

    Returns:
        The output folder as a `Path`.
    """
    started_from = provenance()
    started = time.perf_counter()
    if base_dir is not None:
        raise ValueError(f"Recipe {name!r} (kind 'adversarial') trains from scratch; base_dir does not apply "
                         f"(got {base_dir!r}).")
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / name
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "_adv"
    adv = attack_settings(recipe)
    overrides = {k: v for k, v in (fit_overrides or {}).items() if v is not None}
    for label, options in (("fit", recipe.get("fit", {})), ("training options", overrides)):
        check_fit_keys(options, f"{label} keys")
    fit = {**FIT_DEFAULTS, **recipe.get("fit", {}), **overrides}
    if "epochs" not in fit:
        raise ValueError(f"Recipe {name!r}: fit needs 'epochs'.")
    if fit["label_smoothing"]:
        # Label smoothing flattens the loss surface the attack climbs: known to fake robustness.
        raise ValueError("Adversarial recipes do not take label_smoothing (it masks the training attack's gradients).")
    monitor = {**DEFAULT_MONITOR, **recipe.get("monitor", {})}
    builder, kwargs = recipe["builder"], dict(recipe["kwargs"])
    policy = resolve_precision(precision)
    seed = int(seed)
    dataset = recipe["dataset"]
    (x, y), test = load_split(dataset, data_dir=data_dir, max_train=max_train, max_test=max_test)
    y = np.asarray(y).astype("int64")
    quiet = verbose == 0
    show_bar = verbose in ("auto", 1)

    keras.utils.set_random_seed(seed)
    model = build_in_policy(lambda: build_model(builder, **kwargs), policy)
    num_classes = int(model.output_shape[-1])
    batches = ArrayBatches(x, y, fit["batch_size"], augment=fit["augment"], pad=fit["pad"], seed=seed)
    steps_per_epoch = len(batches)
    epochs = int(fit["epochs"])
    _compile(model, fit, steps_per_epoch)

    config = {"version": STATE_VERSION, "recipe": name, "builder": builder, "kwargs": kwargs, "fit": fit,
              "adversary": adv, "seed": seed, "precision": policy, "dataset": dataset, "max_train": max_train,
              "max_test": max_test}
    state = _load_state(work_dir, config)
    state.setdefault("epoch", 0)
    state.setdefault("history", [])
    if state["epoch"] > 0:
        model.optimizer.build(model.trainable_variables)  # its variables must exist before they are loaded
        model.load_weights(str(work_dir / WEIGHTS_NAME))
        if not quiet:
            print(f"[{name}] resuming after epoch {state['epoch']}/{epochs} from {work_dir}")
    work_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    ramp_steps = adv["eps_ramp_epochs"] * steps_per_epoch
    for epoch in range(state["epoch"], epochs):
        t0 = time.perf_counter()
        batches.epoch = epoch
        batches._order = batches._permutation()  # ArrayBatches' per-(seed, epoch) shuffle, epoch set directly
        totals = {"loss": 0.0, "accuracy": 0.0, "n": 0}
        bar = tqdm(range(steps_per_epoch), desc=f"{name} epoch {epoch + 1}/{epochs}", disable=not show_bar,
                   leave=False)
        for b in bar:
            xb, yb = batches[b]
            step = epoch * steps_per_epoch + b
            scale = min(1.0, (step + 1) / ramp_steps) if ramp_steps > 0 else 1.0
            rng = np.random.default_rng([seed, epoch, b, 7])
            x_adv = adversarial_batch(model, xb, yb, eps=adv["eps"] * scale, steps=adv["steps"],
                                      step_size=adv["step_size"] * scale, rng=rng, num_classes=num_classes)
            logs = _train_step(model, x_adv, yb)
            totals["loss"] += float(logs["loss"]) * len(yb)
            totals["accuracy"] += float(logs["accuracy"]) * len(yb)
            totals["n"] += len(yb)
            bar.set_postfix(adv_loss=f"{totals['loss'] / totals['n']:.3f}",
                            adv_acc=f"{totals['accuracy'] / totals['n']:.3f}", refresh=False)
        row = {"epoch": epoch, "loss": totals["loss"] / max(totals["n"], 1),
               "accuracy": totals["accuracy"] / max(totals["n"], 1), "eps": adv["eps"] * scale,
               "val_accuracy": test_accuracy(model, *test)}
        robust = _monitor(model, test, adv["eps"], monitor, seed)
        if robust:
            row["val_adv_accuracy"] = robust["accuracy"]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        # Weights (with optimizer state) first, then the state that points at them.
        tmp = work_dir / ("tmp_" + WEIGHTS_NAME)
        model.save_weights(str(tmp))
        os.replace(tmp, work_dir / WEIGHTS_NAME)
        state["epoch"] = epoch + 1
        state["history"].append(row)
        _atomic_write(work_dir / STATE_NAME, lambda p: p.write_text(_json(state)))
        _write_log(state["history"], out_dir / "training_log.csv")
        if not quiet:
            extra = f", PGD acc {100 * row['val_adv_accuracy']:.1f} %" if "val_adv_accuracy" in row else ""
            print(f"[{name}] epoch {epoch + 1}/{epochs}: adversarial train acc {100 * row['accuracy']:.1f} %, "
                  f"clean test acc {100 * row['val_accuracy']:.2f} %{extra} ({row['seconds']} s)")
    plot_training_curve(state["history"], out_dir / "training_curve.png", title=name)

    # Release in float32: same weights, a config without the bf16 policy.
    final = float32_copy(lambda: build_model(builder, **kwargs), model, by_name=True)
    acc = test_accuracy(final, *test)
    robust = _monitor(final, test, adv["eps"], monitor, seed)
    last = state["history"][-1] if state["history"] else {}
    metadata = checkpoint_metadata(
        out_dir, name, recipe, fit=fit, builder=builder, kwargs=kwargs,
        training=training_metadata(
            policy, seed, max_train, len(x), started, epochs=epochs, history=state["history"],
            train_accuracy_adversarial=last.get("accuracy"),
            seconds_epochs=round(sum(r.get("seconds", 0.0) for r in state["history"]), 1),
        ),
        test_accuracy=acc, n_test=len(test[0]), dataset=dataset, note=note, started_from=started_from,
        adversarial_training={
            **adv,
            "reference": ("Madry et al. 2018 (PGD adversarial training)" if adv["attack"] == "pgd" else
                          "Wong et al. 2020 (FGSM with random start, step 1.25 eps)"),
            "fraction_adversarial": 1.0,
            "crafted_against": "the current weights, before every optimizer step, in training precision "
                               f"{policy}, inference mode (training=False)",
        },
        # A training-time check only; the card's evaluation suite is the robustness result.
        monitor_pgd=robust or None,
    )
    save_pretrained(final, out_dir, metadata=metadata)
    if not quiet:
        print(f"{name}: test accuracy {100 * acc:.2f} % on {len(test[0])} images -> {out_dir}")
    return out_dir


def _compile(model, fit, steps_per_epoch):
    """Compile as `fit_model` does: warm-up + linear decay, decoupled weight decay off biases and norms."""
    for key in ("bn_bias_lr_scale", "lookahead"):
        if fit[key] != FIT_DEFAULTS[key]:
            raise ValueError(f"Adversarial recipes do not take fit {key!r} (train_on_batch, no fit callbacks).")
    schedule = WarmupLinearDecay(fit["lr"], steps_per_epoch * int(fit["epochs"]),
                                 int(steps_per_epoch * fit["warmup_epochs"]), start_factor=fit["lr_start_factor"],
                                 end_factor=fit["lr_end_factor"])
    wd = fit["weight_decay"]
    if fit["optimizer"] == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=fit["momentum"], nesterov=fit["nesterov"],
                                   weight_decay=wd or None)
    elif fit["optimizer"] == "adam":
        opt = keras.optimizers.AdamW(schedule, weight_decay=wd or 0.0)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {fit['optimizer']!r}.")
    if wd:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        if fit["no_decay_layers"]:
            missing = sorted(set(fit["no_decay_layers"]) - {layer.name for layer in model.layers})
            if missing:
                raise ValueError(f"no_decay_layers names layers the model does not have: {missing}.")
            opt.exclude_from_weight_decay(
                var_list=[v for n in fit["no_decay_layers"] for v in model.get_layer(n).trainable_weights])
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def _monitor(model, test, eps, monitor, seed):
    """``{"accuracy", "n", "attack"}`` of PGD on the first ``monitor["n"]`` test images (``{}`` when n is 0)."""
    n = min(int(monitor.get("n", 0)), len(test[0]))
    if n <= 0:
        return {}
    steps = int(monitor.get("steps", 20))
    params = {"eps": eps, "steps": steps, "step_size": 2.5 * eps / steps, "loss": "ce", "random_start": True,
              "seed": int(seed)}
    xt, yt = test[0][:n], np.asarray(test[1][:n]).astype("int64")
    x_adv = get_attack("pgd", **params).generate(model, xt, yt, batch_size=256)
    return {"accuracy": test_accuracy(model, x_adv, yt), "n": n, "attack": {"name": "pgd", **params}}


def _json(obj):
    return json.dumps(obj, indent=1, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _write_log(history, path):
    keys = ["epoch", "loss", "accuracy", "eps", "val_accuracy", "val_adv_accuracy", "seconds"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in keys})

