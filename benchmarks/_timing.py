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


def paired_ratio(numerator, denominator):
    """Median over rounds of ``numerator[i] / denominator[i]`` (two lists from `interleaved`).

    Both calls of a round ran back to back, so a slow phase of a shared machine
    (another process waking up, frequency scaling) inflates both and cancels in
    their ratio; the ratio of two separate minimums can pair the numerator's
    lucky round with the denominator's unlucky one. The median drops the odd
    round in which only one of them was hit.
    """
    ratios = sorted(a / b for a, b in zip(numerator, denominator))
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else 0.5 * (ratios[mid - 1] + ratios[mid])
