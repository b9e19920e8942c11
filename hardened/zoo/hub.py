"""Loading zoo models by name from the Hugging Face Hub (or the bundled copies), and pushing them.

    model = hardened.from_pretrained("hash-gi3-mnist")          # registry name or alias
    model = hardened.from_pretrained("path/to/checkpoint")      # a folder written by save_pretrained
    model = hardened.from_pretrained("hash-mnist", num_classes=3)   # new head, same defense, to fine-tune

Downloads go through ``huggingface_hub.snapshot_download``, so the standard HF
cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` apply. When the
Hub cannot be reached the project's bundled copy ``model_cards/<name>/`` is
used instead, with a `HubFallbackWarning`. Either way the files must match the
sha256 recorded in the registry, so a different revision or a modified file is
refused with an `IntegrityError`.
"""

import json
import os
import warnings
from pathlib import Path

from hardened.layers.gi import GIView, apply_gi, logits_augmentation
from hardened.layers.squeeze import input_transform_view, quantize_weights
from hardened.layers.stochastic import sap_view
from hardened.zoo import registry as _reg
from hardened.zoo.checkpoint import (
    CONFIG_NAME,
    METADATA_NAME,
    WEIGHTS_NAME,
    IntegrityError,
    load_pretrained,
    model_from_config_text,
    sha256_file,
    verify_checkpoint,
)

VIEW_NAME = "view.json"
README_NAME = "README.md"
HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME, README_NAME]
VIEW_OVERRIDES = ("eps", "seed")
HEAD_LAYER = "logits"


class HubFallbackWarning(UserWarning):
    """The Hub could not be reached, so the project's bundled copy of a checkpoint is used."""


def model_cards_dir():
    """The folder of bundled model cards: ``$HARDENED_MODEL_CARDS`` or ``<repo>/model_cards``."""
    env = os.environ.get("HARDENED_MODEL_CARDS")
    if env:
        return Path(env).expanduser()
    # hardened/zoo/hub.py -> the repository root.
    return Path(__file__).resolve().parents[2] / "model_cards"


def bundled_dir(name, registry=None):
    """The bundled folder ``model_cards/<canonical>/`` of a registry name (it may not exist)."""
    return model_cards_dir() / _reg.resolve_name(name, registry)


def _hub_errors():
    """The exceptions that mean "the Hub (or this repo/revision on it) is not available".

    Collected by name, since they moved between huggingface_hub versions
    (requests before 1.0, httpx after).
    """
    classes = [ConnectionError, TimeoutError]  # OfflineModeIsEnabled subclasses ConnectionError
    try:
        import huggingface_hub.errors as hf_errors
    except ImportError:  # pragma: no cover - very old huggingface_hub
        import huggingface_hub.utils as hf_errors
    for name in ("LocalEntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
                 "EntryNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError"):
        cls = getattr(hf_errors, name, None)
        if isinstance(cls, type):
            classes.append(cls)
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        exceptions = getattr(mod, "exceptions", mod)
        classes.extend(getattr(exceptions, n) for n in names if isinstance(getattr(exceptions, n, None), type))
    return tuple(classes)


def _has_checkpoint(folder):
    return all((folder / n).is_file() for n in (CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME))


def _download(canonical, entry, revision, cache_dir, local_files_only):
    """Locate a checkpoint entry's folder: the Hub (via the HF cache), else the bundled copy.

    Returns:
        ``(folder, source)`` where source describes where the files came from.
    """
    repo_id = entry["repo_id"]
    rev = revision or entry.get("revision") or "main"
    try:
        from huggingface_hub import snapshot_download

        kwargs = {"repo_id": repo_id, "revision": rev, "allow_patterns": HUB_FILES, "cache_dir": cache_dir}
        if local_files_only is not None:
            kwargs["local_files_only"] = bool(local_files_only)
        folder = Path(snapshot_download(**kwargs))
        if _has_checkpoint(folder):
            return folder, {"kind": "hub", "repo_id": repo_id, "revision": rev, "path": str(folder)}
        hub_error = FileNotFoundError(
            f"the snapshot {folder} lacks {[n for n in HUB_FILES[:3] if not (folder / n).is_file()]}")
    except ImportError as err:
        hub_error = err
    except _hub_errors() as err:
        hub_error = err
    bundled = model_cards_dir() / canonical
    reason = f"{type(hub_error).__name__}: {str(hub_error).splitlines()[0] if str(hub_error) else ''}"
    if _has_checkpoint(bundled):
        warnings.warn(
            f"The Hugging Face Hub was unreachable or lacks {repo_id} at revision {rev!r}, needed for "
            f"{canonical!r} ({reason}); "
            f"using the bundled local copy {bundled}. It is checked against the registry's sha256 all the same.",
            HubFallbackWarning,
            stacklevel=3,
        )
        return bundled, {"kind": "bundled", "repo_id": repo_id, "revision": rev, "path": str(bundled)}
    raise FileNotFoundError(
        f"Could not load {canonical!r}: (1) the Hub download of {repo_id} at revision {rev!r} failed "
        f"({reason}); (2) there is no bundled copy at {bundled} (set HARDENED_MODEL_CARDS to the folder of "
        "model cards). Connect to the Hub (unset HF_HUB_OFFLINE, check HF_ENDPOINT), or pass a checkpoint "
        "folder path instead."
    ) from hub_error


