"""Attack cost against the compute floor: PGD throughput, and C&W / EAD / JSMA cost per (image, target) pair.

Usage::

    python benchmarks/attacks.py [--batch 64] [--steps 20] [--repeats 5] [--threads 1]
                                 [--pair-batch 32] [--pair-steps 20] [--pair-repeats 3] [--no-pairs]

1. PGD (linf, eps 0.3, CE loss) on Carlini & Wagner's MNIST CNN (28x28x1,
   random weights, identical on every backend): images/s, ours against
   torchattacks on torch, and the ratio of our time to ``steps`` x one raw
   forward+backward pass of the same batch (the floor any PGD pays).
2. AutoAttack (standard, linf 0.3, the reference's settings) on a bundled adversarially trained model:
   seconds per image, ours against torchattacks' components on the same torch model (``--aa-images``).
3. Per (image, target) pair, on seed 000's 7-layer CNN at the MNIST
   (28x28x1) and CIFAR-10 (32x32x3) shapes: C&W-L2, EAD, JSMA-F and JSMA-Z
   with the seed suite's settings except the iteration count (``--pair-steps``
   for C&W / EAD, JSMA's gamma chosen for about as many iterations): the cost
   of one iteration is what a card's budget is planned from, and it does not
   depend on how many iterations run. The floor is the model passes an
   iteration needs (see `_floor`), times the iterations actually run (C&W's
   early abort and JSMA's stop count as run); it is printed with the ms per
   pair per iteration and the resulting cost per pair at the suite's settings.

Every number of a table comes from one process, with the contenders
interleaved after a warm-up call each. Times and images/s are the best of
``--repeats`` (on a shared machine other processes only ever add time);
every ratio is the median over rounds of the two contenders' times in the
same round (`_timing.paired_ratio`), so that a disturbance hitting one round
cancels instead of pairing one contender's best round with the other's worst. The torch numbers run
in this process; TensorFlow and JAX each run in a subprocess with
``KERAS_BACKEND`` set. torchattacks is optional (``pip install --no-deps
torchattacks``).
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _floor  # noqa: E402
import _timing  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and TensorFlow intra-op threads (0: the default); "
                             "1 avoids spinning on busy machines")
    parser.add_argument("--pair-repeats", type=int, default=3, help="rounds of the per-pair table")
    parser.add_argument("--pair-batch", type=int, default=32, help="(image, target) pairs attacked together")
    parser.add_argument("--pair-steps", type=int, default=20, help="C&W / EAD iterations timed (one c)")
    parser.add_argument("--no-pairs", action="store_true", help="PGD only")
    parser.add_argument("--aa-images", type=int, default=32,
                        help="images of the AutoAttack comparison on torch (0: skip it)")
    parser.add_argument("--aa-model", default="cwcnn-advtrain-mnist",
                        help="bundled zoo model of the AutoAttack comparison (robust, so every component runs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_model():
    """C&W's MNIST CNN with deterministic numpy weights (He-normal kernels, zero biases)."""
    import keras
    import numpy as np

    inp = keras.Input((28, 28, 1))
    h = inp
    for i, filters in enumerate((32, 32, 64, 64)):
        h = keras.layers.Conv2D(filters, 3, activation="relu", kernel_initializer="zeros", name=f"conv{i + 1}")(h)
        if i % 2 == 1:
            h = keras.layers.MaxPooling2D(2, name=f"pool{i // 2 + 1}")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(200, activation="relu", kernel_initializer="zeros", name="fc1")(h)
    h = keras.layers.Dense(200, activation="relu", kernel_initializer="zeros", name="fc2")(h)
    model = keras.Model(inp, keras.layers.Dense(10, kernel_initializer="zeros", name="logits")(h))
    rng = np.random.default_rng(0)
    weights = []
    for w in model.get_weights():
        if w.ndim > 1:
            fan_in = int(np.prod(w.shape[:-1]))
            w = rng.normal(0, np.sqrt(2.0 / fan_in), size=w.shape)
        weights.append(np.asarray(w, np.float32))
    model.set_weights(weights)
    return model


