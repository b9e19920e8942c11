"""Seed 002's defense: iterative magnitude pruning, then logits augmentation as a view.

    hardened train cwcnn-mnist                      # the unpruned base (M0)
    hardened train cwcnn-prune-mnist                # M1: 20 rounds of prune + retrain

Procedure (seed 002, Sec. III-A): start from the trained base checkpoint,
rebuild the same architecture with `PrunableConv2D` / `PrunableDense` layers
(``defense={"prune": True}``), copy the weights, then ``rounds`` times prune
``dense_fraction`` of the remaining FC weights and ``conv_fraction`` of the
remaining conv weights by magnitude and retrain for a short while. Level two
(M2) is ``w <- tau * w`` on the last FC layer: not a second checkpoint but a
registry view (transform ``"logits_augmentation"``, ``eps = tau``) of the
pruned one; the recipe records ``tau`` and the view's clean accuracy in
metadata.json.

The run is resumable per round: after every round the weights (masks
included) and the per-round table are saved under ``work_dir`` (default
``out_dir/_rounds``); a restart with the same arguments continues after the
last finished round. Each round's fit has its own `BackupAndRestore` folder
(``_rounds/round_XX/_backup``), so a finished round's backup can never make a
later round skip its training, and an interrupted round resumes mid-fit
(the prunable layers save their masks in Keras' weight files too). Round
states are written with the checkpoint's variable keys (safetensors).
"""

import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from hardened.layers.gi import logits_augmentation
from hardened.layers.pruning import iterative_pruning, sparsity_report
from hardened.models import build_model, canonical_builder
from hardened.recipes.train import (
    FIT_KEYS,
    build_in_policy,
    check_fit_keys,
    checkpoint_metadata,
    fit_model,
    float32_copy,
    load_split,
    provenance,
    resolve_precision,
    test_accuracy,
    training_metadata,
)
from hardened.zoo.checkpoint import load_pretrained, named_variables, save_pretrained

DEFAULT_ROOT = Path("runs") / "recipes"
STATE_NAME = "state.json"
CURVE_NAME = "prune_curve.png"

#: Recipe keys of a prune recipe and their defaults (seed 002's schedule).
PRUNE_DEFAULTS = {"rounds": 20, "dense_fraction": 0.1, "conv_fraction": 0.05}
# What a saved round state must agree on with the current call to be resumed.
_RESUME_KEYS = ("base_weights_sha256", "dense_fraction", "conv_fraction", "seed", "n_train", "n_eval")


