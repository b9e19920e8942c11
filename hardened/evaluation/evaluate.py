"""`evaluate`: run a suite of attacks and the masking checks, write results.json/.md/.png."""

import datetime
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from hardened.attacks.transfer import TransferAttack
from hardened.data import canonical_dataset, load_dataset
from hardened.evaluation import _run, masking, metrics, records, suites
from hardened.evaluation.reuse import ROW_FIELDS, reusable_rows, row_fingerprint_of
from hardened.layers.squeeze import input_transform_layers
from hardened.layers.stochastic import randomized_layers
from hardened.validation import check_images

RESULTS_JSON = "results.json"
PARTIAL_JSON = "results.partial.json"
RESULTS_MD = "results.md"
PLOT_PNG = "success_vs_eps.png"
SCHEMA_VERSION = 1
ESTIMATOR_SUBSET = 100


def evaluate(model, data=None, suite="hash-gi", n=500, seed=0, batch_size=128, out_dir=None, dataset=None,
             progress=True, quick=False, only=None, data_dir=None, strict=False, masking_subset=None, resume=False,
             adaptive_eps=None, eot_samples=None, transfer_source=None, reuse=None):
    """Evaluate the robustness of a classifier with a suite of attacks.

    The first ``n`` images are used. Every evaluation also runs the cheap
    gradient-masking checks (`hardened.evaluation.masking`) and records the
    seed-000 robustness-estimator terms g and φ.

    Args:
        model: A `keras.Model` mapping images in [0, 1] (NHWC) to logits.
        data: ``(x, y)``: images in [0, 1] and integer labels. If omitted, the
            test split of the dataset named by ``dataset`` or by the model's
            ``hardened_metadata`` is loaded with `hardened.data.load_dataset`.
        suite: ``"hash-gi"``, ``"adaptive"``, ``"full"``, ``"prune-la"`` or
            ``"defendpp"`` (see `hardened.evaluation.suites`; the old names ``"seed"``,
            ``"seed002"``, ``"seed003"`` work with a DeprecationWarning).
        n: Number of test images (the first ``n``); attacks with a paper-given
            count (e.g. 100 source images for targeted attacks) use at most that.
        seed: Seed of every random draw (reset before each attack).
        batch_size: Images per forward pass / attack batch.
        out_dir: If given, write ``results.json``, ``results.md`` and
            ``success_vs_eps.png`` there (created if needed).
        dataset: Dataset name: chooses the MNIST or CIFAR-10 attack settings
            and, without ``data``, the images. Default: from the metadata, else
            guessed from the input shape (recorded in the results).
        progress: Show tqdm progress bars.
        quick: Lower the number of images of the expensive attacks (recorded
            in ``budget``); ε, steps and restarts are never changed.
        only: Names of the suite's attacks to run (e.g. ``["FGSM", "BIM"]``);
            ``None`` runs all. The masking checks always run.
        data_dir: Passed to `load_dataset` when the data are loaded.
        strict: Re-raise an attack's error instead of recording it.
        masking_subset: Images used by the masking checks (default: min(n, 100)).
        resume: With ``out_dir``: after each attack its entry is saved to
            ``results.partial.json``; with ``resume=True`` an attack whose
            entry is there for the same model weights, images, seed, batch size,
            backend and attack parameters is taken from it instead of being run
            again (each attack is seeded on its own, so the entry is what a new
            run would give). Long suites can so be finished over several runs.
        adaptive_eps: ℓ∞ ε of the adaptive attacks (and of the masking checks'
            black-box run) instead of the dataset family's; ``None`` keeps it.
        eot_samples: Gradient samples of the EOT attacks (default 10, seed 004).
        transfer_source: A `keras.Model` (same input shape and classes) that the
            suite's grey-box transfer attacks (``AttackSpec.transfer``, e.g.
            seed 002's examples from the unpruned model) craft their examples
            on; success is measured on ``model``. Without it those attacks are
            recorded as skipped, with the reason. Which model it was is
            recorded in ``transfer_source`` and is part of the resume key.
        reuse: Complete results of earlier evaluations (dicts, e.g. a card's
            ``results_adaptive.json``): an attack whose row there was run on the
            same checkpoint, images (``data_source``, n), seed, batch size,
            backend and settings with the same parameters (`hardened.evaluation.reuse`)
            is taken from it instead of being run; the others (e.g. rows whose
            attack the suite has changed since) are run. Rows taken are listed
            in the results' ``reused`` field.

    Returns:
        The results dict (see ``results.json``): ``clean_accuracy``, ``n``,
        ``backend``, ``seed``, ``suite``, ``versions``, ``attacks``, ``flags``,
        ``gradient_masking``, ``eps_sweep`` and more.

    Raises:
        ValueError: unknown suite, ``n < 1``, images outside [0, 1], labels out
            of range or of the wrong shape, no data and no dataset to load.
        TypeError: ``model`` or ``transfer_source`` is not a Keras model, or integer images.
    """
    import keras

    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if not isinstance(model, keras.Model):
        raise TypeError(f"evaluate() needs a keras.Model, got {type(model).__name__}.")
    if suite not in suites.SUITES:
        raise ValueError(f"Unknown suite {suite!r}; expected one of {', '.join(suites.SUITES)}.")
    _check_positive_int("n", n)
    _check_positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if masking_subset is not None:
        _check_positive_int("masking_subset", masking_subset)
    suites.check_adaptive_overrides(adaptive_eps, eot_samples)

    metadata = getattr(model, "hardened_metadata", None) or {}
    dataset_name = dataset if dataset is not None else _metadata_dataset(metadata)
    x, y, data_source = _resolve_data(model, data, dataset_name, n, data_dir)
    input_shape = tuple(model.input_shape[1:])
    num_classes = int(model.output_shape[-1])
    source_info = _check_transfer_source(transfer_source, input_shape, num_classes)
    x = check_images(x, input_shape, name="images")
    y = _check_labels(y, len(x), num_classes)
    x, y = x[:n], y[:n]
    family, family_how = suites.family_for(_known_family(dataset_name), input_shape)
    settings = suites.settings(family)
    if adaptive_eps is not None and float(adaptive_eps) != settings["adaptive_eps"]:
        settings["adaptive_eps"] = float(adaptive_eps)
        settings["adaptive_eps_source"] = f"{float(adaptive_eps):.6g} set by the caller (adaptive_eps)"

    # A randomized layer's SeedGenerator state advances with every call and set_random_seed does not reset
    # it: restore the initial states wherever the global seed is reset, so each attack (and a resumed one)
    # sees the same random stream whatever ran before it.
    reseed = _randomness_resetter(model, int(seed))
    reseed()
    pred_clean = metrics.predict_labels(model, x, batch_size)
    clean_acc = float(np.mean(pred_clean == y))
    randomness = masking.forward_randomness(model, x[: min(len(x), 16)])
    randomized = bool(randomness["differs"] or randomness["randomized_layers"])
    backend = keras.backend.backend()

    specs = suites.build_suite(suite, dataset=_known_family(dataset_name), input_shape=input_shape,
                               randomized=randomized, backend=backend, quick=quick,
                               adaptive_eps=adaptive_eps, eot_samples=eot_samples,
                               bpda_layers=input_transform_layers(model))
    specs = suites.select(specs, only)
    for spec in specs:
        if spec.transfer and transfer_source is None and not spec.skip_reason:
            spec.skip_reason = suites.TRANSFER_SKIP_REASON  # recorded as skipped, never dropped

    # Cheap masking checks first: they are the evaluation's sanity check.
    reseed()
    subset = masking_subset or min(len(x), masking.SWEEP_SUBSET)
    sweep_eps = sorted(set(settings["sweep_eps"]) | {settings["linf_eps"], settings["adaptive_eps"]})
    cheap = masking.run_masking_checks(model, x, y, sweep_eps, black_box_eps=settings["adaptive_eps"],
                                       pred_clean=pred_clean, subset=subset, batch_size=batch_size,
                                       progress=progress, seed=int(seed))

    from tqdm.auto import tqdm

    run_key = _json_clean({"checkpoint": _checkpoint_info(metadata), "model_name": getattr(model, "name", None),
                           "n": int(len(x)), "labels_sha": _sha(y), "images_sha": _sha(x), "seed": int(seed),
                           "batch_size": int(batch_size), "backend": backend, "settings": family,
                           # Only with a source, so the key of every run without one is unchanged.
                           **({"transfer_source": source_info} if source_info is not None else {})})
    partial_path = Path(out_dir) / PARTIAL_JSON if out_dir is not None else None
    done = _load_partial(partial_path, run_key) if resume and partial_path is not None else {}
    run_identity = {"checkpoint": run_key["checkpoint"], "model_name": run_key["model_name"], "n": run_key["n"],
                    "seed": int(seed), "batch_size": int(batch_size), "backend": backend, "settings": family,
                    "data_source": data_source, "transfer_source": source_info}
    reusable = reusable_rows(reuse, run_identity)
    reused = []
    saved = {}
    entries = []
    for spec in tqdm(specs, desc="attacks", disable=not progress):
        fingerprint = _spec_fingerprint(spec)
        previous = done.get(spec.name)
        if previous is not None and previous["fingerprint"] == fingerprint and previous["entry"]["status"] == "ok":
            entry = previous["entry"]
        elif spec.name in reusable and reusable[spec.name][0] == row_fingerprint_of(spec, seed):
            entry = reusable[spec.name][1]
            reused.append(spec.name)
        else:
            reseed()  # each attack reproducible on its own
            entry = _run_spec(spec, model, x, y, pred_clean, num_classes, batch_size, progress, seed, strict,
                              transfer_source, source_info)
        entries.append(entry)
        if partial_path is not None:
            saved[spec.name] = {"fingerprint": fingerprint, "entry": entry}
            _write_partial(partial_path, run_key, {**done, **saved})

    flags = masking.finalize_flags(cheap, entries)
    reseed()
    estimator = _estimator_terms(model, x, batch_size)

    capped = [e["name"] for e in entries if e.get("quick_capped")]
    results = {
        "schema_version": SCHEMA_VERSION,
        "model_name": getattr(model, "name", None),
        "checkpoint": _checkpoint_info(metadata),
        "dataset": dataset_name,
        "data_source": data_source,
        "settings": family,
        "settings_source": family_how,
        "eps": {"seed_linf": settings["linf_eps"], "seed_linf_source": settings["eps_source"],
                "adaptive_linf": settings["adaptive_eps"], "adaptive_linf_source": settings["adaptive_eps_source"]},
        "suite": suite,
        "transfer_source": source_info,
        "only": list(only) if isinstance(only, (list, tuple)) else only,
        **({"reused": reused} if reused else {}),
        "n": int(len(x)),
        "n_requested": int(n),
        "n_correct": int(np.sum(pred_clean == y)),
        "clean_accuracy": clean_acc,
        "seed": int(seed),
        "batch_size": int(batch_size),
        "backend": backend,
        "versions": package_versions(),
        "budget": {
            "quick": bool(quick),
            "profile": quick if isinstance(quick, str) else None,
            "caps": {k: int(v) for k, v in quick.items()} if isinstance(quick, dict) else None,
            "note": ((f"quick profile {quick!r}: " if isinstance(quick, str) else "quick budget: ") +
                     "fewer images for " + ", ".join(capped) +
                     "; every other parameter is the full suite's") if quick and capped else
                    ("quick budget requested; no attack of this selection is capped" if quick else "full budget"),
            "capped_attacks": capped,
        },
        "randomized": randomized,
        "randomness": randomness,
        "attacks": entries,
        "flags": flags,
        "gradient_masking": masking.gradient_masking(flags),
        "masking_thresholds": dict(masking.THRESHOLDS),
        "eps_sweep": masking.public_sweep(cheap["eps_sweep"]),
        "masking_black_box": cheap.get("square"),
        "masking_errors": cheap["errors"],
        "robustness_estimator": estimator,
        "summary": _summary(entries, clean_acc),
        "started_at": started_at,
        "seconds": None,
    }
    results["seconds"] = round(time.perf_counter() - started, 3)
    results = _json_clean(results)
    if out_dir is not None:
        write_results(results, out_dir)
        if partial_path.exists():
            partial_path.unlink()  # the run is complete: results.json holds every entry
    return results


