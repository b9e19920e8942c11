"""Turn a recipe's output into a Hub-ready release folder ``model_cards/<name>/``.

    python -m hardened.recipes.release checkpoint runs/recipes/cnn7-hash-mnist cnn7-hash-mnist
    python -m hardened.recipes.release view cnn7-hash-gi3-mnist --base cnn7-hash-mnist --transform gi3 --eps 0.2
    python -m hardened.recipes.release view cwcnn-sap-mnist --base cwcnn-mnist --transform sap --eps 1.0

(``--eps`` is the transform's strength: GI's epsilon, logits augmentation's
tau, SAP's ratio of draws to activations.) A randomized model's probe is
recorded with its randomness switched off (`probe_logits`).

A release is then registered (``hardened/zoo/registry.py``: the printed entry),
evaluated with ``hardened evaluate NAME --suite full ... --out model_cards/NAME``
and its card written with ``hardened cards model_cards/NAME``:
every number of the card comes from that evaluation.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from hardened.layers.stochastic import randomized_layers
from hardened.zoo.checkpoint import (
    CONFIG_NAME,
    METADATA_NAME,
    WEIGHTS_NAME,
    load_pretrained,
    sha256_file,
    verify_checkpoint,
)
from hardened.zoo.hub import VIEW_NAME, from_pretrained, model_cards_dir

EXTRA_FILES = ("training_curve.png", "training_log.csv", "prune_curve.png", "reconstruction.png",
               "channel_accuracies.csv")
PROBE_NAME = "probe.json"
PROBE_IMAGES = 8


def probe_images(input_shape, n=PROBE_IMAGES, seed=0):
    """Deterministic images in [0, 1] (numpy's PCG64, the same on every platform) for prediction checks."""
    import numpy as np

    return np.random.default_rng(seed).random((n, *input_shape), dtype=np.float64).astype("float32")


def probe_logits(model, x):
    """``model``'s logits on ``x`` (float64 numpy) with its inference-time randomness switched off.

    A randomized release (HRS, defensive dropout, noise injection, SAP) is
    probed in its deterministic "fixed randomness" setting (`set_randomness`:
    noise and dropout removed, SAP the identity, each HRS switch on path 0),
    so its probe is reproducible on every backend. The layers' switches are
    restored afterwards. `write_probe` and ``tests/test_released.py`` both
    call this function.
    """
    import numpy as np

    layers = randomized_layers(model)
    saved = [layer.randomness for layer in layers]
    try:
        for layer in layers:
            layer.randomness = False
        if layers:
            model.make_predict_function(force=True)  # a function traced with randomness on would keep it
        return np.asarray(model.predict(x, verbose=0), dtype="float64")
    finally:
        for layer, value in zip(layers, saved):
            layer.randomness = value
        if layers:
            model.make_predict_function(force=True)


def write_probe(folder, model):
    """Record ``model``'s logits on `probe_images` in ``folder/probe.json``.

    The test suite reloads every release on each backend and compares its
    logits with these, so "same predictions on TensorFlow, JAX and torch" is
    checked against the numbers of the backend that made the release. The
    logits are `probe_logits`' (randomness off); ``randomized_layers`` counts
    the layers switched off for it (0 for a deterministic model).
    """
    import keras
    import numpy as np

    shape = tuple(int(d) for d in model.input_shape[1:])
    x = probe_images(shape)
    logits = probe_logits(model, x)
    probe = {"seed": 0, "n": int(len(x)), "input_shape": list(shape), "backend": keras.backend.backend(),
             "logits": np.round(logits, 6).tolist(), "argmax": np.argmax(logits, axis=-1).tolist()}
    n_random = len(randomized_layers(model))
    if n_random:
        probe.update(randomness="off", randomized_layers=n_random)
    (Path(folder) / PROBE_NAME).write_text(json.dumps(probe) + "\n")
    return probe


def _root(root):
    return Path(root) if root is not None else model_cards_dir()


def release_checkpoint(run_dir, name, root=None):
    """Copy a recipe's checkpoint (verified) and its training curve into ``root/name``.

    Returns:
        ``(folder, registry_fields)``: the folder and the ``sha256`` /
        ``config_sha256`` to record in the registry entry.
    """
    run_dir = Path(run_dir)
    verify_checkpoint(run_dir)
    folder = _root(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    for fname in (CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME, *EXTRA_FILES):
        if (run_dir / fname).exists():
            shutil.copy2(run_dir / fname, folder / fname)
    if (run_dir / "decoder").is_dir():  # Defend++: the decoder ships beside the classifier, for inspection
        shutil.copytree(run_dir / "decoder", folder / "decoder", dirs_exist_ok=True)
    verify_checkpoint(folder)
    write_probe(folder, load_pretrained(folder))
    return folder, {"sha256": sha256_file(folder / WEIGHTS_NAME), "config_sha256": sha256_file(folder / CONFIG_NAME)}


def release_view(name, base, transform, eps, seed=0, root=None, **extra):
    """Write ``root/name/view.json`` describing a weight-free view of checkpoint ``base``."""
    folder = _root(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    view = {"base": base, "transform": transform, "eps": float(eps), "seed": int(seed), **extra}
    (folder / VIEW_NAME).write_text(json.dumps(view, indent=2) + "\n")
    write_probe(folder, from_pretrained(folder))
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hardened.recipes.release", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ck = sub.add_parser("checkpoint", help="copy a recipe output into model_cards/NAME")
    ck.add_argument("run_dir")
    ck.add_argument("name")
    ck.add_argument("--root", default=None)
    vw = sub.add_parser("view", help="write model_cards/NAME/view.json")
    vw.add_argument("name")
    vw.add_argument("--base", required=True)
    vw.add_argument("--transform", required=True,
                    help="gi1, gi2, gi3, logits_augmentation, sap, bit_depth, median or weight_quant")
    vw.add_argument("--eps", type=float, required=True,
                    help="strength: GI epsilon, logits augmentation tau, SAP ratio of draws to activations, "
                         "bits (bit_depth, weight_quant) or window side (median)")
    vw.add_argument("--seed", type=int, default=0)
    vw.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    if args.what == "checkpoint":
        folder, fields = release_checkpoint(args.run_dir, args.name, args.root)
        print(f"wrote {folder}\nregistry fields: {json.dumps(fields, indent=2)}")
    else:
        folder = release_view(args.name, args.base, args.transform, args.eps, args.seed, args.root)
        print(f"wrote {folder / VIEW_NAME}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
