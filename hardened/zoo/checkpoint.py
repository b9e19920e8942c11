"""Hub-ready checkpoint folders: ``config.json``, ``model.safetensors``, ``metadata.json``.

Nothing here unpickles or runs code from a file: the architecture is a Keras
config deserialized with ``safe_mode=True`` (only registered classes, no
lambdas), the weights are safetensors, and the weights' sha256 recorded in the
metadata is checked before anything is loaded.
"""

import datetime
import hashlib
import json
import os
import platform
from pathlib import Path

import keras
import numpy as np
from keras import ops

import hardened.layers  # noqa: F401  (registers the custom layers)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METADATA_NAME = "metadata.json"
FORMAT_VERSION = 1


class IntegrityError(ValueError):
    """A checkpoint file does not match the checksum that was recorded for it."""


def sha256_file(path, chunk_size=1 << 20):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _sublayers(layer):
    # Direct children only; Keras keeps them in tracking order, which is the
    # same for a model built by a builder and one rebuilt from its config.
    return layer._flatten_layers(include_self=False, recursive=False)


def named_variables(model):
    """Map stable keys to the model's variables (weights and non-trainable state).

    Keys are the chain of layer names from the model down to the variable's
    owner, then the variable's name: ``"fc1/kernel"``,
    ``"switch1/block1_path0/conv1/kernel"``. Unlike ``Variable.path`` they do
    not depend on the name scope a layer happened to be built in. Random
    generator states are left out: they are run-time state, not weights.

    Raises:
        ValueError: two variables would get the same key (duplicate layer names).
    """
    keys = {}
    seen = set()

    def visit(layer, prefix):
        children = _sublayers(layer)
        child_vars = {id(v) for child in children for v in child.variables}
        for v in layer.weights:
            if id(v) in child_vars or id(v) in seen:
                continue
            seen.add(id(v))
            key = f"{prefix}{v.name}"
            if key in keys:
                raise ValueError(
                    f"Two variables share the checkpoint key {key!r}: give the layers "
                    "of this model distinct, explicit names."
                )
            keys[key] = v
        for child in children:
            visit(child, f"{prefix}{child.name}/")

    if not model.built:
        raise ValueError("The model is not built: call it once (or build it) before saving.")
    visit(model, "")
    return keys


