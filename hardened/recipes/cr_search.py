"""Seed 000's Algorithm 1: search the compression ratios of the defensive hash classifier.

For every candidate ``(CR1, CR2)`` — CR1 of the last hidden FC layer, CR2 of
``logits`` — the base model's last two FC layers are replaced by
`HashedDense` layers at those ratios, the other layers get the base weights
(`copy_weights_by_name`) and the whole model is retrained ("hashTraining").
Then its clean accuracy and the two terms of the robustness estimator are
measured on the test set: ``g`` = mean ``|∂Z/∂x|`` and ``φ`` = logit variance
(`hardened.evaluation.metrics`). Across the candidates ``g`` and ``φ`` are
normalised to [0, 1], ``R = α·g + (1 − α)·φ``, a candidate whose accuracy drop
against the base is not below ``T`` gets ``R = 1`` (rejected), and the choice
is the accepted candidate with the smallest ``R``.

The grid, as written in Algorithm 1: ``CR1`` starts at ``(N1·M1)^-1/2`` and
``CR2`` at ``1/2``; both are halved while ``CR1 > (N1·M1)^-1`` and
``CR2 > (N2·M2)^-1`` (layer 1 has ``N1`` inputs and ``M1`` outputs; layer 2 is
``logits``). The pseudo-code does not reset ``CR2`` inside the outer loop; we
read it as the full grid, which is what its text describes ("scale CR1 (CR2)
by two and repeat"). ``max_candidates``, ``epochs`` and ``max_train`` give a
reduced budget (an evenly spaced sub-grid, shorter training, fewer images);
``cr_search.json`` records which.

g and φ are normalised over every candidate in ``cr_search.json`` (those of an
earlier call with another grid too).

Resumable: each finished candidate is written to ``cr_search.json`` at once,
and a candidate already there is not trained again; an interrupted
candidate resumes from its `BackupAndRestore` state.
"""

import json
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from hardened.evaluation.metrics import estimator_table, logit_gradient_magnitude, logit_variance, normalize_unit
from hardened.layers import HashedDense
from hardened.models import build_model, canonical_builder
from hardened.recipes.run import copy_weights_by_name
from hardened.recipes.train import build_in_policy, fit_model, load_split, provenance, resolve_precision, test_accuracy
from hardened.zoo.checkpoint import load_pretrained, save_pretrained

#: Epochs of seed 000's transfer retraining (the paper's budget per candidate).
PAPER_EPOCHS = 3
#: Hash-transfer changes to the base's training settings (as `presets._hash`).
HASH_FIT = {"warmup_epochs": 0.3}
JSON_NAME = "cr_search.json"
PLOT_NAME = "cr_search.png"


def halving(start, bound, inclusive=False):
    """``start, start/2, ...`` while ``> bound`` (``>= bound`` if ``inclusive``)."""
    start, bound = float(start), float(bound)
    if not 0 < start <= 1:
        raise ValueError(f"A compression ratio must be in (0, 1], got start={start!r}.")
    values, cr = [], start
    while cr > bound or (inclusive and math.isclose(cr, bound, rel_tol=1e-9)):
        values.append(cr)
        cr /= 2
    return values


def paper_grid(n1, m1, n2, m2, start=None, min_cr=None):
    """Algorithm 1's candidate ratios for hashed layers of ``n1 x m1`` and ``n2 x m2`` weights.

    Args:
        n1, m1, n2, m2: Inputs and outputs of the two hashed layers.
        start: ``(CR1, CR2)`` to start from (default the paper's
            ``((N1·M1)^-1/2, 1/2)``).
        min_cr: ``(CR1, CR2)`` smallest ratios to try, inclusive (default the
            paper's strict bounds ``(N1·M1)^-1`` and ``(N2·M2)^-1``).

    Returns:
        ``(cr1_values, cr2_values)``, each decreasing.
    """
    start = start if start is not None else ((n1 * m1) ** -0.5, 0.5)
    if min_cr is None:
        return halving(start[0], 1.0 / (n1 * m1)), halving(start[1], 1.0 / (n2 * m2))
    return halving(start[0], min_cr[0], inclusive=True), halving(start[1], min_cr[1], inclusive=True)


