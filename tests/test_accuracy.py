"""Full-test clean accuracy (`hardened accuracy`) and the card headline it feeds."""

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from hardened.cli import main
from hardened.evaluation.accuracy import RANDOM_PASSES, full_test_accuracy
from hardened.layers import GaussianNoiseInjection
from hardened.reporting import cards

FIXTURES = Path(__file__).parent / "fixtures" / "cards"


@pytest.fixture()
def fake_mnist_dir(tmp_path):
    """A data dir with a 40-image MNIST test split whose class is the brightness of the top-left pixel band."""
    rng = np.random.default_rng(0)
    y = np.arange(40) % 10
    x = rng.integers(0, 40, size=(40, 28, 28)).astype("uint8")
    x[:, 0, :10] = 0
    x[np.arange(40), 0, y] = 255  # pixel (0, y) lights up: a linear model reads the class off it
    np.savez_compressed(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    return tmp_path


def _reader(noise=None):
    """Logit k = 10 * pixel (0, k): exact on the fake data; 3 of 10 classes broken (always 0) for a known score."""
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Flatten(name="flatten")(inp)
    if noise is not None:
        h = noise(h)
    out = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inp, out)
    w = np.zeros((784, 10), "float32")
    for k in range(7):
        w[k, k] = 10.0
    model.get_layer("logits").set_weights([w, np.zeros(10, "float32")])
    return model


def test_full_test_accuracy_counts_every_test_image(fake_mnist_dir):
    res = full_test_accuracy(_reader(), dataset="mnist", data_dir=fake_mnist_dir)
    # Classes 0-6 read their pixel; 7-9 have all-zero logits and argmax 0: 28 of 40 right.
    assert res["n"] == 40 and res["n_correct"] == 28 and res["accuracy"] == pytest.approx(0.7)
    assert res["passes"] == [0.7] and not res["randomized"] and res["split"] == "test"
    low, high = res["ci95"]
    assert low < 0.7 < high
    json.dumps(res)  # JSON-ready


def test_randomized_model_is_averaged_over_passes(fake_mnist_dir):
    model = _reader(GaussianNoiseInjection(0.05, seed=3, name="noise"))
    res = full_test_accuracy(model, dataset="mnist", data_dir=fake_mnist_dir)
    assert res["randomized"] and len(res["passes"]) == RANDOM_PASSES
    assert res["accuracy"] == pytest.approx(np.mean(res["passes"]))
    again = full_test_accuracy(model, dataset="mnist", data_dir=fake_mnist_dir)
    assert again["passes"] == res["passes"]  # the seed is reset: reproducible


def test_dataset_is_required_without_metadata(fake_mnist_dir):
    with pytest.raises(ValueError, match="needs the dataset"):
        full_test_accuracy(_reader(), data_dir=fake_mnist_dir)


def test_card_headlines_the_full_test_accuracy(tmp_path):
    folder = tmp_path / "mlp-mnist"
    shutil.copytree(FIXTURES / "mlp-mnist", folder)
    acc = {"dataset": "mnist", "split": "test", "n": 10000, "n_correct": 9873, "accuracy": 0.9873,
           "ci95": [0.985, 0.9894], "passes": [0.9873], "randomized": False, "backend": "jax",
           "command": "hardened accuracy mlp-mnist --out model_cards/mlp-mnist", "commit": "0123456789abcdef"}
    (folder / cards.ACCURACY_FILE).write_text(json.dumps(acc))
    text = cards.render_card(folder, registry_entry=False)
    head = text[text.index("# mlp-mnist"):text.index("## Usage")]
    assert "**Clean accuracy: 98.73 %** on the full MNIST test set (10000 images)" in head
    assert "`hardened accuracy mlp-mnist --out model_cards/mlp-mnist`" in head
    metrics = text[text.index("metrics:"):]
    first = metrics.splitlines()[1:4]
    assert "value: 98.73" in "\n".join(first) and "full test set" in "\n".join(first)
    clean = text[text.index("## Clean accuracy"):]
    assert clean.splitlines()[2].startswith("- **98.73 %** on the full test set")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="one backend is enough for the CLI wiring")
def test_cli_writes_accuracy_json(tmp_path, fake_mnist_dir, capsys):
    from hardened.zoo.checkpoint import save_pretrained

    save_pretrained(_reader(), tmp_path / "ckpt", metadata={"dataset": "mnist"})
    assert main(["accuracy", str(tmp_path / "ckpt"), "--data-dir", str(fake_mnist_dir),
                 "--out", str(tmp_path / "card")]) == 0
    res = json.loads((tmp_path / "card" / "accuracy.json").read_text())
    assert res["accuracy"] == pytest.approx(0.7) and res["command"].startswith("hardened accuracy")
    assert "70.00 % (28/40" in capsys.readouterr().out
