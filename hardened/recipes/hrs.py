"""Hierarchical random switching (seed 004): bottom-up training of an `hrs_cnn`.

Seed 004's Algorithm 1 for two switching blocks (split between FC1 and FC2):

1. Block 1: each of its ``N1`` channels ``block1_path{i}`` is trained, to the
   end of its schedule, as a plain network ``input -> block1_path{i} ->
   fresh block-2 channel``. The fresh upper layers are thrown away after; only
   the block-1 channel is kept.
2. Block 1 is frozen. Each of block 2's ``N2`` channels ``block2_path{j}`` is
   trained as ``input -> switch1 (random over the frozen channels) ->
   block2_path{j}``, so that every upper channel learns to follow all lower
   ones.

The result is the `hrs_cnn` itself, random at inference, saved with
`save_pretrained` in float32.

Resumable at channel granularity: ``work_dir`` (default ``out_dir/_hrs``)
holds ``state.json`` (finished channels and their accuracies) and one
``block{b}_path{k}.npz`` per finished channel; the channel that was running
when a run stopped resumes from its last finished epoch (`fit_model`'s
`BackupAndRestore` in ``work_dir/block{b}_path{k}/``). Calling the recipe again
with the same arguments continues at the first unfinished channel.
"""

import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from hardened.models import build_model
from hardened.recipes.run import DEFAULT_ROOT
from hardened.recipes.train import (
    FIT_KEYS,
    build_in_policy,
    checkpoint_metadata,
    fit_model,
    float32_copy,
    load_split,
    provenance,
    resolve_precision,
    test_accuracy,
    training_metadata,
)
from hardened.zoo.checkpoint import named_variables, save_pretrained

STATE_NAME = "state.json"
STATE_VERSION = 1
#: Passes over the test set averaged for the randomized model's clean accuracy.
DEFAULT_EVAL_PASSES = 3