def _spread(values, n):
    """``n`` evenly spaced entries of ``values`` (both ends for n >= 2, the middle for 1)."""
    if n >= len(values):
        return list(values)
    if n == 1:
        return [values[len(values) // 2]]
    idx = sorted(set(int(round(i)) for i in np.linspace(0, len(values) - 1, n)))
    return [values[i] for i in idx]


def reduced_grid(cr1_values, cr2_values, max_candidates=None):
    """The product grid, or an evenly spaced sub-grid of at most ``max_candidates`` pairs.

    The sub-grid takes ``n1`` CR1 and ``n2`` CR2 values with ``n1·n2`` as large
    as allowed, sharing the budget between the axes in proportion to their
    lengths. Pairs are in Algorithm 1's order (CR1 outer, CR2 inner).
    """
    l1, l2 = len(cr1_values), len(cr2_values)
    if max_candidates is None or max_candidates >= l1 * l2:
        n1, n2 = l1, l2
    else:
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates!r}.")
        best = None
        for a in range(1, min(l1, max_candidates) + 1):
            b = min(l2, max_candidates // a)
            score = (a * b, -abs(a / l1 - b / l2))
            if best is None or score > best[0]:
                best = (score, a, b)
        _, n1, n2 = best
    return [(c1, c2) for c1 in _spread(cr1_values, n1) for c2 in _spread(cr2_values, n2)]


def ratio_label(cr):
    """``0.000244...`` -> ``"1/4096"`` (exact reciprocals of integers), else ``"%.3g"``."""
    inv = 1.0 / cr
    return f"1/{int(round(inv))}" if math.isclose(inv, round(inv), rel_tol=1e-9) else f"{cr:.3g}"


def _key(cr1, cr2):
    return f"{float(cr1):.12g},{float(cr2):.12g}"


def _tag(cr1, cr2):
    return f"cr1_{ratio_label(cr1).replace('/', '-')}__cr2_{ratio_label(cr2).replace('/', '-')}"


def _hashed_layers(model):
    layers = [layer for layer in model.layers if isinstance(layer, HashedDense)]
    if len(layers) != 2:
        raise ValueError(f"Expected the two hashed FC layers of a hash classifier, found {[lay.name for lay in layers]}.")
    return layers


def _load_base(base):
    if isinstance(base, keras.Model):
        meta = dict(getattr(base, "hardened_metadata", {}) or {})
        return base, meta, None

    model = load_pretrained(base)
    return model, model.hardened_metadata, str(base)


def search_compression(base, dataset=None, out_dir=None, *, alpha=0.5, threshold=0.01, start=None, min_cr=None,
                       max_candidates=None, epochs=1, max_train=None, max_test=None, n_estimator=200, fit=None,
                       lr_scale=0.5, data_dir=None, precision="auto", seed=0, hash_seed=0, keep_checkpoints=True,
                       verbose=0, progress=True):
    """Run seed 000's Algorithm 1 from a base checkpoint; write ``cr_search.json`` and ``cr_search.png``.

    Args:
        base: A base checkpoint folder written by a recipe (its metadata has
            ``architecture``), or such a loaded model.
        dataset: Dataset name (default: the base checkpoint's).
        out_dir: Output folder (default ``<base>/cr_search``).
        alpha: α of ``R = α·g + (1 − α)·φ``.
        threshold: T, the largest tolerated accuracy drop (fraction; 0.01 = 1 %).
        start: ``(CR1, CR2)`` to start halving from (default the paper's
            ``((N1·M1)^-1/2, 1/2)``).
        min_cr: Smallest ``(CR1, CR2)`` to try, inclusive (default the paper's
            strict bounds ``(N1·M1)^-1``, ``(N2·M2)^-1``).
        max_candidates: Budget: an evenly spaced sub-grid of at most this many
            candidates (default: the full grid).
        epochs: Retraining epochs per candidate (the paper: 3).
        max_train, max_test: Use the first images only (budget / smoke tests).
        n_estimator: Test images on which g and φ are measured.
        fit: `fit_model` settings overriding the base's (default: the base
            checkpoint's ``fit`` with a 0.3-epoch warm-up and ``lr * lr_scale``,
            the hash recipes' transfer settings).
        lr_scale: Peak learning rate relative to the base's.
        data_dir: Dataset folder.
        precision: Training precision (see `resolve_precision`); candidates are
            evaluated in float32.
        seed: Seed of initialisation and shuffling (the same for every candidate).
        hash_seed: Seed of the hash functions.
        keep_checkpoints: Save every candidate as a checkpoint folder under
            ``out_dir/candidates`` (the chosen one can then be used directly).
        verbose: Keras fit verbosity per candidate.
        progress: tqdm bar over the candidates.

    Returns:
        The table as a dict (what ``cr_search.json`` holds); ``table["choice"]``
        is the chosen candidate (``None`` if every candidate was rejected).
    """
    from tqdm.auto import tqdm

    base_model, meta, base_dir = _load_base(base)
    arch = meta.get("architecture")
    if not arch:
        raise ValueError("The base checkpoint has no 'architecture' in its metadata: the search needs a checkpoint "
                         "written by a hardened recipe (builder and kwargs).")
    builder, base_kwargs = canonical_builder(arch["builder"]), dict(arch["kwargs"])
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise ValueError("No dataset given and none recorded in the base checkpoint.")
    out_dir = Path(out_dir) if out_dir is not None else Path(base_dir or ".") / "cr_search"
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = resolve_precision(precision)

    fit_settings = dict(meta.get("fit") or {})
    fit_settings.update(HASH_FIT)
    if "lr" in fit_settings:
        fit_settings["lr"] = fit_settings["lr"] * float(lr_scale)
    fit_settings.update(fit or {})
    fit_settings["epochs"] = int(epochs)

    def kwargs_for(cr1, cr2):
        kwargs = dict(base_kwargs)
        defense = dict(kwargs.get("defense") or {})
        defense.update({"hashed": [float(cr1), float(cr2)], "hash_seed": int(hash_seed)})
        kwargs["defense"] = defense
        return kwargs

    probe = _hashed_layers(build_model(builder, **kwargs_for(0.5, 0.5)))
    (n1, m1), (n2, m2) = (tuple(int(d) for d in layer.kernel_shape) for layer in probe)
    hashed_names = [layer.name for layer in probe]
    cr1_values, cr2_values = paper_grid(n1, m1, n2, m2, start=start, min_cr=min_cr)
    grid = reduced_grid(cr1_values, cr2_values, max_candidates)

    settings = {"base": base_dir, "base_weights_sha256": (meta.get("files", {}).get("model.safetensors") or {})
                .get("sha256"), "dataset": dataset, "fit": fit_settings, "max_train": max_train,
                "max_test": max_test, "n_estimator": int(n_estimator), "precision": policy, "seed": int(seed),
                "hash_seed": int(hash_seed), "backend": keras.backend.backend()}
    path = out_dir / JSON_NAME
    previous = json.loads(path.read_text()) if path.exists() else None
    if previous is not None:
        changed = sorted(k for k in settings if k not in ("base", "backend") and previous.get("settings", {}).get(k) != settings[k])
        if changed:
            raise ValueError(f"{path} was made with other settings ({', '.join(changed)}): its candidates cannot be "
                             "reused. Use another out_dir or the same settings.")
    done = {c["key"]: c for c in (previous or {}).get("candidates", [])}

    train, test = load_split(dataset, data_dir=data_dir, max_train=max_train, max_test=max_test)
    x_est = np.asarray(test[0][:int(n_estimator)], np.float32)
    if previous is not None and "base_model" in previous:
        base_row = previous["base_model"]
    else:
        base_row = {"accuracy": test_accuracy(base_model, *test), "g": logit_gradient_magnitude(base_model, x_est),
                    "phi": logit_variance(base_model, x_est)}
    budget = {"max_candidates": max_candidates, "epochs": int(epochs), "max_train": max_train, "max_test": max_test,
              "n_train": int(len(train[0])), "n_test": int(len(test[0])), "n_estimator": int(len(x_est)),
              "grid_size_full": len(cr1_values) * len(cr2_values), "grid_size": len(grid),
              "reduced": bool(len(grid) < len(cr1_values) * len(cr2_values) or epochs < PAPER_EPOCHS or max_train
                              or max_test)}
    header = {"algorithm": "seed 000 Algorithm 1 (robustness-estimator search of CR1, CR2)",
              "hashed_layers": {"names": hashed_names, "shapes": [[n1, m1], [n2, m2]]},
              "grid_axes": {"cr1": cr1_values, "cr2": cr2_values, "start": list(start) if start else None,
                            "min_cr": list(min_cr) if min_cr else None},
              "grid": [[c1, c2] for c1, c2 in grid], "budget": budget, "settings": settings, "base_model": base_row,
              "alpha": float(alpha), "threshold": float(threshold), **provenance()}

    bar = tqdm(grid, desc="CR candidates", unit="cand", disable=not progress)
    for cr1, cr2 in bar:
        key = _key(cr1, cr2)
        bar.set_postfix_str(f"CR1={ratio_label(cr1)} CR2={ratio_label(cr2)}")
        if key in done:
            continue
        started = time.perf_counter()
        kwargs = kwargs_for(cr1, cr2)
        build = lambda kwargs=kwargs: build_model(builder, **kwargs)  # noqa: E731
        keras.utils.set_random_seed(int(seed))
        model = build_in_policy(build, policy)
        copied = copy_weights_by_name(base_model, model)
        cand_dir = out_dir / "candidates" / _tag(cr1, cr2)
        summary = fit_model(model, train, test, cand_dir, seed=seed, work_dir=cand_dir / "_backup", verbose=verbose,
                            **fit_settings)
        final = build_in_policy(build, "float32")
        final.set_weights(model.get_weights())
        acc = test_accuracy(final, *test)
        g = logit_gradient_magnitude(final, x_est)
        phi = logit_variance(final, x_est)
        row = {"key": key, "cr1": float(cr1), "cr2": float(cr2), "label": f"({ratio_label(cr1)}, {ratio_label(cr2)})",
               "k1": int(_hashed_layers(final)[0].num_weights), "k2": int(_hashed_layers(final)[1].num_weights),
               "accuracy": acc, "drop": base_row["accuracy"] - acc, "g": g, "phi": phi,
               "train_accuracy": summary.get("train_accuracy"), "copied_layers": copied,
               "seconds": round(time.perf_counter() - started, 1), "checkpoint": None}
        if keep_checkpoints:
            save_pretrained(final, cand_dir, metadata={
                "model_name": f"{final.name}-{_tag(cr1, cr2)}", "architecture": {"builder": builder, "kwargs": kwargs},
                "dataset": dataset, "test_accuracy": acc, "n_test": int(len(test[0])), "fit": fit_settings,
                "base_checkpoint": {"folder": base_dir, "copied_layers": copied}, "cr_search": str(path), **provenance()})
            row["checkpoint"] = str(cand_dir)
        shutil.rmtree(cand_dir / "_backup", ignore_errors=True)
        done[key] = row
        _write(path, header, done, alpha, threshold)  # after every candidate: the resume point
    table = _write(path, header, done, alpha, threshold)
    plot_search(table, out_dir / PLOT_NAME)
    return table


def _score(rows, base_accuracy, alpha, threshold):
    """Fill normalised g/φ, R and acceptance into ``rows`` (Algorithm 1 after training); the chosen row."""
    if not rows:
        return None
    g = [r["g"] for r in rows]
    phi = [r["phi"] for r in rows]
    acc = [r["accuracy"] for r in rows]
    r_values = estimator_table(g, phi, acc, base_accuracy, alpha=alpha, threshold=threshold)
    for row, gn, pn, rv in zip(rows, normalize_unit(g), normalize_unit(phi), r_values):
        row.update({"g_norm": float(gn), "phi_norm": float(pn), "drop": base_accuracy - row["accuracy"],
                    "accepted": bool(base_accuracy - row["accuracy"] < threshold), "R": float(rv)})
    accepted = [r for r in rows if r["accepted"]]
    return min(accepted, key=lambda r: (r["R"], -r["accuracy"])) if accepted else None


def _write(path, header, done, alpha, threshold):
    rows = sorted(done.values(), key=lambda r: (-r["cr1"], -r["cr2"]))
    choice = _score(rows, header["base_model"]["accuracy"], alpha, threshold)
    table = {**header, "candidates": rows,
             "choice": None if choice is None else {k: choice[k] for k in
                                                    ("cr1", "cr2", "label", "k1", "k2", "accuracy", "drop", "R",
                                                     "checkpoint")},
             "choice_note": None if choice is not None else "every candidate exceeded the accuracy-drop threshold"}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=2, default=float))
    tmp.replace(path)
    return table