def data(batch):
    import numpy as np

    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, size=(batch, 28, 28, 1)).astype("float32"), rng.integers(0, 10, batch)


def _torchattacks_pgd(model, x, y, steps):
    """torchattacks' PGD on the same Keras (torch-backend) model, or None if not installed."""
    import torch

    try:
        import torchattacks
    except ImportError:
        return None

    class KerasModule(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            return self.inner(v, training=False)

    attack = torchattacks.PGD(KerasModule(model).eval(), eps=0.3, alpha=0.01, steps=steps)
    xt, yt = torch.tensor(x), torch.tensor(y)
    return lambda: attack(xt, yt)


def run(args, with_torchattacks=False):
    """Our PGD on the current backend (and torchattacks'), images/s and the ratio to the floor."""
    import keras

    from hardened.attacks import get_attack

    model = build_model()
    x, y = data(args.batch)
    attack = get_attack("pgd", eps=0.3, steps=args.steps, step_size=0.01, loss="ce")
    floor = _floor.repeat(_floor.passes(model, x, y), args.steps)
    fns = [lambda: attack.generate(model, x, y, batch_size=args.batch), floor]
    theirs = _torchattacks_pgd(model, x, y, args.steps) if with_torchattacks else None
    if theirs is not None:
        fns.append(theirs)
    rounds = _timing.interleaved(fns, args.repeats)
    times = [min(t) for t in rounds]
    out = {"backend": keras.backend.backend(), "pgd_s": times[0], "images_per_s": args.batch / times[0],
           "floor_s": times[1], "ratio_to_floor": _timing.paired_ratio(rounds[0], rounds[1])}
    if theirs is not None:
        out["torchattacks_s"] = times[2]
        out["torchattacks_images_per_s"] = args.batch / times[2]
        # Speed of ours relative to theirs: their time over ours, round by round.
        out["speed_vs_torchattacks"] = _timing.paired_ratio(rounds[2], rounds[0])
    return out


# name, attack, the seed suite's settings (hardened.evaluation.suites), iterations there, floor passes
PAIR_CASES = (
    ("C&W", "cw_l2", {"confidence": 0.0, "lr": 5e-3, "initial_const": 1e-2, "abort_early": True}, 5 * 1000,
     {"backwards": 1}),
    ("EAD", "ead", {"beta": 1e-2, "decision_rule": "EN", "confidence": 0.0, "lr": 1e-2, "initial_const": 1e-3,
                    "abort_early": False}, 9 * 1000, {"backwards": 1, "extra_forward": True}),
    ("JSMA-F", "jsma", {"variant": "F", "theta": 1.0}, None, {"backwards": 1}),
    ("JSMA-Z", "jsma", {"variant": "Z", "theta": 1.0}, None, {"backwards": 2}),
)
PAIR_SHAPES = {"MNIST": (28, 28, 1), "CIFAR-10": (32, 32, 3)}


def pairs(args):
    """Seconds per pair per iteration of C&W, EAD, JSMA-F/Z on cnn7, and their ratio to the floor."""
    import keras
    import numpy as np

    from hardened.attacks import get_attack
    from hardened.models import build_model as build

    rows = []
    for shape_name, shape in PAIR_SHAPES.items():
        keras.utils.set_random_seed(0)
        model = build("cnn7", input_shape=shape)
        rng = np.random.default_rng(2)
        x = rng.uniform(0, 1, size=(args.pair_batch, *shape)).astype("float32")
        y = np.argmax(model.predict(x, verbose=0), -1)
        target = (y + 1 + rng.integers(0, 9, len(y))) % 10
        n_feat = int(np.prod(shape))
        for label, name, params, suite_iters, floor_kind in PAIR_CASES:
            if name == "jsma":
                # gamma caps the iterations at n_feat * gamma / 2: about --pair-steps of them (the suite's
                # gamma 1.0 allows n_feat / 2; an iteration costs the same either way).
                params = dict(params, gamma=2.0 * args.pair_steps / n_feat)
                suite_iters = n_feat // 2
            else:
                params = dict(params, binary_search_steps=1, steps=args.pair_steps)
            attack = get_attack(name, targeted=True, **params)

            def run_attack(attack=attack):
                attack.generate(model, x, y, target=target, batch_size=args.pair_batch)

            run_attack()  # compile; also fixes the iterations run (deterministic)
            steps = attack.last_steps
            floor = _floor.repeat(_floor.passes(model, x, y, **floor_kind), steps)
            rounds = _timing.interleaved([run_attack, floor], args.pair_repeats)
            t_attack, t_floor = (min(t) for t in rounds)
            per = t_attack / (steps * args.pair_batch)
            rows.append({"shape": shape_name, "attack": label, "steps_run": steps, "attack_s": t_attack,
                         "floor_s": t_floor, "ratio_to_floor": _timing.paired_ratio(*rounds),
                         "ms_per_pair_step": 1e3 * per, "suite_iters": suite_iters,
                         "suite_s_per_pair": per * suite_iters,
                         "floor": "fwd+bwd" + ("+bwd" if floor_kind.get("backwards", 1) > 1 else "")
                                  + ("+fwd" if floor_kind.get("extra_forward") else "")})
    return rows


def print_pairs(backend, rows, args):
    print(f"  {backend}: cost per (image, target) pair, cnn7, {args.pair_batch} pairs per batch")
    print(f"    {'shape':<9}{'attack':<8}{'iters':>6}{'ms/pair/iter':>14}{'floor':>14}{'/floor':>8}"
          f"{'suite iters':>12}{'s/pair there':>14}")
    for r in rows:
        print(f"    {r['shape']:<9}{r['attack']:<8}{r['steps_run']:>6}{r['ms_per_pair_step']:>14.3f}"
              f"{r['floor']:>14}{r['ratio_to_floor']:>7.2f}x{r['suite_iters']:>12}{r['suite_s_per_pair']:>14.2f}")


def autoattack_vs_torchattacks(args):
    """Seconds per image of our AutoAttack (standard, linf 0.3) and of torchattacks' on the same torch model.

    The referee is torchattacks' MultiAttack of the same four components at the reference settings (APGD-CE,
    APGD-T and FAB-T with 100 iterations and 9 targets, Square with 5000 queries and p_init 0.8), as in
    tests/test_autoattack_reference.py: ``torchattacks.AutoAttack`` itself runs its components at 10
    iterations. On an adversarially trained model most images survive APGD, so every component runs.
    One timed call each (interleaved, after no warm-up: a call takes minutes, compilation is negligible).
    """
    import warnings

    import numpy as np
    import torch

    try:
        import torchattacks
    except ImportError:
        return None
    import hardened
    from hardened.attacks import get_attack
    from hardened.data import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Hub fallback warning: the bundled copy is used offline
        model = hardened.from_pretrained(args.aa_model)
    _, (x, y) = load_dataset("mnist")
    x, y = x[:args.aa_images].astype("float32"), y[:args.aa_images].astype("int64")

    class NCHW(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            return self.inner(v.permute(0, 2, 3, 1), training=False)

    net = NCHW(model).eval()
    common = {"eps": 0.3, "norm": "Linf", "seed": 0}
    referee = torchattacks.MultiAttack([
        torchattacks.APGD(net, loss="ce", steps=100, n_restarts=1, **common),
        torchattacks.APGDT(net, steps=100, n_restarts=1, n_classes=10, **common),
        torchattacks.FAB(net, steps=100, n_restarts=1, multi_targeted=True, n_classes=10, **common),
        torchattacks.Square(net, n_queries=5000, n_restarts=1, p_init=0.8, **common),
    ])
    xt, yt = torch.tensor(np.transpose(x, (0, 3, 1, 2))), torch.tensor(y)
    ours = get_attack("autoattack", eps=0.3, norm="linf", version="standard")
    t_ours, t_theirs = (min(t) for t in _timing.interleaved(
        [lambda: ours.generate(model, x, y, batch_size=len(x)), lambda: referee(xt, yt)], 1, warmup=0))
    return {"model": args.aa_model, "n": len(x), "ours_s_per_image": t_ours / len(x),
            "torchattacks_s_per_image": t_theirs / len(x)}


def subprocess_worker(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--batch", str(args.batch), "--steps",
           str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--pair-batch", str(args.pair_batch), "--pair-repeats", str(args.pair_repeats),
           "--pair-steps", str(args.pair_steps)]
    if args.no_pairs:
        cmd.append("--no-pairs")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"backend": backend, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        if os.environ.get("KERAS_BACKEND") == "tensorflow" and args.threads:
            import tensorflow as tf

            # As for torch: one intra-op thread does not spin against whatever else runs on the machine.
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        out = run(args)
        if not args.no_pairs:
            out["pairs"] = pairs(args)
        print(json.dumps(out))
        return
    os.environ["KERAS_BACKEND"] = "torch"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"PGD-{args.steps} (linf, eps 0.3, CE), batch {args.batch}, C&W MNIST CNN (28x28x1), "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; best of {args.repeats}")
    res = run(args, with_torchattacks=True)
    torch_pairs = None if args.no_pairs else pairs(args)
    print(f"  torch      ours          {res['images_per_s']:8.1f} images/s  ({res['pgd_s']:.3f} s/batch)")
    if "torchattacks_s" not in res:
        print("  torch      torchattacks  (not installed: pip install --no-deps torchattacks)")
    else:
        print(f"  torch      torchattacks  {res['torchattacks_images_per_s']:8.1f} images/s  "
              f"({res['torchattacks_s']:.3f} s/batch)  -> ours/torchattacks speed "
              f"{res['speed_vs_torchattacks']:.2f}x")
    print(f"  torch      ours / floor ({args.steps} x fwd+bwd = {res['floor_s']:.3f} s): "
          f"{res['ratio_to_floor']:.2f}x")
    others = {}
    for backend in ("tensorflow", "jax"):
        res = others[backend] = subprocess_worker(backend, args)
        if "error" in res:
            print(f"  {backend:10s} failed: {res['error']}")
            continue
        print(f"  {backend:10s} ours          {res['images_per_s']:8.1f} images/s  ({res['pgd_s']:.3f} s/batch)"
              f"  ours / floor ({res['floor_s']:.3f} s): {res['ratio_to_floor']:.2f}x")
    if args.aa_images > 0:
        aa = autoattack_vs_torchattacks(args)
        if aa is None:
            print("  AutoAttack: torchattacks not installed (pip install --no-deps torchattacks)")
        else:
            print(f"AutoAttack standard (linf 0.3, reference settings) on {aa['model']}, {aa['n']} MNIST test images, "
                  f"torch: ours {aa['ours_s_per_image']:.2f} s/image, torchattacks {aa['torchattacks_s_per_image']:.2f} "
                  f"s/image -> ours/torchattacks speed {aa['torchattacks_s_per_image'] / aa['ours_s_per_image']:.2f}x")
    if args.no_pairs:
        return
    print("C&W / EAD / JSMA per pair (floor: the model passes one iteration needs x iterations run; "
          "'s/pair there': at the seed suite's iterations, without early abort)")
    print_pairs("torch", torch_pairs, args)
    for backend, res in others.items():
        if "pairs" in res:
            print_pairs(backend, res["pairs"], args)


if __name__ == "__main__":
    main()
