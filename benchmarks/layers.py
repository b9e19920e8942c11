"""Inference time of each defended head next to its undefended base, on the current backend.

Run:  KERAS_BACKEND=tensorflow python benchmarks/layers.py [--batch 128] [--repeats 5]

Every row is measured in this one run, side by side, and reported as a ratio
to the base network, so the numbers compare across machines.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hardened.layers import apply_gi, set_randomness  # noqa: E402
from hardened.models import build_model  # noqa: E402


def _time_predict(model, x, repeats):
    model.predict(x, batch_size=len(x), verbose=0)  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(x, batch_size=len(x), verbose=0)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cases(input_shape):
    base = dict(input_shape=input_shape)
    plain = build_model("seed_cnn7", **base)
    hashed = build_model("seed_cnn7", defense={"hashed": [1 / 4096, 1 / 128]}, **base)
    yield "seed_cnn7", "none (base)", plain, None
    yield "seed_cnn7", "hashed (CR 1/4096, 1/128)", hashed, None
    for method, eps in (("gi1", 0.3), ("gi2", 5.0), ("gi3", 0.6)):
        yield "seed_cnn7", f"{method} view (eps {eps})", apply_gi(plain, method, eps), None
    yield "seed_cnn7", "hash + gi3 view", apply_gi(hashed, "gi3", 0.6), None
    yield "seed_cnn7", "gi3 per-call resample", apply_gi(plain, "gi3", 0.6, resample="per_call"), None
    yield "seed_cnn7", "pruning masks", build_model("seed_cnn7", defense={"prune": True}, **base), None
    for kind, extra in (("dropout", {"rate": 0.3}), ("sap", {"ratio": 1.0}), ("noise", {"stddev": 0.1})):
        spec = {"stochastic": {"kind": kind, "seed": 0, **extra}}
        yield "seed_cnn7", f"{kind} after fc1", build_model("seed_cnn7", defense=spec, **base), None
    cw = build_model("cw_cnn", **base)
    yield "cw_cnn", "none (base)", cw, None
    hrs = build_model("hrs_cnn", channels=(10, 10), **base)
    yield "cw_cnn", "HRS 10x10 (random path)", hrs, None
    yield "cw_cnn", "HRS 10x10 (fixed path)", hrs, "fixed"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input-shape", default="32,32,3")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.input_shape.split(","))
    x = np.random.default_rng(0).random((args.batch,) + shape).astype("float32")
    print(f"backend={keras.backend.backend()} keras={keras.__version__} batch={args.batch} input={shape}")
    print(f"{'network':<10} {'head defense':<28} {'ms/batch':>9} {'img/s':>8} {'ratio':>6}")
    base_time = {}
    for net, label, model, mode in cases(shape):
        if mode == "fixed":
            set_randomness(model, False)
        t = _time_predict(model, x, args.repeats)
        base_time.setdefault(net, t)
        print(f"{net:<10} {label:<28} {t * 1e3:9.1f} {args.batch / t:8.0f} {t / base_time[net]:6.2f}")


if __name__ == "__main__":
    main()
