"""Clean accuracy on the whole test split: the number a card headlines.

An attack suite runs on the first ``n`` test images, so its clean accuracy
is a sample with a wide interval (87.0 % on 200 images for a model that
scores 83.7 % on all 10,000). `full_test_accuracy` measures the whole split
through the same pipeline for every checkpoint and every view (a view
changes predictions); a randomized model is measured over several passes
with its randomness on, from a fixed seed, and the mean is reported.
"""

import numpy as np

from hardened.data import load_dataset
from hardened.evaluation import metrics
from hardened.evaluation.evaluate import _checkpoint_info, _metadata_dataset, _randomness_resetter, package_versions
from hardened.layers import randomized_layers

#: Test-set passes averaged for a randomized model (as the HRS recipe's ``eval_passes``).
RANDOM_PASSES = 3

#: File name of the result in a card folder.
ACCURACY_NAME = "accuracy.json"


def full_test_accuracy(model, dataset=None, passes=None, batch_size=256, seed=0, data_dir=None):
    """Accuracy of ``model`` on every image of the test split.

    Args:
        model: A `keras.Model` returning logits (a zoo model carries its
            dataset in ``hardened_metadata``).
        dataset: Dataset name; default: from the model's metadata.
        passes: Passes over the test set, averaged; default 1 for a
            deterministic model and `RANDOM_PASSES` for a randomized one.
        batch_size: Images per forward pass.
        seed: Seed of the randomized layers (reset before the first pass).
        data_dir: Where `hardened.data.load_dataset` looks first.

    Returns:
        A JSON-ready dict: ``accuracy`` (mean over passes), ``n``,
        ``n_correct`` (first pass), ``ci95`` (Wilson, first pass),
        ``passes`` (per-pass accuracies), ``randomized``, ``dataset``,
        ``backend``, ``seed``, ``checkpoint`` and ``versions``.

    Raises:
        ValueError: no dataset given and none in the model's metadata.
    """
    import keras

    metadata = getattr(model, "hardened_metadata", None) or {}
    dataset = dataset or _metadata_dataset(metadata)
    if not dataset:
        raise ValueError("full_test_accuracy needs the dataset: pass dataset='mnist' / 'fashion_mnist' / 'cifar10' "
                         "(the model carries no hardened metadata naming it).")
    x, y = load_dataset(dataset, data_dir=data_dir, split="test")
    randomized = bool(randomized_layers(model))
    passes = (RANDOM_PASSES if randomized else 1) if passes is None else int(passes)
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}.")
    _randomness_resetter(model, int(seed))()
    correct = [int(np.sum(metrics.predict_labels(model, x, batch_size) == y)) for _ in range(passes)]
    accs = [k / len(y) for k in correct]
    low, high = metrics.wilson_interval(correct[0], len(y))
    return {"dataset": dataset, "split": "test", "n": int(len(y)), "n_correct": correct[0],
            "accuracy": float(np.mean(accs)), "ci95": [low, high], "passes": accs, "randomized": randomized,
            "backend": keras.backend.backend(), "seed": int(seed), "batch_size": int(batch_size),
            "model_name": getattr(model, "name", None), "checkpoint": _checkpoint_info(metadata),
            "versions": package_versions()}
