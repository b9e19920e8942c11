"""PGD-20 throughput: ours vs torchattacks (torch backend), ours on TensorFlow and JAX, and the floor.

Usage::

    python benchmarks/attacks.py [--batch 64] [--steps 20] [--repeats 2] [--threads 1]

Prints images/s of PGD (linf, eps 0.3, CE loss) on Carlini & Wagner's MNIST
CNN (28x28x1, random weights, identical on every backend), and the ratio of
our PGD time to ``steps`` x one raw forward+backward pass of the same batch
(the floor any PGD implementation pays). The torch numbers run in this
process; TensorFlow and JAX each run in a subprocess with ``KERAS_BACKEND``
set. torchattacks is optional (``pip install --no-deps torchattacks``).
"""

import argparse
import json
import os
import subprocess
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default); 1 avoids spinning on busy machines")
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


def timed(fns, repeats):
    """Best wall time of each of ``fns`` over ``repeats`` interleaved rounds, after one warm-up call each.

    Interleaved, and the minimum rather than the mean: on a shared machine other
    processes only ever add time, and they should hit every contender alike.
    """
    for fn in fns:
        fn()  # compilation, caches
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def raw_forward_backward(model, x, y):
    """One forward+backward pass of CE w.r.t. the input, in the backend's own autodiff (compiled
    where our attacks compile: tf.function on TensorFlow, jit on JAX)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        xt, yt = torch.tensor(x), torch.tensor(y)

        def run():
            xg = xt.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xg, training=False), yt)
            torch.autograd.grad(loss, xg)

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(xv, yv):
            with tf.GradientTape() as tape:
                tape.watch(xv)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yv, model(xv, training=False)))
            return tape.gradient(loss, xv)

        xv, yv = tf.constant(x), tf.constant(y)
        return lambda: step(xv, yv).numpy()
    import jax
    import jax.numpy as jnp

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    def loss(xv, tv, ntv, yv):  # weights as arguments, as in our attacks (no constant folding)
        logits, _ = model.stateless_call(tv, ntv, xv, training=False)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yv[:, None], axis=1))

    grad = jax.jit(jax.grad(loss))
    xv, yv = jnp.asarray(x), jnp.asarray(np.asarray(y, np.int32))
    return lambda: grad(xv, tv, ntv, yv).block_until_ready()


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
    one = raw_forward_backward(model, x, y)

    def floor():
        for _ in range(args.steps):
            one()

    fns = [lambda: attack.generate(model, x, y, batch_size=args.batch), floor]
    theirs = _torchattacks_pgd(model, x, y, args.steps) if with_torchattacks else None
    if theirs is not None:
        fns.append(theirs)
    times = timed(fns, args.repeats)
    out = {"backend": keras.backend.backend(), "pgd_s": times[0], "images_per_s": args.batch / times[0],
           "floor_s": times[1], "ratio_to_floor": times[0] / times[1]}
    if theirs is not None:
        out["torchattacks_s"] = times[2]
        out["torchattacks_images_per_s"] = args.batch / times[2]
    return out


def subprocess_worker(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--batch", str(args.batch), "--steps",
           str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"backend": backend, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        if os.environ.get("KERAS_BACKEND") == "torch" and args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run(args)))
        return
    os.environ["KERAS_BACKEND"] = "torch"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"PGD-{args.steps} (linf, eps 0.3, CE), batch {args.batch}, C&W MNIST CNN (28x28x1), "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; best of {args.repeats}")
    res = run(args, with_torchattacks=True)
    print(f"  torch      ours          {res['images_per_s']:8.1f} images/s  ({res['pgd_s']:.3f} s/batch)")
    if "torchattacks_s" not in res:
        print("  torch      torchattacks  (not installed: pip install --no-deps torchattacks)")
    else:
        print(f"  torch      torchattacks  {res['torchattacks_images_per_s']:8.1f} images/s  "
              f"({res['torchattacks_s']:.3f} s/batch)  -> ours/torchattacks speed "
              f"{res['images_per_s'] / res['torchattacks_images_per_s']:.2f}x")
    print(f"  torch      ours / floor ({args.steps} x fwd+bwd = {res['floor_s']:.3f} s): "
          f"{res['ratio_to_floor']:.2f}x")
    for backend in ("tensorflow", "jax"):
        res = subprocess_worker(backend, args)
        if "error" in res:
            print(f"  {backend:10s} failed: {res['error']}")
            continue
        print(f"  {backend:10s} ours          {res['images_per_s']:8.1f} images/s  ({res['pgd_s']:.3f} s/batch)"
              f"  ours / floor ({res['floor_s']:.3f} s): {res['ratio_to_floor']:.2f}x")


if __name__ == "__main__":
    main()