# ----------------------------------------------------------------- randomness
def _randomness_resetter(model, seed):
    """A function that resets Keras' global seed and every randomized layer's generator to its initial state."""
    import keras

    states = []
    for layer in randomized_layers(model):
        generator = getattr(layer, "seed_generator", None)
        if generator is None:
            continue
        initial = getattr(generator, "_hardened_initial_state", None)
        if initial is None:
            current = np.array(keras.ops.convert_to_numpy(generator.state))
            seed0 = getattr(generator, "_initial_seed", None)  # Keras' SeedGenerator starts at [seed, 0]
            initial = np.array([seed0, 0], dtype=current.dtype) if isinstance(seed0, int) else current
            generator._hardened_initial_state = initial  # an unseeded generator: its state when first seen
        states.append((generator.state, initial))

    def reseed():
        keras.utils.set_random_seed(seed)
        for variable, value in states:
            variable.assign(value)

    return reseed


# ----------------------------------------------------------------- resuming
def _sha(array):
    import hashlib

    arr = np.ascontiguousarray(array)
    return hashlib.sha256(arr.tobytes() + str((arr.dtype, arr.shape)).encode()).hexdigest()


def _spec_fingerprint(spec):
    """What decides an attack's result besides the model and images (compared as JSON)."""
    fields = {k: getattr(spec, k) for k in (*ROW_FIELDS, "params", "skip_reason")}
    if spec.transfer:  # only when set: the fingerprints of the other specs (and their saved entries) stay valid
        fields["transfer"] = True
    return json.loads(json.dumps(_json_clean(_run._jsonable(fields)), sort_keys=True, default=str))