def run(name, recipe, *, out_dir, base_dir, work_dir, data_dir, precision, seed, max_train, max_test, verbose, note,
        fit_overrides):
    """Run prune recipe ``name`` (dispatched by `hardened.recipes.run.run_recipe`).

    Args:
        name: The recipe's name (recorded in metadata.json).
        recipe: The recipe dict: ``base`` (base recipe name), ``dataset``,
            ``fit`` (per-round `fit_model` settings; ``epochs`` is per round),
            ``rounds``, ``dense_fraction``, ``conv_fraction``, ``tau``.
        out_dir: Output checkpoint folder (default ``runs/recipes/<name>``).
        base_dir: The base checkpoint folder (default ``runs/recipes/<base>``).
        work_dir: Round state folder (default ``out_dir/_rounds``).
        data_dir: Dataset folder (see `hardened.data.load_dataset`).
        precision: ``"auto"``, ``"float32"`` or ``"mixed_bfloat16"`` (training only;
            the release is float32).
        seed: Seed of shuffling; round ``k`` (1-based) trains with seed ``seed + k``.
        max_train, max_test: Use only the first images (smoke tests).
        verbose: Keras fit verbosity.
        note: Free text recorded in metadata.json.
        fit_overrides: Dict overriding the per-round fit (``epochs``, ``lr``, ...)
            and ``rounds``; ``None`` values are ignored.

    Returns:
        The output folder as a `Path`.
    """
    started_from = provenance()  # before training: the code that ran, not the tree at the end
    started = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / name
    rounds_dir = Path(work_dir) if work_dir is not None else out_dir / "_rounds"
    fit, schedule = _resolve_settings(name, recipe, fit_overrides or {})
    policy = resolve_precision(precision)
    keras.utils.set_random_seed(int(seed))

    base_dir = Path(base_dir) if base_dir is not None else DEFAULT_ROOT / recipe["base"]
    if not (base_dir / "config.json").exists():
        raise FileNotFoundError(f"No base checkpoint in {base_dir} (recipe {name!r} prunes the {recipe['base']!r} "
                                f"checkpoint): run `hardened train {recipe['base']}` first or pass base_dir/--base.")
    base = load_pretrained(base_dir)
    base_meta = base.hardened_metadata
    builder, kwargs = _prunable_architecture(name, recipe, base_meta, base_dir)
    dataset = recipe["dataset"]
    train, test = load_split(dataset, data_dir=data_dir, max_train=max_train, max_test=max_test)

    def build():
        return build_model(builder, **kwargs)

    model = build_in_policy(build, policy)
    copied = copy_into_prunable(base, model)
    # The per-round table is measured in float32 whatever the training precision, like the release.
    evaluator = model if policy == "float32" else build_in_policy(build, "float32")
    base_sha = (base_meta.get("files", {}).get("model.safetensors") or {}).get("sha256")
    identity = {"base_weights_sha256": base_sha, "dense_fraction": schedule["dense_fraction"],
                "conv_fraction": schedule["conv_fraction"], "seed": int(seed), "n_train": int(len(train[0])),
                "n_eval": int(len(test[0]))}

    state = _load_state(rounds_dir, identity)
    if state is None:
        base_acc = test_accuracy(base, *test)
        table = [_table_row(0, model, base_acc, seconds=0.0)]
        start_round = 0
    else:
        _load_variables(model, rounds_dir / state["weights"])
        table, start_round = state["table"], int(state["rounds_done"])
        base_acc = table[0]["test_accuracy"]
        if start_round > schedule["rounds"]:
            raise ValueError(f"{rounds_dir} holds {start_round} finished rounds, more than the {schedule['rounds']} "
                             f"asked for; use another out_dir/work_dir or delete {rounds_dir}.")
        print(f"{name}: resuming after round {start_round} of {schedule['rounds']} ({rounds_dir})")
    round_started = [time.perf_counter()]

    def retrain(m, r):
        # Seeded per round: a resumed run draws what the uninterrupted one would have.
        keras.utils.set_random_seed(int(seed) + r + 1)
        round_dir = rounds_dir / f"round_{r + 1:02d}"
        fit_model(m, train, test, round_dir, seed=int(seed) + r + 1, work_dir=round_dir / "_backup",
                  verbose=verbose, **fit)

    def on_round_end(r, density):
        evaluator.set_weights(model.get_weights())
        row = _table_row(r + 1, model, test_accuracy(evaluator, *test),
                         seconds=round(time.perf_counter() - round_started[0], 1))
        table.append(row)
        _save_state(rounds_dir, model, r + 1, table, identity)
        print(f"{name}: round {r + 1}/{schedule['rounds']}: compression {row['compression']:.2f}x, "
              f"test accuracy {100 * row['test_accuracy']:.2f} %")
        round_started[0] = time.perf_counter()

    iterative_pruning(model, retrain, rounds=schedule["rounds"], dense_fraction=schedule["dense_fraction"],
                      conv_fraction=schedule["conv_fraction"], start_round=start_round, on_round_end=on_round_end)

    # Release in float32: same weights (masks included), a config without the bf16 policy.
    final = float32_copy(build, model)
    acc = test_accuracy(final, *test)
    report = sparsity_report(final)
    la = _logits_augmentation_summary(final, test, recipe.get("tau"))
    plot_prune_curve(table, out_dir / CURVE_NAME, title=name)
    metadata = checkpoint_metadata(
        out_dir, name, recipe, fit=fit, builder=builder, kwargs=kwargs,
        training=training_metadata(policy, seed, max_train, len(train[0]), started, rounds=schedule["rounds"],
                                   epochs_per_round=fit["epochs"], resumed_after_round=start_round or None),
        test_accuracy=acc, n_test=len(test[0]), dataset=dataset, note=note, started_from=started_from,
        base_checkpoint={"folder": str(base_dir), "recipe": base_meta.get("recipe"), "weights_sha256": base_sha,
                         "copied_layers": copied, "test_accuracy": base_meta.get("test_accuracy"),
                         "test_accuracy_same_split": base_acc},
        accuracy_drop_vs_base=base_acc - acc,
        pruning={**schedule, "table": table,
                 "expected_density": {"conv": (1 - schedule["conv_fraction"]) ** schedule["rounds"],
                                      "dense": (1 - schedule["dense_fraction"]) ** schedule["rounds"]}},
        sparsity=report,
        logits_augmentation=la,
    )
    save_pretrained(final, out_dir, metadata=metadata)
    print(f"{name}: {report['compression']:.2f}x fewer non-zero weights, test accuracy {100 * acc:.2f} % "
          f"(base {100 * base_acc:.2f} %) on {len(test[0])} images -> {out_dir}")
    return out_dir


