"""Contracts over the zoo registry and the recipe dict: every entry, not a hand-picked list.

- every registry entry resolves under its name and aliases, names a bundled folder, and loads offline with
  its sha256 checked (a view: through its base);
- every recipe names a known kind and dataset, its base (if any) is a recipe, and its model builds with the
  recipe's own arguments (no training).
"""

import importlib
import warnings

import keras
import numpy as np
import pytest

import hardened
from hardened.data import dataset_info
from hardened.models import build_model
from hardened.recipes import presets
from hardened.recipes.run import KIND_RUNNERS
from hardened.zoo import registry
from hardened.zoo.hub import HubFallbackWarning, model_cards_dir

ENTRIES = sorted(registry.REGISTRY)
RECIPES = sorted(presets.RECIPES)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    warnings.simplefilter("ignore", HubFallbackWarning)


@pytest.mark.parametrize("name", ENTRIES)
def test_registry_entry_resolves_and_loads(name):
    entry = registry.get_entry(name)
    assert registry.resolve_name(name) == name
    for alias in entry.get("aliases", []):
        assert registry.resolve_name(alias) == name, alias
    assert entry["repo_id"] == f"{registry.HUB_ORG}/{name}"
    assert (model_cards_dir() / name).is_dir(), f"{name} is registered but not bundled"
    model = hardened.from_pretrained(name)  # checks the weights' sha256 against the registry
    assert isinstance(model, keras.Model)
    logits = keras.ops.convert_to_numpy(model(np.zeros((1, *model.input_shape[1:]), "float32"), training=False))
    assert logits.shape == (1, 10) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates_and_builds(name):
    recipe = presets.RECIPES[name]
    assert recipe["kind"] in ("base", "hash", *KIND_RUNNERS), recipe["kind"]
    info = dataset_info(recipe["dataset"])
    if recipe.get("base") is not None:
        assert recipe["base"] in presets.RECIPES, f"{name}: base {recipe['base']!r} is not a recipe"
    runner = importlib.import_module(KIND_RUNNERS[recipe["kind"]]) if recipe["kind"] in KIND_RUNNERS else None
    if runner is not None and hasattr(runner, "check_recipe"):
        runner.check_recipe(name, dict(recipe))
    if "builder" in recipe and "kwargs" in recipe:
        model = build_model(recipe["builder"], **recipe["kwargs"])
        assert tuple(model.input_shape[1:]) == tuple(info.input_shape), (name, model.input_shape, info.input_shape)
        assert model.output_shape[-1] == info.num_classes


def test_fit_settings_are_fit_models_defaults():
    # One declaration of the training settings: FitSettings' defaults are fit_model's keyword defaults.
    import inspect

    from hardened.recipes.train import FIT_DEFAULTS, FIT_KEYS, check_fit_keys, fit_model

    params = inspect.signature(fit_model).parameters
    assert set(FIT_KEYS) <= set(params)
    assert {k: params[k].default for k in FIT_DEFAULTS} == FIT_DEFAULTS
    with pytest.raises(TypeError, match="lrr"):
        check_fit_keys({"lrr": 0.1})
    check_fit_keys({"rounds": 3}, extra=("rounds",))
    for name, recipe in presets.RECIPES.items():
        check_fit_keys(recipe.get("fit", {}), f"fit keys of {name}")


def test_recipe_names_are_release_names():
    # One name per thing: hyphenated like the registry; the old underscore spelling still resolves, with a warning.
    from hardened.recipes.run import get_recipe

    assert not [name for name in RECIPES if "_" in name]
    released = [name for name in RECIPES if name in registry.REGISTRY]
    assert "cnn7-fashion-mnist" in released and "cnn7-hash-fashion-mnist" in released
    with pytest.warns(DeprecationWarning, match="cnn7-fashion-mnist"):
        assert get_recipe("cnn7-fashion_mnist") == presets.RECIPES["cnn7-fashion-mnist"]