def run(name, recipe, *, out_dir, base_dir, work_dir, data_dir, precision, seed, max_train, max_test, verbose, note,
        fit_overrides):
    """Train an HRS model bottom-up and write its checkpoint folder.

    Args:
        name: Recipe name (recorded in the metadata).
        recipe: The recipe dict: ``builder`` (``"hrs_cnn"``), ``kwargs``
            (``channels``, ``input_shape``, ...), ``dataset``, ``fit`` (the
            `fit_model` options of every block-1 channel), optional
            ``fit_block2`` (changes to ``fit`` for the block-2 channels) and
            optional ``eval_passes`` (test-set passes averaged, default 3).
        out_dir: Checkpoint folder (default ``runs/recipes/<name>``).
        base_dir: Must be ``None``: HRS trains from scratch.
        work_dir: Resume state (default ``out_dir/_hrs``).
        data_dir: Dataset folder.
        precision: ``"auto"``, ``"float32"`` or ``"mixed_bfloat16"`` (training only;
            the checkpoint is float32).
        seed: Seed of initialisation, data order and the switches' training draws.
        max_train, max_test: Use only the first images (smoke tests).
        verbose: Keras fit verbosity (``0`` also silences the channel lines).
        note: Free text recorded in metadata.json.
        fit_overrides: `fit_model` options overriding both blocks' (``epochs``, ``lr``, ...).

    Returns:
        The output folder as a `Path`.
    """
    started_from = provenance()
    started = time.perf_counter()
    if base_dir is not None:
        raise ValueError(f"Recipe {name!r} (kind 'hrs') trains from scratch; base_dir does not apply "
                         f"(got {base_dir!r}).")
    if recipe.get("builder") != "hrs_cnn":
        raise ValueError(f"Recipe {name!r}: kind 'hrs' needs builder 'hrs_cnn', got {recipe.get('builder')!r}.")
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / name
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "_hrs"
    fit1, fit2 = _block_fits(recipe, fit_overrides or {}, FIT_KEYS)
    kwargs = dict(recipe["kwargs"])
    policy = resolve_precision(precision)
    seed = int(seed)
    eval_passes = int(recipe.get("eval_passes", DEFAULT_EVAL_PASSES))
    if eval_passes < 1:
        raise ValueError(f"Recipe {name!r}: eval_passes must be >= 1, got {eval_passes}.")
    dataset = recipe["dataset"]
    train, test = load_split(dataset, data_dir=data_dir, max_train=max_train, max_test=max_test)
    say = print if verbose != 0 else (lambda *a, **k: None)

    def build(**changes):
        return build_in_policy(lambda: build_model("hrs_cnn", **{**kwargs, **changes}), policy)

    keras.utils.set_random_seed(seed)
    model = build()  # the same initial weights on every restart: unfinished channels start from them
    switch1, switch2 = model.get_layer("switch1"), model.get_layer("switch2")
    n1, n2 = switch1.num_branches, switch2.num_branches

    config = {"version": STATE_VERSION, "recipe": name, "kwargs": kwargs, "fit_block1": fit1, "fit_block2": fit2,
              "seed": seed, "precision": policy, "dataset": dataset, "max_train": max_train, "max_test": max_test}
    state = _load_state(work_dir, config)

    # Block 1: each channel with fresh upper layers of its own.
    for i, branch in enumerate(switch1.branches):
        key = branch.name
        if key in state["done"]:
            _load_branch(branch, work_dir / f"{key}.npz")
            say(f"[{name}] block 1/2, channel {i + 1}/{n1}: done earlier "
                f"(path accuracy {_pct(state['done'][key]['test_accuracy'])})")
            continue
        say(f"[{name}] block 1/2, channel {i + 1}/{n1}: training {key} with a fresh block-2 channel "
            f"(epochs: {fit1['epochs']})")
        channel_seed = _channel_seed(seed, 1, i)
        keras.utils.set_random_seed(channel_seed)
        # A throw-away one-path model supplies freshly initialised upper layers
        # (the builder's own initialisation, whatever the defense spec).
        head = build(channels=(1, 1)).get_layer("switch2").branches[0]
        trainer = _replay(model, {"switch1": branch, "switch2": head}, f"hrs_block1_path{i}")
        summary = fit_model(trainer, train, test, work_dir / key, seed=channel_seed, verbose=verbose, **fit1)
        _finish_channel(state, work_dir, branch, summary, block=1, index=i)

    # Block 2: block 1 frozen and switching at random.
    for branch in switch1.branches:
        branch.trainable = False
    switch1.set_path(None)
    for j, branch in enumerate(switch2.branches):
        key = branch.name
        if key in state["done"]:
            _load_branch(branch, work_dir / f"{key}.npz")
            say(f"[{name}] block 2/2, channel {j + 1}/{n2}: done earlier "
                f"(accuracy over random block-1 paths {_pct(state['done'][key]['test_accuracy'])})")
            continue
        say(f"[{name}] block 2/2, channel {j + 1}/{n2}: training {key} over the {n1} frozen, switching block-1 "
            f"channels (epochs: {fit2['epochs']})")
        channel_seed = _channel_seed(seed, 2, j)
        keras.utils.set_random_seed(channel_seed)
        trainer = _replay(model, {"switch2": branch}, f"hrs_block2_path{j}")
        summary = fit_model(trainer, train, test, work_dir / key, seed=channel_seed, verbose=verbose, **fit2)
        _finish_channel(state, work_dir, branch, summary, block=2, index=j)

    # Release in float32 and trainable: same weights, a config without the bf16 policy or frozen layers.
    keras.utils.set_random_seed(seed)
    final = float32_copy(lambda: build_model("hrs_cnn", **kwargs), model, by_name=True)
    passes = [test_accuracy(final, *test) for _ in range(eval_passes)]
    acc = float(np.mean(passes))

    channels = [{"channel": k, **v} for k, v in sorted(state["done"].items(), key=lambda kv: _order(kv[0]))]
    _write_channel_table(channels, out_dir / "channel_accuracies.csv")
    metadata = checkpoint_metadata(
        out_dir, name, recipe, fit={"block1": fit1, "block2": fit2}, builder="hrs_cnn", kwargs=kwargs,
        training=training_metadata(
            policy, seed, max_train, len(train[0]), started,
            procedure="bottom-up (seed 004, Algorithm 1): each block-1 channel trained with fresh upper "
                      "layers; block 1 frozen; each block-2 channel trained over the randomly switching block 1",
            channels=[n1, n2],
            block1=[c for c in channels if c["block"] == 1],
            block2=[c for c in channels if c["block"] == 2],
            seconds_channels=round(sum(c.get("seconds", 0.0) or 0.0 for c in channels), 1),
        ),
        test_accuracy=acc, n_test=len(test[0]), dataset=dataset, note=note, started_from=started_from,
        randomized=True,
        test_accuracy_passes=passes,
        test_accuracy_note=f"random model: mean of {eval_passes} passes over the test set "
                           "(one random path per batch of 512)",
    )
    save_pretrained(final, out_dir, metadata=metadata)
    say(f"{name}: test accuracy {100 * acc:.2f} % (mean of {eval_passes} random passes) on {len(test[0])} images "
        f"-> {out_dir}")
    return out_dir