def _resolve_settings(name, recipe, overrides):
    """``(fit, schedule)``: the per-round fit and the pruning schedule, overrides applied."""
    if recipe.get("kind") != "prune":
        raise ValueError(f"Recipe {name!r} has kind {recipe.get('kind')!r}; hardened.recipes.prune runs 'prune' ones.")
    missing = [k for k in ("base", "dataset", "fit") if k not in recipe]
    if missing:
        raise ValueError(f"Prune recipe {name!r} lacks {missing}; it needs base (a base recipe name), dataset and "
                         f"fit (per-round fit_model settings).")
    check_fit_keys(overrides, f"training options for prune recipe {name!r}", extra=("rounds",))
    fit = dict(recipe["fit"])
    fit.update({k: v for k, v in overrides.items() if k in FIT_KEYS and v is not None})
    schedule = {k: recipe.get(k, v) for k, v in PRUNE_DEFAULTS.items()}
    if overrides.get("rounds") is not None:
        schedule["rounds"] = overrides["rounds"]
    if int(schedule["rounds"]) != schedule["rounds"] or int(schedule["rounds"]) < 1:
        raise ValueError(f"rounds must be a positive integer, got {schedule['rounds']!r}.")
    schedule["rounds"] = int(schedule["rounds"])
    for key in ("dense_fraction", "conv_fraction"):
        if not 0 <= float(schedule[key]) < 1:
            raise ValueError(f"Prune recipe {name!r}: {key} must be in [0, 1), got {schedule[key]!r}.")
        schedule[key] = float(schedule[key])
    tau = recipe.get("tau")
    if tau is not None and not float(tau) >= 1:
        raise ValueError(f"Prune recipe {name!r}: tau (logits augmentation w <- tau*w) must be >= 1, got {tau!r}.")
    return fit, schedule


def _prunable_architecture(name, recipe, base_meta, base_dir):
    """``(builder, kwargs)`` of the base's architecture with prunable conv and FC layers."""
    arch = base_meta.get("architecture")
    if not arch:
        raise ValueError(f"{base_dir} has no 'architecture' in metadata.json; pruning rebuilds the base's network "
                         f"and needs a checkpoint written by a hardened recipe.")
    if base_meta.get("dataset") not in (None, recipe["dataset"]):
        raise ValueError(f"Recipe {name!r} is for {recipe['dataset']!r} but the base checkpoint {base_dir} was "
                         f"trained on {base_meta['dataset']!r}.")
    builder, kwargs = canonical_builder(arch["builder"]), dict(arch["kwargs"])
    if canonical_builder(recipe.get("builder")) not in (None, builder):
        raise ValueError(f"Recipe {name!r} names builder {recipe['builder']!r} but the base checkpoint {base_dir} is "
                         f"a {builder!r}.")
    defense = dict(kwargs.get("defense") or {})
    if defense.get("hashed") or defense.get("conv_noise"):
        raise ValueError(f"The base checkpoint {base_dir} has a hashed or noisy defense ({defense}); pruning starts "
                         f"from a plain network.")
    # One switch makes the head's FC layers PrunableDense and the ConvFactory's convs PrunableConv2D.
    defense["prune"] = True
    kwargs["defense"] = defense
    return builder, kwargs


def copy_into_prunable(source, target):
    """Copy ``source``'s weights into ``target``, whose prunable layers have an extra mask.

    Layers are matched by name. A prunable target layer takes kernel and bias
    from a plain source layer (its mask stays all ones) or every weight from a
    prunable one; other layers need identical weight shapes.

    Returns:
        Names of the layers copied.

    Raises:
        ValueError: A target layer with weights has no counterpart of matching
            shapes (the base is not the same architecture).
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied, unmatched = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        src = by_name.get(layer.name)
        src_weights = src.get_weights() if src is not None else []
        shapes = [tuple(w.shape) for w in layer.weights]
        if [w.shape for w in src_weights] == shapes:
            layer.set_weights(src_weights)
        elif getattr(layer, "is_prunable", False) and [w.shape for w in src_weights] == shapes[:-1]:
            # Plain kernel (+ bias) into a prunable layer: every weight present, none pruned yet.
            layer.set_weights([*src_weights, np.ones(shapes[-1], "float32")])
        else:
            unmatched.append(layer.name)
            continue
        copied.append(layer.name)
    if unmatched:
        raise ValueError(f"Layers {unmatched} of the prunable model have no weights of matching shapes in "
                         f"'{source.name}'; the base checkpoint must be the same architecture.")
    return copied


def _table_row(round_index, model, accuracy, seconds):
    """One row of the per-round table: density per layer, non-zero weights, compression, accuracy."""
    report = sparsity_report(model)
    density = {k: v["nonzero"] / v["total"] for k, v in report["layers"].items()}
    return {"round": int(round_index), "density": density, "nonzero": report["nonzero"], "total": report["total"],
            "compression": report["compression"], "test_accuracy": float(accuracy), "seconds": seconds}


def _load_state(rounds_dir, identity):
    """The saved round state in ``rounds_dir`` (``None`` if none), checked against this run's settings."""
    path = Path(rounds_dir) / STATE_NAME
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    saved = state.get("identity", {})
    differ = {k: (saved.get(k), identity[k]) for k in _RESUME_KEYS if saved.get(k) != identity[k]}
    if differ:
        raise ValueError(f"{rounds_dir} holds the rounds of a different run (saved vs now: {differ}); resume with the "
                         f"same base, data and schedule, or delete {rounds_dir} to start over.")
    if not (Path(rounds_dir) / state["weights"]).exists():
        raise FileNotFoundError(f"{path} names {state['weights']}, which is missing; delete {rounds_dir} to "
                                f"start over.")
    return state


