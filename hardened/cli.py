"""The ``hardened`` command line: a thin layer over the library.

    hardened list [--dataset mnist] [--filter gi3] [--aliases]
    hardened info NAME
    hardened evaluate NAME_OR_DIR --suite seed --n 500 --out runs/eval
    hardened evaluate cwcnn-prune-mnist --suite prune-la --transfer-from cwcnn-mnist
    hardened accuracy NAME_OR_DIR [--out DIR]          # full test split; DIR/accuracy.json for the card
    hardened push NAME_OR_DIR [--repo-id org/name] [--private]
    hardened train RECIPE [--out DIR] [--base DIR] [--epochs N] [--max-train N]
    hardened train --list
    hardened cards [--check] [FOLDER ...]             # render model_cards/NAME/README.md from results
    hardened leaderboard [--write | --check]           # the zoo leaderboard (model_cards/LEADERBOARD.md)
    hardened des --base NAME --member HRS=hrs10x10-mnist:10x10 --member SAP=cwcnn-sap-mnist:1 --n 500 --out DIR

The Keras backend is chosen with the ``KERAS_BACKEND`` environment variable
(tensorflow, jax or torch) before the command starts.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from hardened._provenance import command_line, git_commit

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's code for usage errors; also "not available yet"


def resolve_model(name_or_dir):
    """Load the model named by ``name_or_dir``: a checkpoint folder or a zoo name/alias.

    Returns:
        The `keras.Model` (with ``hardened_metadata``).

    Raises:
        FileNotFoundError: ``name_or_dir`` looks like a path but does not
            exist, or a zoo model's files are neither on the Hub nor bundled.
        ValueError: it is a file, or an unknown zoo name (with suggestions).
    """
    from hardened.zoo.hub import from_pretrained

    path = Path(os.fspath(name_or_dir)).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name_or_dir} is a file; pass the checkpoint *folder* that holds config.json, "
                         "model.safetensors and metadata.json.")
    return from_pretrained(name_or_dir)


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
    from hardened.evaluation.suites import DEPRECATED_SUITES, SUITES

    parser = argparse.ArgumentParser(prog="hardened", description="Adversarially defended image classifiers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ev = sub.add_parser("evaluate", help="run an attack suite and the gradient-masking checks",
                        description="Evaluate a checkpoint with an attack suite; writes results.json, "
                                    "results.md and success_vs_eps.png to --out.")
    ev.add_argument("model", metavar="MODEL_OR_DIR",
                    help="zoo name or alias (see `hardened list`), or a checkpoint folder")
    ev.add_argument("--suite", choices=SUITES + tuple(DEPRECATED_SUITES), default="hash-gi",
                    help="attack suite (default: hash-gi; the old names seed, seed002, seed003 still work)")
    ev.add_argument("--n", type=_positive_int, default=500, help="number of test images (default: 500)")
    ev.add_argument("--out", default=None, help="output folder (default: runs/eval/<model>-<suite>)")
    ev.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    ev.add_argument("--batch-size", type=_positive_int, default=128, help="batch size (default: 128)")
    ev.add_argument("--dataset", default=None,
                    help="dataset of the test images and attack settings (default: from the checkpoint metadata)")
    ev.add_argument("--data", default=None, metavar="NPZ",
                    help="evaluate on arrays x, y from this .npz instead of the dataset's test split")
    ev.add_argument("--data-dir", default=None, help="where hardened.data.load_dataset looks first")
    ev.add_argument("--quick", nargs="?", const=True, default=False, metavar="PROFILE",
                    help="fewer images for the expensive attacks (recorded in the results); nothing else changes. "
                         "--quick tour: the whole suite in about 10 minutes on 2 CPU cores (100 images with --n 100; "
                         "EAD and targeted ZOO, whose single image takes 7-8 minutes, are left out and say so)")
    ev.add_argument("--cap", action="append", default=[], metavar="ATTACK=N",
                    help="image cap for one attack on top of --quick's (repeatable, e.g. --cap C&W=3); "
                         "fewer images widen the intervals, the attack itself is unchanged")
    ev.add_argument("--only", default=None, metavar="NAMES",
                    help="comma-separated attack names of the suite to run (e.g. FGSM,BIM)")
    ev.add_argument("--resume", action="store_true",
                    help="reuse the attacks an interrupted run of the same command saved in --out "
                         "(results.partial.json); the others are run")
    ev.add_argument("--reuse", action="append", default=[], metavar="RESULTS_JSON",
                    help="take the rows of this earlier results file that were run on the same checkpoint, images, "
                         "seed, batch size and backend with the same attack parameters; run the rest (repeatable)")
    ev.add_argument("--transfer-from", default=None, metavar="NAME_OR_DIR",
                    help="source model of the grey-box transfer attacks (suite prune-la: the unpruned model); "
                         "without it they are recorded as skipped")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")

    acc = sub.add_parser("accuracy", help="clean accuracy on the whole test split (the card's headline)",
                         description="Clean accuracy of a zoo model or checkpoint folder on every test image "
                                     "(randomized models: mean of 3 passes). With --out, writes "
                                     "OUT/accuracy.json, which the card headlines.")
    acc.add_argument("model", metavar="NAME_OR_DIR")
    acc.add_argument("--out", default=None, help="folder for accuracy.json (e.g. model_cards/NAME)")
    acc.add_argument("--dataset", default=None, help="default: from the checkpoint metadata")
    acc.add_argument("--passes", type=_positive_int, default=None,
                     help="passes averaged (default: 1, or 3 for a randomized model)")
    acc.add_argument("--batch-size", type=_positive_int, default=256)
    acc.add_argument("--seed", type=_non_negative_int, default=0)
    acc.add_argument("--data-dir", default=None, help="where hardened.data.load_dataset looks first")

    ls = sub.add_parser("list", help="list the zoo's models", description="List the registered zoo models.")
    ls.add_argument("--dataset", default=None, help="only models of this dataset (e.g. mnist)")
    ls.add_argument("--filter", default=None, metavar="PATTERN", help="substring or glob the name must match")
    ls.add_argument("--aliases", action="store_true", help="also match the filter against aliases")

    info = sub.add_parser("info", help="show a zoo model's registry entry",
                          description="Show a zoo model's registry entry, where its bundled copy is, and its card.")
    info.add_argument("name", metavar="NAME")

    push = sub.add_parser("push", help="push a checkpoint folder to the Hugging Face Hub",
                          description="Upload model_cards/<NAME>/ (or a folder) to the Hub; prints the commit.")
    push.add_argument("model", metavar="NAME_OR_DIR", help="zoo name (its bundled folder) or a folder")
    push.add_argument("--repo-id", default=None, help="target org/name (default: the registry's repo_id)")
    push.add_argument("--revision", default=None, help="branch to push to (default: main)")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--message", default=None, help="commit message")
    push.add_argument("--token", default=None, help="Hub token (default: the logged-in one or HF_TOKEN)")

    train = sub.add_parser("train", help="run a training recipe (resumable)",
                           description="Run a named recipe; run it again with the same --out to resume.")
    train.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    train.add_argument("--list", action="store_true", help="list the recipes and exit")
    train.add_argument("--out", default=None, help="output checkpoint folder (default runs/recipes/RECIPE)")
    train.add_argument("--base", default=None, help="base checkpoint folder of a hash-transfer recipe")
    train.add_argument("--work-dir", default=None, help="resume state folder (default OUT/_backup)")
    train.add_argument("--data-dir", default=None, help="dataset folder (see hardened.data.load_dataset)")
    train.add_argument("--epochs", type=_int_at_least(1), default=None, help="override the recipe's epochs")
    train.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    train.add_argument("--batch-size", type=_int_at_least(1), default=None, help="override the batch size")
    train.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"],
                       help="auto: mixed_bfloat16 on TensorFlow with a GPU or a bf16-native CPU "
                            "(AVX512-BF16/AMX), float32 elsewhere")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-train", type=_int_at_least(1), default=None, help="use the first N training images")
    train.add_argument("--max-test", type=_int_at_least(1), default=None, help="use the first N test images")
    train.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    train.add_argument("--note", default=None, help="free text recorded in metadata.json")
    train.add_argument("--data-parallel", action="store_true",
                       help="data-parallel over all local devices (JAX DataParallel or TF MirroredStrategy)")
    train.add_argument("--compression", type=float, nargs=2, default=None, metavar=("CR_A", "CR_B"),
                       help="hash recipes: compression ratios instead of the recipe's (e.g. from cr-search)")

    crs = sub.add_parser("cr-search", help="seed 000's compression-ratio search (Algorithm 1)",
                         description="Hash-train candidate compression ratios from a base checkpoint and pick the "
                                     "one with the lowest robustness estimate R within the accuracy threshold.")
    crs.add_argument("base", metavar="BASE_DIR", help="base checkpoint folder written by a recipe")
    crs.add_argument("--out", required=True, help="output folder (cr_search.json, cr_search.png); resumable")
    crs.add_argument("--max-candidates", type=_int_at_least(1), default=None, help="evenly spaced sub-grid (budget)")
    crs.add_argument("--epochs", type=_int_at_least(1), default=1, help="hash-training epochs per candidate")
    crs.add_argument("--max-train", type=_int_at_least(1), default=None, help="training images per candidate")
    crs.add_argument("--n-estimator", type=_int_at_least(1), default=200, help="test images for g and phi")
    crs.add_argument("--alpha", type=float, default=0.5)
    crs.add_argument("--threshold", type=float, default=0.01, help="largest accepted accuracy drop (fraction)")
    crs.add_argument("--data-dir", default=None)

    cards = sub.add_parser("cards", help="render model cards (README.md) from results*.json and metadata",
                           description="Write (or with --check compare) the card of each folder, default: "
                                       "every card folder under --root.")
    cards.add_argument("folders", nargs="*", metavar="FOLDER", help="card folders (default: all under --root)")
    cards.add_argument("--root", default=None, help="folder of card folders (default: the bundled model_cards)")
    cards.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    board = sub.add_parser("leaderboard", help="print the zoo leaderboard (full-test and worst-case robust accuracy)",
                           description="Print the leaderboard of every card folder (Markdown), generated from "
                                       "the folders' results files only.")
    board.add_argument("--root", default=None, help="folder of card folders (default: the bundled model_cards)")
    group = board.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="also write ROOT/LEADERBOARD.md")
    group.add_argument("--check", action="store_true", help="compare with ROOT/LEADERBOARD.md; exit 1 on a difference")
    des = sub.add_parser("des", help="compare defense families by seed 004's DES (table + scatter plot)",
                         description="Evaluate every member against PGD and CW-PGD (white-box, EOT, fixed "
                                     "randomness), compute DES = gain in defense rate / (accuracy drop + eta) "
                                     "against --base, and write des.json, des.md and des.png to --out. "
                                     "Rerun with the same --out to resume.")
    des.add_argument("--base", required=True, help="the unprotected base model (zoo name or checkpoint folder)")
    des.add_argument("--member", action="append", default=[], metavar="FAMILY=MODEL[:STRENGTH]",
                     help="a member of a defense family (repeatable), e.g. HRS=hrs10x10-mnist:10x10")
    des.add_argument("--family-file", default=None, metavar="JSON",
                     help='members as JSON: {"HRS": [["hrs10x10-mnist", "10x10"], ...], ...}')
    des.add_argument("--out", default=None, help="output folder (default: runs/des/<base>)")
    des.add_argument("--n", type=_positive_int, default=500, help="number of test images (default: 500)")
    des.add_argument("--eps", type=_fraction, default=None,
                     help="l_inf bound, e.g. 0.3 or 8/255 (default: the adaptive suite's for the dataset)")
    des.add_argument("--attacks", default="PGD,CW-PGD", help="comma-separated subset of PGD,CW-PGD")
    des.add_argument("--settings", default="white-box,eot,fixed", help="comma-separated subset of "
                                                                       "white-box,eot,fixed")
    des.add_argument("--eot-samples", type=_positive_int, default=10, help="gradient samples per EOT step (10)")
    des.add_argument("--eta", type=float, default=0.002, help="eta of DES (seed 004: 0.002)")
    des.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    des.add_argument("--batch-size", type=_positive_int, default=128, help="batch size (default: 128)")
    des.add_argument("--dataset", default=None, help="dataset (default: from the base's metadata)")
    des.add_argument("--data", default=None, metavar="NPZ", help="compare on arrays x, y from this .npz")
    des.add_argument("--data-dir", default=None, help="where hardened.data.load_dataset looks first")
    des.add_argument("--no-resume", action="store_true", help="re-evaluate members whose results are saved")
    des.add_argument("--from-cards", nargs="?", const="", default=None, metavar="ROOT",
                     help="run no attack: read each model's results_adaptive.json from its card folder "
                          "(default root: model_cards/); refuses results that do not compare")
    des.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _fraction(text):
    """An argparse type: a float or a fraction such as ``8/255``."""
    num, sep, den = str(text).partition("/")
    try:
        return float(num) / float(den) if sep else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction like 8/255, got {text!r}") from None


def _des_members(args):
    """``{family: [(model, strength), ...]}`` from --family-file and the --member options."""
    import json

    members = {}
    if args.family_file:
        path = Path(args.family_file)
        if not path.is_file():
            raise FileNotFoundError(f"--family-file {path} does not exist.")
        try:
            members = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"--family-file {path} is not valid JSON ({err}).") from None
        if not isinstance(members, dict):
            raise ValueError(f"--family-file {path} must hold an object {{family: [[model, strength], ...]}}.")
        members = {k: list(v) if isinstance(v, list) else [v] for k, v in members.items()}
    for item in args.member:
        family, sep, rest = item.partition("=")
        if not sep or not family.strip() or not rest.strip():
            raise ValueError(f"--member expects FAMILY=MODEL[:STRENGTH], got {item!r}.")
        model, colon, strength = rest.rpartition(":")
        if not colon or Path(rest).expanduser().exists():  # no strength, or a folder name with a colon
            model, strength = rest, None
        members.setdefault(family.strip(), []).append((model.strip(), _strength_value(strength)))
    if not members:
        raise ValueError("hardened des needs members: --member FAMILY=MODEL[:STRENGTH] (repeatable) "
                         "or --family-file members.json.")
    return members


def _strength_value(text):
    """``"0.3"`` -> 0.3, ``"1"`` -> 1, ``"10x10"`` stays a label."""
    if text is None:
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def _cmd_evaluate(args):
    start = time.perf_counter()  # the duration printed at the end is the whole command's, loading included
    from hardened.evaluation import evaluate
    from hardened.evaluation.records import read_results
    from hardened.evaluation.suites import canonical_suite

    if canonical_suite(args.suite) != args.suite:
        print(f"note: suite {args.suite!r} is now called {canonical_suite(args.suite)!r}", file=sys.stderr)
        args.suite = canonical_suite(args.suite)
    model = resolve_model(args.model)
    source = resolve_model(args.transfer_from) if args.transfer_from else None
    data = _load_npz(args.data) if args.data else None
    out = args.out or str(Path("runs") / "eval" / f"{Path(args.model).resolve().name}-{args.suite}")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    quick = args.quick
    if args.cap:
        if isinstance(quick, str):
            raise ValueError("--cap applies on top of --quick's default caps; it cannot be combined with a "
                             f"profile (--quick {quick}).")
        quick = {}
        for item in args.cap:
            name, sep, value = item.rpartition("=")
            if not sep or not value.strip().isdigit():
                raise ValueError(f"--cap expects ATTACK=N with N a positive integer, got {item!r}.")
            quick[name.strip()] = int(value)
    # Provenance for the card: the exact command and the code it ran (read before the run, which can take an
    # hour: a commit made meanwhile must not be credited with results of the code loaded at the start).
    commit, dirty = git_commit()
    results = evaluate(model, data=data, suite=args.suite, n=args.n, seed=args.seed, batch_size=args.batch_size,
                       out_dir=out, dataset=args.dataset, progress=not args.no_progress, quick=quick,
                       only=only, data_dir=args.data_dir, resume=args.resume, transfer_source=source,
                       reuse=[read_results(path) for path in args.reuse])
    from hardened.evaluation.evaluate import write_results

    results.update(command=command_line(args.argv), commit=commit, commit_dirty=dirty)
    write_results(results, out)
    from hardened.reporting.summary import format_summary

    print(format_summary(results, seconds=time.perf_counter() - start))
    print(f"wrote {out}/results.json, results.md, success_vs_eps.png")
    return EXIT_OK


def _cmd_accuracy(args):
    import json

    from hardened.evaluation.accuracy import ACCURACY_NAME, full_test_accuracy

    model = resolve_model(args.model)
    commit, dirty = git_commit()
    result = full_test_accuracy(model, dataset=args.dataset, passes=args.passes, batch_size=args.batch_size,
                                seed=args.seed, data_dir=args.data_dir)
    result.update(command=command_line(args.argv), commit=commit, commit_dirty=dirty)
    low, high = result["ci95"]
    passes = result["passes"]
    extra = f"; mean of {len(passes)} passes: " + ", ".join(f"{100 * p:.2f}" for p in passes) if len(passes) > 1 \
        else ""
    print(f"{args.model} on the {result['dataset']} test split ({result['backend']}): "
          f"{100 * result['accuracy']:.2f} % ({result['n_correct']}/{result['n']}, 95 % CI "
          f"[{100 * low:.2f}, {100 * high:.2f}]{extra})")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / ACCURACY_NAME).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out / ACCURACY_NAME}")
    return EXIT_OK


def _cmd_list(args):
    from hardened.zoo import registry

    names = registry.list_models(filter=args.filter, dataset=args.dataset, include_aliases=args.aliases)
    if not registry.REGISTRY:
        print("No models are registered yet: the zoo's registry (hardened/zoo/registry.py) is empty. "
              "Checkpoint folders can be loaded with hardened.from_pretrained(path).")
        return EXIT_OK
    canonical = sorted({registry.resolve_name(n) for n in names})
    if not canonical:
        print("No registered model matches these filters.")
        return EXIT_OK
    rows = [("NAME", "ALIASES", "DATASET", "DEFENSE", "SUMMARY")]
    for name in canonical:
        e = registry.REGISTRY[name]
        rows.append((name, ",".join(e.get("aliases", [])) or "-", str(e.get("dataset", "-")),
                     str(e.get("defense", "-")), str(e.get("summary", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    return EXIT_OK


def _cmd_info(args):
    import json

    from hardened.zoo.hub import model_info

    print(json.dumps(model_info(args.name), indent=2, default=str))
    return EXIT_OK


def _cmd_push(args):
    from hardened.zoo.hub import push_to_hub

    commit = push_to_hub(args.model, args.repo_id, token=args.token, revision=args.revision, private=args.private,
                         commit_message=args.message)
    url = getattr(commit, "commit_url", None) or commit
    oid = getattr(commit, "oid", None)
    print(f"pushed {args.model}: {url}" + (f"\nrecord revision {oid!r} in the registry entry" if oid else ""))
    return EXIT_OK


def _cmd_train(args):
    from hardened.recipes import get_recipe, list_recipes, run_recipe

    if args.list or not args.recipe:
        for name in list_recipes():
            r = get_recipe(name)
            kind, epochs = r.get("kind", "base"), f"{r['fit']['epochs']} epochs"
            if kind == "hash":
                what = f"hash transfer of {r['base']} at CR {r['compression']}"
            elif kind == "prune":
                what = f"pruning of {r['base']}"
                epochs = f"{r.get('rounds', '?')} rounds x {r['fit']['epochs']} epochs"
            else:
                what = r.get("builder", "?") + ("" if kind == "base" else f", {kind}")
            print(f"{name:<28} {r['dataset']:<14} {what}  ({epochs})")
        return EXIT_OK if args.list else EXIT_USAGE
    run_recipe(args.recipe, args.out, base_dir=args.base, work_dir=args.work_dir, data_dir=args.data_dir,
               precision=args.precision, seed=args.seed, max_train=args.max_train, max_test=args.max_test,
               verbose=2 if args.quiet else "auto", epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
               data_parallel=args.data_parallel, compression=args.compression, note=args.note)
    return EXIT_OK


def _cmd_cr_search(args):
    from hardened.recipes import search_compression

    table = search_compression(args.base, out_dir=args.out, alpha=args.alpha, threshold=args.threshold,
                               max_candidates=args.max_candidates, epochs=args.epochs, max_train=args.max_train,
                               n_estimator=args.n_estimator, data_dir=args.data_dir)
    choice = table.get("choice") if isinstance(table, dict) else None
    print(f"chosen: {choice}" if choice else "no candidate within the accuracy threshold")
    print(f"wrote {args.out}/cr_search.json and cr_search.png")
    return EXIT_OK


def _cmd_cards(args):
    from hardened.reporting.cards import main as cards_main

    return cards_main(list(args.folders) + (["--root", args.root] if args.root else [])
                      + (["--check"] if args.check else []))


def _cmd_leaderboard(args):
    from hardened.reporting import leaderboard

    if args.check:
        diff = leaderboard.check(args.root)
        print("\n".join(diff) if diff else "LEADERBOARD.md is up to date")
        return EXIT_ERROR if diff else EXIT_OK
    print(leaderboard.render(args.root))
    if args.write:
        print(f"wrote {leaderboard.write(args.root)}", file=sys.stderr)
    return EXIT_OK


def _cmd_des(args):
    from hardened.evaluation.des import des_compare
    from hardened.reporting.des_report import write_des
    from hardened.zoo import registry
    from hardened.zoo.hub import from_pretrained

    members = _des_members(args)
    out = args.out or str(Path("runs") / "des" / Path(args.base).name)
    if args.from_cards is not None:
        des = _des_from_cards(args, members)
    else:
        des = des_compare(members, base=args.base, data=_load_npz(args.data) if args.data else None,
                          dataset=args.dataset, n=args.n, eps=args.eps, attacks=args.attacks.split(","),
                          settings=args.settings.split(","), eot_samples=args.eot_samples, eta=args.eta, out_dir=out,
                          resume=not args.no_resume, progress=not args.no_progress, seed=args.seed,
                          batch_size=args.batch_size, data_dir=args.data_dir,
                          command=command_line(args.argv), load=from_pretrained, resolve=registry.resolve_name)
    write_des(des, out)
    print(f"base {des['base']['name']}: clean accuracy {100 * des['base']['clean_accuracy']:.2f} % "
          f"on {des['inputs']['n']} images")
    for m in des["mean_des"]:
        value = "n/a" if m["mean_des"] is None else f"{m['mean_des']:.2f}"
        print(f"  {m['family']:<12} {m['attack']:<7} {m['setting']:<10} mean DES {value}")
    print(f"wrote {out}/des.json, des.md, des.png")
    return EXIT_OK


def _des_from_cards(args, members):
    from hardened.evaluation.des_results import des_from_results
    from hardened.evaluation.records import read_results
    from hardened.zoo import registry
    from hardened.zoo.hub import model_cards_dir

    root = Path(args.from_cards) if args.from_cards else model_cards_dir()

    def results_for(name):
        path = root / registry.resolve_name(name) / "results_adaptive.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: evaluate {name} with the adaptive suite first.")
        return read_results(path), str(path)

    return des_from_results(members, base=args.base, results_for=results_for, attacks=args.attacks.split(","),
                            settings=args.settings.split(","), eta=args.eta, command=command_line(args.argv))


_COMMANDS = {"train": _cmd_train, "cr-search": _cmd_cr_search, "evaluate": _cmd_evaluate, "accuracy": _cmd_accuracy,
             "list": _cmd_list,
             "info": _cmd_info, "push": _cmd_push, "des": _cmd_des, "cards": _cmd_cards,
             "leaderboard": _cmd_leaderboard}


def main(argv=None):
    """Entry point of the ``hardened`` console script; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)  # exits with code 2 on usage errors
    args.argv = argv
    if args.command not in _COMMANDS:
        print(f"hardened {args.command}: not yet available in this version.", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, ImportError, OSError) as err:  # OSError: missing files, Hub/network errors
        print(f"hardened {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