# ----------------------------------------------------------------------------- helpers
def _block_fits(recipe, fit_overrides, fit_keys):
    """``(fit_block1, fit_block2)``: the recipe's ``fit``, block 2's changes, then the overrides."""
    overrides = {k: v for k, v in fit_overrides.items() if v is not None}
    for label, options in (("fit", recipe.get("fit", {})), ("fit_block2", recipe.get("fit_block2", {})),
                           ("training options", overrides)):
        unknown = set(options) - set(fit_keys)
        if unknown:
            raise TypeError(f"Unknown {label} keys {sorted(unknown)}; accepted: {sorted(fit_keys)}.")
    if "epochs" not in recipe.get("fit", {}) and "epochs" not in overrides:
        raise ValueError("An hrs recipe's fit needs 'epochs' (per block-1 channel).")
    fit1 = {**recipe["fit"], **overrides}
    fit2 = {**recipe["fit"], **recipe.get("fit_block2", {}), **overrides}
    return fit1, fit2


def _channel_seed(seed, block, index):
    """A distinct, reproducible seed per channel: different data order and fresh heads for every channel."""
    return int(np.random.SeedSequence([int(seed), int(block), int(index)]).generate_state(1)[0] % (2 ** 31))


def _replay(model, replace, name):
    """``model`` (a chain of layers, as `hrs_cnn` builds it) with some layers replaced, as a new functional model.

    Layers are shared, so training the result trains ``model``'s weights.
    """
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name="input")
    x = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = replace.get(layer.name, layer)(x)
    return keras.Model(inputs, x, name=name)


def _order(key):
    block, path = key.replace("block", "").split("_path")
    return int(block), int(path)


def _pct(value):
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def _load_state(work_dir, config):
    """The resume state in ``work_dir`` (a fresh one if none); refuses state written by another configuration."""
    path = Path(work_dir) / STATE_NAME
    if not path.exists():
        return {"config": config, "done": {}}
    state = json.loads(path.read_text())
    saved = state.get("config", {})
    # Compare through JSON: tuples and lists must compare equal.
    if json.loads(json.dumps(config)) != saved:
        diff = sorted(k for k in set(config) | set(saved) if json.loads(json.dumps(config.get(k))) != saved.get(k))
        raise ValueError(f"{path} was written by a different run configuration (differs in {diff}). Resume with "
                         f"the same recipe, seed, precision and limits, or use another work_dir (or delete it).")
    return state


def _atomic_write(path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_branch(branch, path):
    arrays = {key: keras.ops.convert_to_numpy(v) for key, v in named_variables(branch).items()}
    # np.savez appends ".npz" to names without it: write to a ".tmp.npz" and rename.
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_branch(branch, path):
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing although {path.parent / STATE_NAME} lists {branch.name} as "
                                "finished; delete that entry (or the whole work_dir) to retrain it.")
    with np.load(path) as arrays:
        variables = named_variables(branch)
        if set(arrays.files) != set(variables):
            raise ValueError(f"{path} holds {sorted(arrays.files)[:4]}..., not the weights of {branch.name}; "
                             "the work_dir belongs to another architecture.")
        for key, var in variables.items():
            var.assign(arrays[key].astype(var.dtype))


def _finish_channel(state, work_dir, branch, summary, block, index):
    """Save a trained channel's weights, then mark it done (weights first: a crash between leaves it undone)."""
    _save_branch(branch, Path(work_dir) / f"{branch.name}.npz")
    state["done"][branch.name] = {
        "block": block, "index": index, "epochs": summary["epochs"],
        "test_accuracy": summary.get("test_accuracy_last_epoch"), "train_accuracy": summary.get("train_accuracy"),
        "seconds": summary.get("seconds_this_run"),
    }
    _atomic_write(Path(work_dir) / STATE_NAME, lambda p: p.write_text(json.dumps(state, indent=1, sort_keys=True)))


def _write_channel_table(channels, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["channel,block,index,epochs,test_accuracy,train_accuracy"]
    for c in channels:
        lines.append(f"{c['channel']},{c['block']},{c['index']},{c['epochs']},{c['test_accuracy']},"
                     f"{c['train_accuracy']}")
    path.write_text("\n".join(lines) + "\n")