def _versions():
    import importlib.metadata as md

    versions = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend()}
    for pkg in ("hardened", "numpy", "safetensors", "tensorflow-cpu", "tensorflow", "jax", "torch"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def save_pretrained(model, directory, metadata=None):
    """Write ``model`` as a Hub-ready checkpoint folder.

    Args:
        model: A built `keras.Model` made of built-in and `hardened` layers.
        directory: Folder to write (created if needed; files in it are replaced).
        metadata: Optional dict merged into ``metadata.json`` (dataset,
            preprocessing, class names, recipe, command, ...).

    Returns:
        The folder as a `Path`.
    """
    from safetensors.numpy import save_file

    if not isinstance(model, keras.Model):
        raise TypeError(f"save_pretrained expects a keras.Model, got {type(model).__name__}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    config_text = json.dumps(config, indent=1, sort_keys=True)
    (directory / CONFIG_NAME).write_text(config_text)

    tensors = {}
    for key, var in named_variables(model).items():
        value = ops.convert_to_numpy(var)
        if value.dtype not in (np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.int8, np.bool_):
            value = value.astype(np.float32)
        tensors[key] = np.ascontiguousarray(value)
    weights_path = directory / WEIGHTS_NAME
    save_file(tensors, str(weights_path), metadata={"format": "hardened-keras", "version": str(FORMAT_VERSION)})

    meta = {
        "format_version": FORMAT_VERSION,
        "model_name": model.name,
        "num_parameters": int(sum(int(np.prod(v.shape)) for v in model.trainable_weights)),
        "input_shape": list(model.input_shape[1:]) if hasattr(model, "input_shape") else None,
        "output_shape": list(model.output_shape[1:]) if hasattr(model, "output_shape") else None,
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    meta.update(metadata or {})
    meta["files"] = {
        WEIGHTS_NAME: {"sha256": sha256_file(weights_path), "bytes": weights_path.stat().st_size},
        CONFIG_NAME: {"sha256": sha256_file(directory / CONFIG_NAME)},
    }
    (directory / METADATA_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
    return directory


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serializable.")


def read_metadata(directory):
    """The parsed ``metadata.json`` of a checkpoint folder."""
    path = Path(directory) / METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {METADATA_NAME} in {directory}: not a hardened checkpoint folder.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the checkpoint is corrupt.") from None


def verify_checkpoint(directory, expected_weights_sha256=None):
    """Check a checkpoint folder's files against their recorded sha256.

    Args:
        directory: The folder.
        expected_weights_sha256: A checksum from elsewhere (the zoo registry)
            that the weights must also match.

    Returns:
        The metadata dict.

    Raises:
        FileNotFoundError: a file is missing.
        IntegrityError: a file's sha256 differs from the recorded one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Checkpoint folder {directory} does not exist.")
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME) if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Checkpoint folder {directory} lacks {missing}; a hardened checkpoint has "
            f"{CONFIG_NAME}, {WEIGHTS_NAME} and {METADATA_NAME} (written by save_pretrained)."
        )
    meta = read_metadata(directory)
    files = meta.get("files", {})
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        recorded = files.get(name, {}).get("sha256")
        if recorded is None:
            raise IntegrityError(f"{directory / METADATA_NAME} records no sha256 for {name}; refusing to load.")
        actual = sha256_file(directory / name)
        if actual != recorded:
            raise IntegrityError(
                f"{directory / name} has sha256 {actual}, but its metadata records {recorded}: the file "
                "was modified or corrupted. Re-download it (or re-save the model)."
            )
    if expected_weights_sha256 is not None and files[WEIGHTS_NAME]["sha256"] != expected_weights_sha256:
        raise IntegrityError(
            f"{directory / WEIGHTS_NAME} has sha256 {files[WEIGHTS_NAME]['sha256']}, but the registry "
            f"expects {expected_weights_sha256}: wrong revision or tampered file."
        )
    return meta


def model_from_config_text(text, source="config.json"):
    """Rebuild an (unbuilt-weights) model from a serialized config, safely."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source} is not valid JSON ({err}).") from None
    try:
        return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (TypeError, ValueError) as err:
        msg = str(err)
        unknown = _unknown_class(json.loads(text))  # Keras mutates the config it was given
        if unknown:
            raise ValueError(
                f"{source} names the layer class {unknown!r}, which is not a registered Keras or "
                "hardened layer. Only registered classes can be loaded (no code is executed from "
                "checkpoints); upgrade hardened if the checkpoint is newer than your install."
            ) from None
        raise ValueError(f"Could not rebuild the model from {source}: {msg}") from None


def _unknown_class(config):
    """The first class named in a config that is neither built into Keras nor registered."""
    import importlib

    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict):
                registered = node.get("registered_name")
                module = node.get("module") or ""
                if registered and "/" not in registered and ">" in registered:
                    if keras.saving.get_registered_object(registered) is None:
                        return registered
                elif module.startswith("keras"):
                    try:
                        if not hasattr(importlib.import_module(module), node["class_name"]):
                            return f"{module}.{node['class_name']}"
                    except ImportError:
                        return f"{module}.{node['class_name']}"
                elif module or registered:
                    return registered or f"{module}.{node['class_name']}"
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def load_pretrained(directory, verify=True, expected_weights_sha256=None):
    """Rebuild a model saved by `save_pretrained` on the current backend.

    Args:
        directory: Checkpoint folder.
        verify: Check the sha256 of the files first (leave on).
        expected_weights_sha256: Extra checksum the weights must match.

    Returns:
        The `keras.Model`, with its metadata dict as ``model.hardened_metadata``.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(os.fspath(directory))
    meta = verify_checkpoint(directory, expected_weights_sha256) if verify else read_metadata(directory)
    model = model_from_config_text((directory / CONFIG_NAME).read_text(), str(directory / CONFIG_NAME))
    if not model.built:
        raise ValueError(f"The model in {directory} could not be built from its config.")
    try:
        tensors = load_file(str(directory / WEIGHTS_NAME))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{directory / WEIGHTS_NAME} is not a readable safetensors file: {err}") from None
    variables = named_variables(model)
    missing = sorted(set(variables) - set(tensors))
    extra = sorted(set(tensors) - set(variables))
    if missing or extra:
        raise ValueError(
            f"{directory / WEIGHTS_NAME} does not match its config: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}."
        )
    for key, var in variables.items():
        value = tensors[key]
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(
                f"{directory / WEIGHTS_NAME}: {key!r} has shape {value.shape}, the model expects {tuple(var.shape)}."
            )
        var.assign(value.astype(var.dtype) if str(value.dtype) != var.dtype else value)
    model.hardened_metadata = meta
    return model