def _load_partial(path, run_key):
    """Entries of an earlier, interrupted run of the same evaluation (``{}`` if none or different)."""
    if path is None or not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if saved.get("run_key") != json.loads(json.dumps(run_key, sort_keys=True, default=str)):
        return {}  # other weights, images, seed or backend: nothing can be reused
    return records.upgrade_results(saved).get("attacks", {})  # rows saved under an old suite name


def _write_partial(path, run_key, attacks):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_json_clean({"run_key": run_key, "attacks": attacks}), sort_keys=True, default=str))
    tmp.replace(path)  # atomic: an interrupted write never leaves a half file


# ----------------------------------------------------------------- running one spec
def _run_spec(spec, model, x, y, pred_clean, num_classes, batch_size, progress, seed, strict, transfer_source=None,
              source_info=None):
    entry = {
        "name": spec.name, "suite": spec.suite, "attack": spec.attack, "params": _run._jsonable(spec.params),
        "targeted": spec.targeted, "norm": spec.norm, "eps": spec.eps, "black_box": spec.black_box,
        "wrapper": spec.wrapper, "wrapper_params": _run._jsonable(spec.wrapper_params), "threat": spec.threat,
        "metric": spec.metric, "source": spec.source, "note": spec.note, "max_images": spec.max_images,
        "paper_images": spec.paper_images, "quick_capped": spec.quick_capped,
        "status": "ok", "success_rate": None, "n_images": 0, "n_attacked": 0, "n_success": 0,
        "mean_l0": None, "mean_l2": None, "mean_linf": None, "seconds": 0.0,
    }
    if spec.transfer:
        entry["transfer_source"] = (source_info or {}).get("model_name")
        entry["source_success_rate"] = None
    if spec.skip_reason:
        entry.update(status="skipped", reason=spec.skip_reason)
        return entry
    start = time.perf_counter()
    try:
        if spec.targeted:
            n_src = len(x) if spec.max_images is None else spec.max_images
            attack = _run.make_attack(spec, seed)
            entry["params"] = _run.attack_params(attack, spec.params)
            if spec.transfer:
                attack = TransferAttack(attack, transfer_source)
            _fit_substitute(spec, attack, model, x, batch_size)
            res = _run.targeted(attack, model, x, y, pred_clean, n_src, num_classes, batch_size, progress)
            entry["n_images"] = res["n_source_images"]
        else:
            cap = len(x) if spec.max_images is None else min(len(x), spec.max_images)
            xs, ys, ps = x[:cap], y[:cap], pred_clean[:cap]
            attack = _run.make_attack(spec, seed)
            entry["params"] = _run.attack_params(attack, spec.params)
            if spec.transfer:
                attack = TransferAttack(attack, transfer_source)
            _fit_substitute(spec, attack, model, x, batch_size)
            res = _run.untargeted(attack, model, xs, ys, ps, batch_size, progress)
            entry["n_images"] = int(cap)
            if getattr(attack, "last_log", None) is not None:  # AutoAttack: robust accuracy after each component
                entry["components"] = _run._jsonable(attack.last_log)
            if spec.metric == "deepfool_rho":
                entry["rho"] = metrics.deepfool_robustness(res["_x"], res["_x_adv"], res["_success"])
        for key in ("success_rate", "n_attacked", "n_success", "mean_l0", "mean_l2", "mean_linf"):
            entry[key] = res[key]
        if spec.transfer:
            entry["source_success_rate"] = attack.source_success_rate()
    except Exception as err:
        if strict:
            raise
        entry.update(status="error", error=f"{type(err).__name__}: {err}")
    entry["seconds"] = round(time.perf_counter() - start, 3)
    return entry


