"""Run a named recipe (`hardened.recipes.presets.RECIPES`) end to end.

    hardened train fastcnn-cifar10 --out runs/fastcnn-cifar10
    hardened train fastcnn-hash-cifar10 --base runs/fastcnn-cifar10

Each run writes a checkpoint folder (config.json, model.safetensors,
metadata.json) plus training_log.csv and training_curve.png, and can be
interrupted and started again with the same arguments: it resumes from the
last finished epoch.
"""

import contextlib
import copy
import importlib
import time
from pathlib import Path

import keras

from hardened.layers import randomized_layers
from hardened.models import build_model, canonical_builder
from hardened.recipes import presets, tricks
from hardened.recipes.distributed import data_parallel as _data_parallel
from hardened.recipes.train import (
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
    whiten_conv,
)
from hardened.zoo.checkpoint import load_pretrained, save_pretrained

DEFAULT_ROOT = Path("runs") / "recipes"

#: Recipe kinds run by their own module's ``run(name, recipe, *, out_dir, base_dir, work_dir, data_dir,
#: precision, seed, max_train, max_test, verbose, note, fit_overrides) -> Path``.
KIND_RUNNERS = {
    "prune": "hardened.recipes.prune",
    "defendpp": "hardened.recipes.defendpp",
    "hrs": "hardened.recipes.hrs",
    "adversarial": "hardened.recipes.adversarial",
}


def list_recipes():
    """Names of the registered recipes, sorted."""
    return sorted(presets.RECIPES)


def get_recipe(name):
    """A deep copy of recipe ``name`` (ValueError with suggestions if unknown).

    Recipe names equal the release names (hyphenated); the old ``..._mnist`` spellings
    (``cnn7-fashion_mnist``) are accepted with a DeprecationWarning.
    """
    if name not in presets.RECIPES and str(name).replace("_", "-") in presets.RECIPES:
        import warnings

        new = str(name).replace("_", "-")
        warnings.warn(f"Recipe {name!r} is now called {new!r} (its release name); the old name will be removed.",
                      DeprecationWarning, stacklevel=2)
        name = new
    if name not in presets.RECIPES:
        import difflib

        hint = difflib.get_close_matches(str(name), list(presets.RECIPES), n=3)
        raise ValueError(f"Unknown recipe {name!r}. " + (f"Did you mean {' or '.join(map(repr, hint))}? " if hint else "")
                         + f"Known recipes: {', '.join(list_recipes())}.")
    return copy.deepcopy(presets.RECIPES[name])


