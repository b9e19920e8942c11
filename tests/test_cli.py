"""The ``hardened`` command line: evaluate a checkpoint folder, stubs, clear errors."""

import json

import numpy as np
import pytest

import hardened
from hardened.cli import build_parser, main, resolve_model
from hardened.evaluation import toy


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A briefly trained toy model saved as a checkpoint folder, plus test data as .npz."""
    root = tmp_path_factory.mktemp("cli")
    x, y = toy.synthetic_images(600, seed=0)
    model = toy.train_toy(toy.tiny_classifier(name="toy_cli"), x, y, epochs=3, batch_size=100,
                          learning_rate=0.01)
    ckpt = hardened.save_pretrained(model, root / "toy-ckpt", metadata={"recipe": "unit-test"})
    xt, yt = toy.synthetic_images(60, seed=1)
    np.savez(root / "test.npz", x=xt, y=yt)
    return ckpt, root / "test.npz", root


def test_evaluate_writes_json_markdown_and_plot(checkpoint, capsys):
    ckpt, data, root = checkpoint
    out = root / "eval"
    code = main(["evaluate", str(ckpt), "--suite", "hash-gi", "--n", "30", "--out", str(out), "--seed", "1",
                 "--batch-size", "32", "--data", str(data), "--only", "FGSM,BIM", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 30 and results["seed"] == 1 and results["batch_size"] == 32
    assert results["model_name"] == "toy_cli" and results["checkpoint"]["weights_sha256"]
    assert [a["name"] for a in results["attacks"]] == ["FGSM", "BIM"]
    assert "| BIM |" in (out / "results.md").read_text()
    assert (out / "success_vs_eps.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "clean accuracy" in printed and "gradient masking" in printed


def test_train_without_recipe_lists_recipes_with_usage_exit_code(capsys):
    assert main(["train"]) == 2
    out = capsys.readouterr().out
    assert "fastcnn-cifar10" in out and "cnn7-hash-mnist" in out
    assert main(["train", "--list"]) == 0


def test_train_unknown_recipe_suggests(capsys):
    assert main(["train", "cnn7-mnst"]) == 1
    assert "cnn7-mnist" in capsys.readouterr().err


def test_resolve_model_errors(tmp_path, checkpoint):
    ckpt, data, _ = checkpoint
    with pytest.raises(ValueError, match="Unknown model 'not-a-zoo-model'.*hardened.list_models"):
        resolve_model("not-a-zoo-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="is a file"):
        resolve_model(str(data))
    assert resolve_model(str(ckpt)).name == "toy_cli"


def test_evaluate_errors_are_reported_not_raised(checkpoint, capsys, tmp_path):
    ckpt, data, _ = checkpoint
    assert main(["evaluate", "not-a-zoo-model", "--out", str(tmp_path)]) == 1
    assert "Unknown model 'not-a-zoo-model'" in capsys.readouterr().err
    # No --data and no dataset in the metadata: evaluate() explains what to pass.
    assert main(["evaluate", str(ckpt), "--out", str(tmp_path), "--no-progress"]) == 1
    assert "names no dataset" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 8, 8, 1), np.float32))
    assert main(["evaluate", str(ckpt), "--data", str(bad), "--out", str(tmp_path), "--no-progress"]) == 1
    assert "must hold arrays 'x' and 'y'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "dir", "--suite", "strongest"], "invalid choice"),
    (["evaluate", "dir", "--n", "0"], "must be >= 1"),
    (["evaluate", "dir", "--batch-size", "many"], "expected an integer"),
    (["evaluate"], "MODEL_OR_DIR"),
    ([], "COMMAND"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_parser_exposes_the_documented_options():
    args = build_parser().parse_args(["evaluate", "ckpt", "--suite", "full", "--n", "7", "--out", "o",
                                      "--seed", "3", "--batch-size", "5", "--quick"])
    assert (args.model, args.suite, args.n, args.out, args.seed, args.batch_size, args.quick) == \
           ("ckpt", "full", 7, "o", 3, 5, True)