def _save_state(rounds_dir, model, rounds_done, table, identity):
    """Write the weights after round ``rounds_done`` and the table, atomically; drop older round state."""
    rounds_dir = Path(rounds_dir)
    rounds_dir.mkdir(parents=True, exist_ok=True)
    weights = f"round_{rounds_done:02d}.safetensors"
    partial = rounds_dir / f"round_{rounds_done:02d}.partial"
    _save_variables(model, partial)
    os.replace(partial, rounds_dir / weights)
    state = {"rounds_done": rounds_done, "weights": weights, "table": table, "identity": identity}
    tmp = rounds_dir / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, rounds_dir / STATE_NAME)  # the round counts as done from here on
    for old in rounds_dir.glob("round_*.safetensors"):
        if old.name != weights:
            old.unlink()
    # The finished round's BackupAndRestore state is no longer needed (its log stays).
    shutil.rmtree(rounds_dir / f"round_{rounds_done:02d}" / "_backup", ignore_errors=True)


def _save_variables(model, path):
    """Every variable of ``model`` (masks included) under its checkpoint key, as safetensors."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(keras.ops.convert_to_numpy(v)) for k, v in named_variables(model).items()}
    save_file(tensors, str(path))


def _load_variables(model, path):
    """Assign the variables written by `_save_variables` (same architecture) back to ``model``."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    variables = named_variables(model)
    if set(tensors) != set(variables):
        raise ValueError(f"{path} does not match the model: missing {sorted(set(variables) - set(tensors))[:5]}, "
                         f"unexpected {sorted(set(tensors) - set(variables))[:5]}; delete {Path(path).parent} to "
                         f"start over.")
    for key, var in variables.items():
        var.assign(tensors[key])


def _logits_augmentation_summary(model, test, tau):
    """Clean accuracy of the level-two view (w <- tau*w on the last layer) and its registry spec."""
    if tau is None:
        return None
    view = logits_augmentation(model, float(tau))
    logits = model.predict(test[0], batch_size=512, verbose=0)
    la_logits = view.predict(test[0], batch_size=512, verbose=0)
    agree = float(np.mean(np.argmax(logits, -1) == np.argmax(la_logits, -1)))
    return {"tau": float(tau), "layer": "logits", "test_accuracy": test_accuracy(view, *test),
            "argmax_agreement": agree,
            "view": {"transform": "logits_augmentation", "eps": float(tau)},
            "note": "only the kernel is scaled (the bias is not), so the argmax can change where the bias matters"}


def plot_prune_curve(table, path, title=""):
    """Test accuracy, compression and per-layer density against the pruning round, as a PNG."""
    if not table:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [row["round"] for row in table]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(12, 3.4))
    ax1.plot(rounds, [100 * row["test_accuracy"] for row in table], marker="o", ms=3)
    ax1.set(xlabel="round", ylabel="test accuracy (%)", title="accuracy")
    ax2.plot(rounds, [row["compression"] for row in table], marker="o", ms=3, color="C1")
    ax2.set(xlabel="round", ylabel="total / non-zero weights", title="compression (x)")
    for layer in table[0]["density"]:
        ax3.plot(rounds, [row["density"].get(layer, math.nan) for row in table], label=layer)
    ax3.set(xlabel="round", ylabel="non-zero fraction", title="density per layer", ylim=(0, 1.02))
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