def _check_registry_hashes(folder, canonical, entry, source):
    """Refuse files whose sha256 differs from the registry's (another revision, or tampered)."""
    where = (f"{source['kind']} copy at {folder}, repo {source['repo_id']} revision {source['revision']!r}")
    for filename, key in ((WEIGHTS_NAME, "sha256"), (CONFIG_NAME, "config_sha256")):
        expected = entry.get(key)
        if not expected:
            continue
        found = sha256_file(folder / filename)
        if found != expected:
            raise IntegrityError(
                f"{filename} of {canonical!r} has sha256 {found}, but the registry expects {expected} "
                f"({where}): this revision is not the registered release, or the file was modified. "
                "Load the registered revision (revision=None), delete the cached copy to re-download it, "
                "or update the registry if a new release was pushed."
            )


def _check_overrides(overrides, view):
    allowed = ("num_classes",) + (VIEW_OVERRIDES if view else ())
    unknown = sorted(set(overrides) - set(VIEW_OVERRIDES)) if view else sorted(overrides)
    if unknown:
        extra = (f" and, for view models, {list(VIEW_OVERRIDES)}" if not view else
                 f" and the view overrides {list(VIEW_OVERRIDES)}")
        raise TypeError(
            f"from_pretrained() got unexpected keyword argument(s) {unknown}; it accepts "
            f"revision, cache_dir, local_files_only, verify, {allowed[0]}{extra}."
        )


def apply_view(model, view):
    """Apply a registry view spec (``{"transform", "eps", "seed", ...}``) to a loaded model.

    ``eps`` is the transform's strength: GI's ε, logits augmentation's τ,
    for ``"sap"`` the ratio of draws to activations (`hardened.layers.sap_view`),
    for ``"bit_depth"`` / ``"weight_quant"`` the bits, for ``"median"`` the window side
    (`hardened.layers.squeeze`).

    Returns:
        A new model that shares ``model``'s weights (see `hardened.layers.apply_gi`), except
        ``"weight_quant"``, which holds its own quantized copy.
    """
    transform = view.get("transform")
    if transform == "sap":
        return sap_view(model, ratio=view["eps"], seed=view.get("seed", 0), layers=view.get("layers"))
    if transform == "logits_augmentation":
        layers = view.get("layers")
        if isinstance(layers, (list, tuple)):  # registry entries may list the one layer
            if len(layers) != 1:
                raise ValueError(f"logits_augmentation scales one layer, got layers={layers!r}.")
            layers = layers[0]
        return logits_augmentation(model, tau=view["eps"], layer=layers)
    if transform in ("gi1", "gi2", "gi3"):
        return apply_gi(model, transform, view["eps"], layers=view.get("layers"),
                        resample=view.get("resample", "once"), seed=view.get("seed", 0))
    if transform in ("bit_depth", "median"):
        return input_transform_view(model, transform, view["eps"])
    if transform == "weight_quant":
        return quantize_weights(model, view["eps"])
    raise ValueError(f"Unknown view transform {transform!r}; expected one of {_reg.VIEW_TRANSFORMS}.")


def _finish_view(base, view, name):
    model = apply_view(base, view)
    meta = dict(getattr(base, "hardened_metadata", None) or {})
    meta["base"] = meta.get("name") or base.name
    meta["name"] = name
    meta["view"] = dict(view)
    model.hardened_metadata = meta
    return model


def _looks_like_path(text):
    # Registry names never contain a slash.
    text = str(text)
    return os.sep in text or "/" in text or text.startswith((".", "~"))