def run_recipe(name, out_dir=None, *, base_dir=None, work_dir=None, data_dir=None, precision="auto", seed=0,
               max_train=None, max_test=None, verbose="auto", data_parallel=False, devices=None, compression=None, note=None,
               **fit_overrides):
    """Run recipe ``name`` and write its checkpoint folder.

    Args:
        name: A key of `presets.RECIPES`.
        out_dir: Output folder (default ``runs/recipes/<name>``).
        base_dir: For ``hash`` recipes: the base checkpoint folder (default
            ``runs/recipes/<base recipe>``).
        work_dir: `BackupAndRestore` state (default ``out_dir/_backup``).
        data_dir: Dataset folder (see `hardened.data.load_dataset`).
        precision: ``"auto"`` (mixed_bfloat16 on TensorFlow where bf16 is native), ``"float32"``
            or ``"mixed_bfloat16"``.
        seed: Seed of weight initialisation, shuffling and augmentation.
        max_train, max_test: Use only the first images (smoke tests).
        verbose: Keras fit verbosity.
        data_parallel: Train data-parallel over ``devices`` (JAX `keras.distribution.DataParallel`
            or TensorFlow `MirroredStrategy`; see `hardened.recipes.distributed`).
        devices: Devices for ``data_parallel`` (default: all local ones).
        note: Free text recorded in metadata.json (e.g. how a run was resumed).
        compression: For ``hash`` recipes: ``(cr_a, cr_b)`` instead of the recipe's
            (e.g. the choice of `search_compression`).
        **fit_overrides: Override `fit_model` hyper-parameters (``epochs``, ``lr``, ...).

    Returns:
        The output folder as a `Path`.
    """
    recipe = get_recipe(name)
    if recipe["kind"] in KIND_RUNNERS:
        if data_parallel or compression is not None:
            raise ValueError(f"data_parallel/compression apply to base and hash recipes, not {recipe['kind']!r} ones.")
        runner = importlib.import_module(KIND_RUNNERS[recipe["kind"]])
        return runner.run(name, recipe, out_dir=out_dir, base_dir=base_dir, work_dir=work_dir, data_dir=data_dir,
                          precision=precision, seed=seed, max_train=max_train, max_test=max_test, verbose=verbose,
                          note=note, fit_overrides=fit_overrides)
    started_from = provenance()  # before training: the code that ran, not the tree at the end
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / name
    fit = dict(recipe["fit"])
    check_fit_keys(fit_overrides)
    fit.update({k: v for k, v in fit_overrides.items() if v is not None})
    policy = resolve_precision(precision)
    keras.utils.set_random_seed(int(seed))
    dataset = recipe["dataset"]
    train, test = load_split(dataset, data_dir=data_dir, max_train=max_train, max_test=max_test)

    if compression is not None:
        if recipe["kind"] != "hash":
            raise ValueError(f"compression= applies to hash recipes only; {name!r} is a {recipe['kind']} recipe.")
        recipe["compression"] = [float(c) for c in compression]
    parallel = contextlib.nullcontext()
    if data_parallel:
        parallel = _data_parallel(devices)
    base = None
    if recipe["kind"] == "hash":
        base_dir = Path(base_dir) if base_dir is not None else DEFAULT_ROOT / recipe["base"]
        base = load_pretrained(base_dir)  # outside the distribution: a plain single-device model
    elif recipe["kind"] != "base":
        raise ValueError(f"Recipe {name!r} has unknown kind {recipe['kind']!r}.")
    started = time.perf_counter()
    with parallel:
        build, builder, kwargs = _builder(recipe, base, base_dir)
        model = build_in_policy(build, policy)
        base_info = None
        if base is not None:
            copied = copy_weights_by_name(base, model)
            base_info = {"folder": str(base_dir), "recipe": base.hardened_metadata.get("recipe"),
                         "weights_sha256": base.hardened_metadata.get("files", {}).get("model.safetensors"),
                         "copied_layers": copied, "test_accuracy": base.hardened_metadata.get("test_accuracy")}
        init_info = _initialise(name, recipe.get("init"), model, train[0])
        summary = fit_model(model, train, test, out_dir, seed=seed, work_dir=work_dir, verbose=verbose, **fit)
    # Release in float32: same weights, a config without the bf16 policy.
    final = float32_copy(build, model)
    acc = test_accuracy(final, *test)
    metadata = checkpoint_metadata(
        out_dir, name, recipe, fit=fit, builder=builder, kwargs=kwargs,
        training=training_metadata(policy, seed, max_train, len(train[0]), started, **summary),
        test_accuracy=acc,  # one pass; for a randomized model one draw of its randomness per batch
        n_test=len(test[0]), dataset=dataset, note=note, started_from=started_from,
        # SAP / defensive dropout / noise baselines are random at inference: cards and evaluate need to know.
        randomized=bool(randomized_layers(final)),
        base_checkpoint=base_info,
        init=init_info,
    )
    save_pretrained(final, out_dir, metadata=metadata)
    print(f"{name}: test accuracy {100 * acc:.2f} % on {len(test[0])} images -> {out_dir}")
    return out_dir


#: Recipe ``init`` steps, applied in this order (a list or one name): airbench's Dirac convs, then its whitened
#: stem (data-dependent; the weights BackupAndRestore resumes replace both on a restart).
INITS = ("dirac", "whiten_stem")


def _initialise(name, init, model, x):
    steps = [] if init is None else [init] if isinstance(init, str) else list(init)
    unknown = [s for s in steps if s not in INITS]
    if unknown:
        raise ValueError(f"Recipe {name!r} has unknown init {unknown}; known: {INITS}.")
    info = {}
    for step in sorted(steps, key=INITS.index):
        if step == "dirac":
            info["dirac_layers"] = tricks.dirac_init(model)
        else:
            info["whiten_stem_eigenvalues"] = whiten_conv(model, "stem", x)
    return info or None


def _builder(recipe, base, base_dir):
    """``(build_fn, builder_name, kwargs)`` of a recipe's model (hash: the base's architecture, hashed head)."""
    if base is None:
        builder, kwargs = recipe["builder"], dict(recipe["kwargs"])
    else:
        arch = base.hardened_metadata.get("architecture")
        if not arch:
            raise ValueError(f"{base_dir} has no 'architecture' in metadata.json; hash transfer needs a checkpoint "
                             "written by a hardened recipe.")
        builder, kwargs = canonical_builder(arch["builder"]), dict(arch["kwargs"])
        # Keep the base's own head settings, hash the last two FC layers. A single-FC base (ResNet, Inception)
        # gains seed 000's extra hashed FC (``extra_fc`` in the recipe): it and the reshaped logits start fresh.
        defense = dict(kwargs.get("defense") or {})
        defense.update(hashed=[float(c) for c in recipe["compression"]], hash_seed=int(recipe.get("hash_seed", 0)))
        if recipe.get("extra_fc"):
            defense["extra_fc"] = int(recipe["extra_fc"])
        kwargs["defense"] = defense
    return (lambda: build_model(builder, **kwargs)), builder, kwargs




def copy_weights_by_name(source, target):
    """Copy the weights of every layer of ``target`` whose name and weight shapes match a layer of ``source``.

    Returns:
        The names of the layers copied (the others keep their fresh initialisation).
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in target.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        if [tuple(w.shape) for w in src.weights] != [tuple(w.shape) for w in layer.weights]:
            continue
        layer.set_weights(src.get_weights())
        copied.append(layer.name)
    return copied