def _fit_substitute(spec, attack, model, x, batch_size):
    """Seed 000 trains the substitute on the first 150 *test* images, correct or not.

    Without this the attack would fit on the first images it is asked to
    attack (only correctly classified ones).
    """
    if spec.attack == "substitute" and hasattr(attack, "fit"):
        attack.fit(model, x[: int(attack.params.get("n_seed", 150))], batch_size=max(batch_size, 1))


def _check_transfer_source(source, input_shape, num_classes):
    """Validate ``transfer_source`` and describe it for results.json (``None`` when not given)."""
    if source is None:
        return None
    import keras

    if not isinstance(source, keras.Model):
        raise TypeError(f"transfer_source must be a keras.Model (the model the grey-box examples are crafted on), "
                        f"got {type(source).__name__}; load it with hardened.from_pretrained(NAME_OR_DIR).")
    src_shape, src_classes = tuple(source.input_shape[1:]), int(source.output_shape[-1])
    if src_shape != tuple(input_shape) or src_classes != int(num_classes):
        raise ValueError(f"transfer_source must take the evaluated model's inputs and classes: it has input shape "
                         f"{src_shape} and {src_classes} outputs, the evaluated model {tuple(input_shape)} and "
                         f"{num_classes}. Pass the source model trained on the same dataset.")
    metadata = getattr(source, "hardened_metadata", None) or {}
    info = _checkpoint_info(metadata)
    return {"model_name": (info or {}).get("model_name") or getattr(source, "name", None),
            "weights_sha256": (info or {}).get("weights_sha256"),
            "recorded_from": "hardened_metadata" if info else "argument",
            # Digest of the weights as loaded: tells two sources apart even without metadata (resume key).
            "weights_digest": _weights_digest(source)}


