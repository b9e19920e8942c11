"""Interleaved timing shared by the benchmarks: every contender warmed up, then shuffled rounds."""

import random
import time


def interleaved(fns, repeats, warmup=1, seed=0):
    """Wall times of each of ``fns`` over ``repeats`` rounds, after ``warmup`` calls each.

    Each round calls every contender once, in a shuffled order, so that a slow
    phase of a shared machine hits all of them alike and none always runs first.

    Returns:
        One list of ``repeats`` seconds per contender (callers take the min or the median).
    """
    for fn in fns:
        for _ in range(warmup):
            fn()  # compilation, caches
    times = [[] for _ in fns]
    order = list(range(len(fns)))
    shuffle = random.Random(seed).shuffle
    for _ in range(repeats):
        shuffle(order)
        for i in order:
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return times
