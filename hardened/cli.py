"""The ``hardened`` command line: a thin layer over the library.

    hardened evaluate CHECKPOINT_DIR --suite seed --n 500 --out runs/eval
    hardened list | info NAME | train | push      (not yet available)

The Keras backend is chosen with the ``KERAS_BACKEND`` environment variable
(tensorflow, jax or torch) before the command starts.
"""

import argparse
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's code for usage errors; also "not available yet"


def resolve_model(name_or_dir):
    """Load the model named by ``name_or_dir``.

    For now only checkpoint folders (written by `hardened.save_pretrained`)
    are accepted; a registry lookup of zoo names will be added here.

    Returns:
        The `keras.Model` (with ``hardened_metadata``).

    Raises:
        FileNotFoundError: ``name_or_dir`` looks like a path but does not exist.
        ValueError: it is not a checkpoint folder (e.g. a zoo name, which is
            not supported yet).
    """
    import hardened

    path = Path(os.fspath(name_or_dir)).expanduser()
    if path.is_dir():
        return hardened.load_pretrained(path)
    if path.exists():
        raise ValueError(f"{name_or_dir} is a file; pass the checkpoint *folder* that holds config.json, "
                         "model.safetensors and metadata.json.")
    looks_like_path = os.sep in str(name_or_dir) or str(name_or_dir).startswith(".")
    if looks_like_path:
        raise FileNotFoundError(f"Checkpoint folder {name_or_dir} does not exist.")
    raise ValueError(
        f"{name_or_dir!r} is not a checkpoint folder, and looking up zoo names is not available yet. "
        "Pass a folder written by hardened.save_pretrained()."
    )


def _load_npz(path):
    """``(x, y)`` from an .npz holding ``x``/``y`` (or ``x_test``/``y_test``); no pickles."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            for xk, yk in (("x", "y"), ("x_test", "y_test")):
                if {xk, yk} <= keys:
                    return data[xk], data[yk]
    except ValueError as err:
        raise ValueError(f"{path} is not a readable .npz of arrays ({err}).") from None
    raise ValueError(f"{path} must hold arrays 'x' and 'y' (or 'x_test' and 'y_test'); found {sorted(keys)}.")


def _int_at_least(minimum):
    """An argparse type: an integer >= ``minimum``, with a clear message otherwise."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def build_parser():
    """The argparse parser of the ``hardened`` command."""
    from hardened.evaluation.suites import SUITES

    parser = argparse.ArgumentParser(prog="hardened", description="Adversarially defended image classifiers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ev = sub.add_parser("evaluate", help="run an attack suite and the gradient-masking checks",
                        description="Evaluate a checkpoint with an attack suite; writes results.json, "
                                    "results.md and success_vs_eps.png to --out.")
    ev.add_argument("model", metavar="MODEL_OR_DIR", help="checkpoint folder (zoo names: not yet available)")
    ev.add_argument("--suite", choices=SUITES, default="seed", help="attack suite (default: seed)")
    ev.add_argument("--n", type=_positive_int, default=500, help="number of test images (default: 500)")
    ev.add_argument("--out", default=None, help="output folder (default: runs/eval/<model>-<suite>)")
    ev.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    ev.add_argument("--batch-size", type=_positive_int, default=128, help="batch size (default: 128)")
    ev.add_argument("--dataset", default=None,
                    help="dataset of the test images and attack settings (default: from the checkpoint metadata)")
    ev.add_argument("--data", default=None, metavar="NPZ",
                    help="evaluate on arrays x, y from this .npz instead of the dataset's test split")
    ev.add_argument("--data-dir", default=None, help="where hardened.data.load_dataset looks first")
    ev.add_argument("--quick", action="store_true",
                    help="fewer images for the expensive attacks (recorded in the results); nothing else changes")
    ev.add_argument("--only", default=None, metavar="NAMES",
                    help="comma-separated attack names of the suite to run (e.g. FGSM,BIM)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")

    for name, text in (("list", "list the zoo's models"), ("train", "train a model with a recipe"),
                       ("push", "push a checkpoint to the Hugging Face Hub")):
        p = sub.add_parser(name, help=f"{text} (not yet available)")
        p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    info = sub.add_parser("info", help="show a zoo model's card (not yet available)")
    info.add_argument("name", metavar="NAME")
    return parser


def _cmd_evaluate(args):
    from hardened.evaluation import evaluate

    model = resolve_model(args.model)
    data = _load_npz(args.data) if args.data else None
    out = args.out or str(Path("runs") / "eval" / f"{Path(args.model).resolve().name}-{args.suite}")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    results = evaluate(model, data=data, suite=args.suite, n=args.n, seed=args.seed, batch_size=args.batch_size,
                       out_dir=out, dataset=args.dataset, progress=not args.no_progress, quick=args.quick,
                       only=only, data_dir=args.data_dir)
    masking = [f["name"] for f in results["flags"] if f["triggered"] and f["kind"] == "masking"]
    print(f"clean accuracy {100 * results['clean_accuracy']:.2f} % on {results['n']} images")
    for e in results["attacks"]:
        rate = "–" if e["success_rate"] is None else f"{100 * e['success_rate']:.1f} %"
        status = "" if e["status"] == "ok" else f"  [{e['status']}: {e.get('reason') or e.get('error')}]"
        print(f"  {e['name']:<22} success {rate:>8}{status}")
    print("gradient masking: " + (f"YES ({', '.join(masking)})" if masking else "no"))
    if results["randomized"]:
        print("randomized model: single-sample white-box numbers are unreliable; see the EOT and "
              "fixed-randomness rows of the adaptive suite")
    print(f"wrote {out}/results.json, results.md, success_vs_eps.png")
    return EXIT_OK


def main(argv=None):
    """Entry point of the ``hardened`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with code 2 on usage errors
    if args.command in ("list", "info", "train", "push"):
        print(f"hardened {args.command}: not yet available in this version.", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _cmd_evaluate(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"hardened {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