def _weights_digest(model):
    import hashlib

    import keras

    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(str((variable.path, value.dtype.str, value.shape)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------- data and metadata
def _metadata_dataset(metadata):
    ds = metadata.get("dataset") if isinstance(metadata, dict) else None
    if isinstance(ds, dict):
        ds = ds.get("name")
    return ds if isinstance(ds, str) and ds else None


def _known_family(dataset_name):
    """The dataset name if it has attack settings, else None (then the input shape decides)."""
    if dataset_name is not None and canonical_dataset(dataset_name, strict=False) in suites.FAMILIES:
        return dataset_name
    return None


def _resolve_data(model, data, dataset_name, n, data_dir):
    if data is not None:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"data must be a pair (x, y) of images and labels, got {type(data).__name__}"
                             + (f" of length {len(data)}" if hasattr(data, "__len__") else "") + ".")
        x, y = data
        return x, y, "argument"
    if dataset_name is None:
        raise ValueError(
            "evaluate() got no data and the model's hardened_metadata names no dataset. Pass data=(x, y) "
            "or dataset='mnist' / 'fashion_mnist' / 'cifar10'."
        )

    x, y = load_dataset(dataset_name, data_dir=data_dir, split="test")
    return x[:n], y[:n], f"hardened.data.load_dataset({dataset_name!r}, split='test')[:{n}]"


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


def _check_labels(y, n_images, num_classes):
    try:
        arr = np.asarray(y)
    except Exception as err:
        raise ValueError(f"labels must be an array of integers, got {type(y).__name__} ({err}).") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (N,) (integer class indices, not one-hot), got shape {arr.shape}.")
    if len(arr) != n_images:
        raise ValueError(f"Got {n_images} images but {len(arr)} labels; they must match.")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)
                                   or (np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0))):
        raise ValueError(f"labels must be integer class indices, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (the model has {num_classes} outputs); "
                         f"found values in [{arr.min()}, {arr.max()}].")
    return arr


def _checkpoint_info(metadata):
    if not metadata:
        return None
    files = metadata.get("files", {}) if isinstance(metadata.get("files"), dict) else {}
    info = {"model_name": metadata.get("model_name"),
            "weights_sha256": files.get("model.safetensors", {}).get("sha256"),
            "recipe": metadata.get("recipe")}
    if metadata.get("view"):  # a view's results say which transform, eps and seed made it from its base
        info["view"] = dict(metadata["view"])
    return info