def plot_search(table, path):
    """R and accuracy per candidate, and CR1 x CR2 coloured by R (rejected: x, chosen: star)."""
    rows = table["candidates"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.arange(len(rows))
    r = np.array([row["R"] for row in rows])
    acc = np.array([100 * row["accuracy"] for row in rows])
    ok = np.array([row["accepted"] for row in rows])
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(idx, r, color="C0", marker="o", ms=4, label="R")
    ax1.scatter(idx[~ok], r[~ok], marker="x", color="red", zorder=3, label="rejected (R = 1)")
    ax1.set(xlabel="candidate", ylabel="R (smaller: more robust)")
    ax1.set_xticks(idx, [row["label"] for row in rows], rotation=70, fontsize=7)
    ax2 = ax1.twinx()
    ax2.plot(idx, acc, color="C1", marker="s", ms=3, label="accuracy")
    ax2.axhline(100 * table["base_model"]["accuracy"], color="C1", ls=":", lw=1, label="base accuracy")
    ax2.set_ylabel("test accuracy (%)")
    lines = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="best")
    ax1.set_title(f"α={table['alpha']}, T={100 * table['threshold']:g} %")
    l1 = np.log2([row["cr1"] for row in rows])
    l2 = np.log2([row["cr2"] for row in rows])
    sc = ax3.scatter(l1[ok], l2[ok], c=r[ok], cmap="viridis", vmin=0, vmax=1, s=60, edgecolors="k")
    ax3.scatter(l1[~ok], l2[~ok], marker="x", color="red", s=50, label="rejected")
    if table.get("choice"):
        ax3.scatter([np.log2(table["choice"]["cr1"])], [np.log2(table["choice"]["cr2"])], marker="*", s=260,
                    facecolors="none", edgecolors="orange", linewidths=2, label="chosen")
    fig.colorbar(sc, ax=ax3, label="R")
    for axis, values, name in ((ax3.xaxis, l1, "cr1"), (ax3.yaxis, l2, "cr2")):
        ticks = sorted(set(values.tolist()))
        axis.set_ticks(ticks, [ratio_label(2.0 ** t) for t in ticks], fontsize=7)
    ax3.set(xlabel="CR1 (last hidden FC)", ylabel="CR2 (logits)", title="candidates (log scale)")
    ax3.grid(alpha=0.3)
    ax3.legend(fontsize=7)
    budget = table["budget"]
    fig.suptitle(f"Compression-ratio search, {len(rows)} candidates"
                 + (f" (reduced budget: {budget['epochs']} epoch(s), grid {budget['grid_size']}/"
                    f"{budget['grid_size_full']})" if budget["reduced"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
