"""Training throughput in float32 and mixed_bfloat16, side by side, on the current backend.

Run:  KERAS_BACKEND=tensorflow python benchmarks/precision.py [--steps 12] [--batch 128]

What `--precision auto` (hardened.recipes.train.resolve_precision) picks rests on
this ratio: bf16 is ~4x float32 on a CPU with AMX-BF16, but several times *slower*
where oneDNN has to emulate it (AVX2-only CPUs). The printed ratio is measured in
this one run, so it compares across machines.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from hardened.models import build_model  # noqa: E402
from hardened.recipes.train import build_in_policy, cpu_has_native_bf16, cpu_model, resolve_precision  # noqa: E402


def throughput(policy, x, y, batch):
    """Images per second of `fit` on seed 002's CIFAR-10 CNN (PrunableConv2D/Dense, as the prune recipe)."""
    model = build_in_policy(lambda: build_model("cwcnn", input_shape=(32, 32, 3), defense={"prune": True}), policy)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)  # compile / warm up
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, verbose=0)
    return len(x) / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((args.steps * args.batch, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    print(f"backend {keras.backend.backend()}, CPU {cpu_model()!r}, native bf16: {cpu_has_native_bf16()}, "
          f"auto -> {resolve_precision('auto')}")
    rates = {policy: throughput(policy, x, y, args.batch) for policy in ("float32", "mixed_bfloat16")}
    for policy, rate in rates.items():
        print(f"{policy:>15}: {rate:7.0f} img/s")
    print(f"bf16 / float32: {rates['mixed_bfloat16'] / rates['float32']:.2f}x")


if __name__ == "__main__":
    main()