def package_versions():
    """Versions of Python, Keras, the backends and the evaluation's dependencies."""
    import importlib.metadata as md

    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "backend": keras.backend.backend()}
    for pkg in ("hardened", "numpy", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "torchattacks",
                "matplotlib", "tqdm"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


# ----------------------------------------------------------------- summaries
def _estimator_terms(model, x, batch_size):
    xs = x[: min(len(x), ESTIMATOR_SUBSET)]
    try:
        terms = metrics.robustness_terms(model, xs, batch_size)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"}
    return {**terms, "n": int(len(xs)), "note": "raw g and phi of seed 000; R = alpha*g + (1-alpha)*phi needs "
                                                "g and phi normalised across candidate models "
                                                "(metrics.estimator_table)"}


def _summary(entries, clean_acc):
    ok = [e for e in entries if e["status"] == "ok" and e["success_rate"] is not None
          and not _isnan(e["success_rate"])]
    white_seed = [e for e in ok if e["suite"] == "hash-gi" and not e["black_box"] and e["metric"] == "success_rate"]
    worst = {}
    for e in ok:
        if e["targeted"] or e["eps"] is None:
            continue
        w = worst.setdefault(e["threat"], {"max_success_rate": 0.0, "attack": None})
        if w["attack"] is None or e["success_rate"] > w["max_success_rate"]:
            w.update(max_success_rate=e["success_rate"], attack=e["name"])
    for w in worst.values():
        # Robust accuracy against the strongest single attack of this threat model.
        w["robust_accuracy_upper_bound"] = clean_acc * (1.0 - w["max_success_rate"])
    return {
        "mean_white_box_success_rate_seed": float(np.mean([e["success_rate"] for e in white_seed]))
        if white_seed else None,
        "mean_white_box_attacks": [e["name"] for e in white_seed],
        "worst_case_by_threat": worst,
        "deepfool_rho": next((e.get("rho") for e in ok if e["metric"] == "deepfool_rho"), None),
        "n_errors": sum(e["status"] == "error" for e in entries),
        "n_skipped": sum(e["status"] == "skipped" for e in entries),
    }


def _isnan(v):
    return isinstance(v, float) and math.isnan(v)


def _json_clean(obj):
    """NaN/inf -> None and numpy scalars -> Python, so results.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_clean(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


# ----------------------------------------------------------------- writing
def write_results(results, out_dir):
    """Write ``results.json``, ``results.md`` and ``success_vs_eps.png`` into ``out_dir``.

    Returns:
        Dict of the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / RESULTS_JSON, "md": out / RESULTS_MD, "png": out / PLOT_PNG}
    paths["json"].write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    paths["md"].write_text(render_markdown(results))
    plot_sweep(results, paths["png"])
    return paths


def _pct(v):
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v, fmt="{:.4g}"):
    return "–" if v is None else fmt.format(v)


