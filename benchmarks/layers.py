"""Inference time of each defended head next to its undefended base, on the current backend.

Run:  KERAS_BACKEND=tensorflow python benchmarks/layers.py [--batch 128] [--repeats 15]

Every row is measured in this one run, side by side, and reported as a ratio
to the base network, so the numbers compare across machines. The timing is
built so that a ratio measures the head and nothing else:

- every variant is built and warmed up (two calls: tracing / compilation and
  allocator caches) before any is timed;
- the repeats are interleaved (round ``r`` times every variant once, in a
  shuffled order), so that a slow phase of a shared machine hits all alike;
- each variant's time is the median of its ``--repeats`` rounds, and its
  ratio the median over rounds of its time over the base's time *in the same
  round*, so that a slow round (another process on a shared machine) cancels
  out of the ratio instead of landing on whichever variant it hit.

A ratio below 1.0 is then noise (a head only adds work); the spread of the
base's repeats and a control row (a second copy of the base) are printed so
that noise can be told from a real cost.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hardened.layers import apply_gi, set_randomness  # noqa: E402
from hardened.models import build_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402


def cases(input_shape):
    """``(network, label, model)`` rows; the first row of each network is its base."""
    base = dict(input_shape=input_shape)
    plain = build_model("cnn7", **base)
    hashed = build_model("cnn7", defense={"hashed": [1 / 4096, 1 / 128]}, **base)
    yield "cnn7", "none (base)", plain
    yield "cnn7", "hashed (CR 1/4096, 1/128)", hashed
    for method, eps in (("gi1", 0.3), ("gi2", 5.0), ("gi3", 0.6)):
        yield "cnn7", f"{method} view (eps {eps})", apply_gi(plain, method, eps)
    yield "cnn7", "hash + gi3 view", apply_gi(hashed, "gi3", 0.6)
    yield "cnn7", "gi3 per-call resample", apply_gi(plain, "gi3", 0.6, resample="per_call")
    yield "cnn7", "pruning masks", build_model("cnn7", defense={"prune": True}, **base)
    for kind, extra in (("dropout", {"rate": 0.3}), ("sap", {"ratio": 1.0}), ("noise", {"stddev": 0.1})):
        spec = {"stochastic": {"kind": kind, "seed": 0, **extra}}
        yield "cnn7", f"{kind} after fc1", build_model("cnn7", defense=spec, **base)
    # Control: a second, separately built base. Its ratio is pure measurement noise (and bias).
    yield "cnn7", "none (base, control copy)", build_model("cnn7", **base)
    yield "cwcnn", "none (base)", build_model("cwcnn", **base)
    yield "cwcnn", "HRS 10x10 (random path)", build_model("hrs_cnn", channels=(10, 10), **base)
    fixed = build_model("hrs_cnn", channels=(10, 10), **base)
    set_randomness(fixed, False)
    yield "cwcnn", "HRS 10x10 (fixed path)", fixed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--input-shape", default="32,32,3")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.input_shape.split(","))
    x = np.random.default_rng(0).random((args.batch,) + shape).astype("float32")
    rows = list(cases(shape))
    # predict_on_batch: one batch, no data-adapter loop, so the per-call overhead does not dilute a ratio.
    fns = [lambda m=model: m.predict_on_batch(x) for _, _, model in rows]
    samples = _timing.interleaved(fns, args.repeats, warmup=2)
    medians = [float(np.median(t)) for t in samples]
    print(f"backend={keras.backend.backend()} keras={keras.__version__} batch={args.batch} input={shape} "
          f"median of {args.repeats} interleaved rounds after warm-up")
    print(f"{'network':<10} {'head defense':<28} {'ms/batch':>9} {'img/s':>8} {'ratio':>6}")
    base = {}
    for (net, label, _), t, s in zip(rows, medians, samples):
        if net not in base:
            base[net] = np.asarray(s)
            spread = f"   (repeats {1e3 * min(s):.1f}-{1e3 * max(s):.1f} ms)"
        else:
            spread = ""
        ratio = float(np.median(np.asarray(s) / base[net]))
        print(f"{net:<10} {label:<28} {t * 1e3:9.1f} {args.batch / t:8.0f} {ratio:6.2f}{spread}")


if __name__ == "__main__":
    main()