def from_pretrained(name_or_dir, *, revision=None, cache_dir=None, local_files_only=None, num_classes=None,
                    verify=True, registry=None, **overrides):
    """Load a zoo model by registry name or alias, or from a checkpoint folder.

    Args:
        name_or_dir: A registry name or alias (``"hash-gi3-mnist"``,
            case-insensitive), a checkpoint folder written by
            `hardened.save_pretrained`, or a view folder holding ``view.json``.
        revision: Hub revision to download (default: the registry's, else
            ``"main"``). The files must still match the registry's sha256.
        cache_dir: Hugging Face cache folder (default: the standard HF cache).
        local_files_only: True: use the HF cache only; None: follow
            ``HF_HUB_OFFLINE``.
        num_classes: Give the model a fresh ``logits`` layer with this many
            classes, of the same class and defense settings (for fine-tuning);
            every other weight is kept. For a view, the base gets the new head
            and the view is re-applied; after fine-tuning the base, re-apply it
            yourself: ``apply_gi(model, ...)``.
        verify: Check the files' sha256 (leave on).
        registry: The registry dict (default: `hardened.zoo.registry.REGISTRY`).
        **overrides: For views only: ``eps`` and ``seed`` of the transform.

    Returns:
        A `keras.Model` (logits) with ``model.hardened_metadata``; for views
        it holds a ``view`` key with the transform.

    Raises:
        ValueError: unknown name (with suggestions).
        FileNotFoundError: neither the Hub nor a bundled copy has the files.
        IntegrityError: a file differs from the registered one.
        TypeError: an unknown keyword argument.
    """
    path = Path(os.fspath(name_or_dir)).expanduser()
    if path.is_dir():
        view_file = path / VIEW_NAME
        if view_file.is_file():
            hub_kwargs = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only,
                          "verify": verify, "registry": registry}
            return _from_view_folder(path, num_classes, hub_kwargs, overrides)
        _check_overrides(overrides, view=False)
        model = load_pretrained(path, verify=verify)
        return rebuild_head(model, num_classes) if num_classes is not None else model
    if path.exists():
        raise ValueError(f"{name_or_dir} is a file; pass the checkpoint folder that holds {CONFIG_NAME}, "
                         f"{WEIGHTS_NAME} and {METADATA_NAME}.")
    table = _reg.REGISTRY if registry is None else registry
    if _looks_like_path(name_or_dir) and str(name_or_dir).lower() not in _reg._lookup_table(table):
        raise FileNotFoundError(f"Checkpoint folder {name_or_dir} does not exist.")

    canonical = _reg.resolve_name(str(name_or_dir), registry)
    entry = table[canonical]
    if _reg.is_view(entry):
        _check_overrides(overrides, view=True)
        view = {**entry["view"], **overrides}
        # The revision, if any, is the base checkpoint's: a view has no weights of its own.
        base = from_pretrained(entry["base"], revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, num_classes=num_classes, verify=verify,
                               registry=registry)
        return _finish_view(base, view, canonical)

    _check_overrides(overrides, view=False)
    folder, source = _download(canonical, entry, revision, cache_dir, local_files_only)
    if verify:
        _check_registry_hashes(folder, canonical, entry, source)
    model = load_pretrained(folder, verify=verify, expected_weights_sha256=entry.get("sha256") if verify else None)
    model.hardened_metadata = {**model.hardened_metadata, "name": canonical, "source": source}
    return rebuild_head(model, num_classes) if num_classes is not None else model


def _from_view_folder(folder, num_classes, hub_kwargs, overrides):
    """A view card folder: ``view.json`` names the base (registry name or folder) and the transform."""
    try:
        spec = json.loads((folder / VIEW_NAME).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / VIEW_NAME} is not valid JSON ({err}).") from None
    if not isinstance(spec, dict) or "base" not in spec or "transform" not in spec:
        raise ValueError(f"{folder / VIEW_NAME} must hold an object with 'base' and 'transform' (and 'eps', "
                         f"'seed'); found {spec!r}.")
    _check_overrides(overrides, view=True)
    view = {k: v for k, v in spec.items() if k != "base"}
    view.update(overrides)
    base_name = spec["base"]
    # A base given as a relative path is relative to the view folder.
    local = folder / base_name
    base = from_pretrained(local if local.is_dir() else base_name, num_classes=num_classes, **hub_kwargs)
    return _finish_view(base, view, spec.get("name", folder.name))