def render_markdown(results):
    """The markdown report of a results dict."""
    lines = [f"# Robustness evaluation: {results.get('model_name')}", ""]
    budget = results["budget"]
    lines += [
        f"- dataset: {results.get('dataset') or 'unspecified'} ({results['data_source']}); attack settings: "
        f"{results['settings']} ({results['settings_source']})",
        f"- suite: `{results['suite']}`; n = {results['n']} images; seed {results['seed']}; "
        f"backend {results['backend']}; keras {results['versions'].get('keras')}",
        *_transfer_lines(results),
        f"- budget: {budget['note']}",
        f"- clean accuracy: {_pct(results['clean_accuracy'])} ({results['n_correct']}/{results['n']})",
        f"- randomized model: {'yes' if results['randomized'] else 'no'}",
    ]
    triggered = [f["name"] for f in results["flags"] if f["triggered"]]
    verdict = "**YES**" if results["gradient_masking"] else "no"
    lines.append(f"- gradient masking: {verdict}" + (f" (flags: {', '.join(triggered)})" if triggered else ""))
    summ = results["summary"]
    if summ.get("mean_white_box_success_rate_seed") is not None:
        lines.append(f"- mean white-box success rate of the seed attacks: "
                     f"{_pct(summ['mean_white_box_success_rate_seed'])}")
    lines += ["", "## Attacks", "",
              "| attack | suite | threat model | images | attacked | success rate | mean L2 | mean L∞ | mean L0 "
              "| time (s) | status |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in results["attacks"]:
        status = e["status"]
        if status == "skipped":
            status = f"skipped: {e.get('reason')}"
        elif status == "error":
            status = f"error: {e.get('error')}"
        extra = f" (ρ = {e['rho']:.4g})" if e.get("rho") is not None else ""
        lines.append(
            f"| {e['name']}{extra} | {e['suite']} | {e['threat']} | {e['n_images']} | {e['n_attacked']} | "
            f"{_pct(e['success_rate'])} | {_num(e['mean_l2'])} | {_num(e['mean_linf'])} | "
            f"{_num(e['mean_l0'], '{:.1f}')} | {e['seconds']:.1f} | {status.replace('|', '/')} |")
    lines += ["", "## Gradient-masking checks", "", "| check | triggered | detail |", "|---|---|---|"]
    for f in results["flags"]:
        mark = "**yes**" if f["triggered"] else ("no" if f["evaluated"] else "n/a")
        lines.append(f"| {f['name']} | {mark} | {str(f['detail']).replace('|', '/')} |")
    sweep = results["eps_sweep"]
    names = list(sweep["curves"])
    lines += ["", f"## Success rate vs ε (l∞, PGD {sweep['steps']} steps, {sweep['n_attacked']} correct images "
                  "of the masking subset)", "",
              "| ε | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for i, eps in enumerate(sweep["eps"]):
        lines.append(f"| {eps:.4g} | " + " | ".join(_pct(sweep["curves"][k][i]) for k in names) + " |")
    if results.get("masking_errors"):
        lines += ["", "Masking-check errors (the dependent checks are marked n/a):", ""]
        lines += [f"- {k}: {v}" for k, v in results["masking_errors"].items()]
    lines += ["", "## Parameters", ""]
    for e in results["attacks"]:
        wrapper = f" wrapped in `{e['wrapper']}({json.dumps(e['wrapper_params'])})`" if e["wrapper"] else ""
        count = (f"; images: {e['n_images']}" + (f" (papers: {e['paper_images']})" if e.get("paper_images") else "")
                 + (" [quick budget]" if e.get("quick_capped") else ""))
        lines.append(f"- **{e['name']}** (`{e['attack']}`{wrapper}): `{json.dumps(e['params'], sort_keys=True)}`"
                     + count
                     + (f"; {e['source']}" if e.get("source") else "") + (f"; note: {e['note']}" if e.get("note")
                                                                            else ""))
    est = results.get("robustness_estimator") or {}
    if "g" in est:
        lines += ["", f"Robustness-estimator terms (seed 000, {est['n']} images): g = {est['g']:.4g}, "
                      f"φ = {est['phi']:.4g} (raw; normalise across candidates before combining)."]
    lines += ["", f"Versions: {json.dumps(results['versions'], sort_keys=True)}", ""]
    return "\n".join(lines)


def _transfer_lines(results):
    source = results.get("transfer_source")
    if source:
        sha = source.get("weights_sha256") or "not recorded"
        return [f"- transfer source (grey-box rows crafted on it): `{source.get('model_name')}` "
                f"(weights sha256 {sha}, from {source.get('recorded_from')})"]
    if any(e.get("reason") == suites.TRANSFER_SKIP_REASON for e in results.get("attacks", [])):
        return ["- transfer source: none given, so the grey-box transfer rows are skipped"]
    return []


def plot_sweep(results, path):
    """Plot success rate vs ε of the masking sweep (and the suite's l∞ attacks) to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly: no pyplot, so the caller's backend is untouched.
    fig = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    sweep = results["eps_sweep"]
    for name, rates in sweep["curves"].items():
        pts = [(e, 100 * r) for e, r in zip(sweep["eps"], rates) if r is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{name} (sweep)")
    markers = "xP*^vsD<>ph+1234"
    points = [e for e in results["attacks"] if e["status"] == "ok" and e["norm"] == "linf"
              and e["eps"] is not None and not e["targeted"] and e["success_rate"] is not None]
    for i, e in enumerate(points):  # legend entries, not annotations: many attacks share a point
        ax.scatter([e["eps"]], [100 * e["success_rate"]], marker=markers[i % len(markers)], s=36, zorder=3,
                   label=f"{e['name']} ({e['suite']}, n={e['n_attacked']})")
    ax.set_xscale("log")
    ax.set_xlabel("ε (l∞)")
    ax.set_ylabel("attack success rate (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"{results.get('model_name')} — {results.get('dataset') or results['settings']}, "
                 f"n = {sweep['n_attacked']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(str(path))