def rebuild_head(model, num_classes):
    """The same model with a fresh ``logits`` layer for ``num_classes`` classes.

    The head keeps its class and defense settings (a `HashedDense` stays
    hashed at the same compression, a `PrunableDense` stays prunable): the
    model is rebuilt from its config with the ``logits`` layer's ``units``
    changed, and every other layer's weights are copied over.

    Args:
        model: A functional model with a top-level layer named ``logits``
            (as built by `hardened.models`), without GI views.
        num_classes: New number of classes.

    Returns:
        The new model (or ``model`` itself when it already has that many outputs).
    """
    import keras

    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    num_classes = int(num_classes)
    if any(isinstance(layer, GIView) for layer in model.layers):
        raise ValueError(
            "rebuild_head needs the plain model, but this one has GI views: rebuild the head of the base "
            "(hardened.layers.remove_gi(model)), fine-tune it, then re-apply the view with apply_gi(model, ...)."
        )
    if int(model.output_shape[-1]) == num_classes:
        return model
    names = [layer.name for layer in model.layers]
    if HEAD_LAYER not in names:
        raise ValueError(
            f"Model '{model.name}' has no top-level layer named {HEAD_LAYER!r} (found {names}); rebuild_head "
            "works on models built by hardened.models, whose classifier layer is named 'logits'."
        )
    config = keras.saving.serialize_keras_object(model)
    layers = config.get("config", {}).get("layers", [])
    head = [spec for spec in layers if spec.get("config", {}).get("name") == HEAD_LAYER]
    if len(head) != 1 or "units" not in head[0]["config"]:
        raise ValueError(f"The {HEAD_LAYER!r} layer of '{model.name}' has no 'units' setting to change "
                         f"(class {type(model.get_layer(HEAD_LAYER)).__name__}).")
    head[0]["config"]["units"] = num_classes
    new = model_from_config_text(json.dumps(config), source=f"the config of '{model.name}'")
    for layer in model.layers:
        if layer.name != HEAD_LAYER and layer.weights:
            new.get_layer(layer.name).set_weights(layer.get_weights())
    meta = dict(getattr(model, "hardened_metadata", None) or {})
    meta["head"] = {"num_classes": num_classes, "previous_num_classes": int(model.output_shape[-1]),
                    "note": "fresh 'logits' layer: fine-tune before use"}
    meta["output_shape"] = [num_classes]
    meta.pop("class_names", None)
    new.hardened_metadata = meta
    return new


def model_info(name, registry=None):
    """What the zoo knows about ``name``: its entry, canonical name and bundled copy.

    Returns:
        A dict: the entry's fields plus ``name`` (canonical), ``kind``
        (``"checkpoint"`` or ``"view"``), ``bundled`` (whether
        ``model_cards/<name>/`` holds a usable copy) and ``card`` (the bundled
        README path, or None).
    """
    canonical = _reg.resolve_name(name, registry)
    entry = _reg.get_entry(canonical, registry)
    folder = model_cards_dir() / canonical
    view = _reg.is_view(entry)
    bundled = (folder / VIEW_NAME).is_file() if view else _has_checkpoint(folder)
    card = folder / README_NAME
    return {"name": canonical, "kind": "view" if view else "checkpoint", **entry.to_dict(),
            "bundled": bool(bundled or (view and card.is_file())), "bundled_path": str(folder),
            "card": str(card) if card.is_file() else None}


def push_to_hub(name_or_dir, repo_id=None, *, token=None, revision=None, private=False, commit_message=None,
                registry=None):
    """Upload a bundled model card folder (or any checkpoint folder) to the Hub.

    Args:
        name_or_dir: A registry name (its folder ``model_cards/<name>/`` is
            pushed) or a folder path.
        repo_id: Target ``org/name`` (default: the registry's ``repo_id``;
            required for a folder).
        token: Hugging Face token (default: the logged-in one / ``HF_TOKEN``).
        revision: Branch to push to (default: ``main``).
        private: Create the repo as private.
        commit_message: Default: "Upload <name> with hardened".

    Returns:
        The `CommitInfo` of the upload (its ``oid`` is the commit sha to
        record as the registry's ``revision``).
    """
    from huggingface_hub import HfApi

    path = Path(os.fspath(name_or_dir)).expanduser()
    if path.is_dir():
        folder, label = path, path.name
    else:
        canonical = _reg.resolve_name(str(name_or_dir), registry)
        entry = _reg.get_entry(canonical, registry)
        folder, label = model_cards_dir() / canonical, canonical
        repo_id = repo_id or entry.get("repo_id")
        if not folder.is_dir():
            raise FileNotFoundError(f"No bundled folder {folder} for {canonical!r}: save the checkpoint there "
                                    "(hardened.save_pretrained) or pass a folder path.")
    if repo_id is None:
        raise ValueError(f"Pushing the folder {folder} needs repo_id='org/name' (e.g. '{_reg.HUB_ORG}/{label}').")
    if not _reg._REPO_ID.match(repo_id):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}.")
    if (folder / VIEW_NAME).is_file():
        json.loads((folder / VIEW_NAME).read_text())  # a view card: no weights, only check it parses
    elif (folder / WEIGHTS_NAME).exists() or (folder / CONFIG_NAME).exists():
        verify_checkpoint(folder)  # never push files that fail their own checksums
    elif not (folder / README_NAME).is_file():
        raise FileNotFoundError(f"{folder} holds neither a checkpoint, a {VIEW_NAME} nor a {README_NAME}.")
    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, repo_type="model", private=private)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision,
                             commit_message=commit_message or f"Upload {label} with hardened")
