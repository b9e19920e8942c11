"""Contract tests over every released model in ``model_cards/`` (run on each backend).

A release must load offline from its bundled folder, pass its integrity
checks, and give the logits recorded in its ``probe.json`` (written on the
backend that made the release) on the current backend. Randomized releases
(HRS, dropout, noise, SAP) are probed with their randomness switched off, by
the same `probe_logits` that wrote the probe, so the check is deterministic.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import hardened
from hardened.layers import randomized_layers
from hardened.recipes.release import PROBE_NAME, probe_images, probe_logits
from hardened.zoo import registry
from hardened.zoo.hub import model_cards_dir

# A DES comparison folder (model_cards/des-*/, checked by tests/test_des.py) is not a release.
FOLDERS = sorted(p for p in model_cards_dir().glob("*") if p.is_dir() and not (p / "des.json").is_file()) \
    if model_cards_dir().is_dir() else []
PARAMS = [pytest.param(p, id=p.name) for p in FOLDERS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no released models in model_cards/ yet"))]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: registry names resolve to the bundled copies."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    warnings.simplefilter("ignore", hardened.zoo.hub.HubFallbackWarning)


@pytest.mark.parametrize("folder", PARAMS)
def test_release_is_registered(folder):
    entry = registry.get_entry(folder.name)
    if "base" not in entry:
        assert entry["sha256"] == json.loads((folder / "metadata.json").read_text())["files"]["model.safetensors"]["sha256"]


@pytest.mark.parametrize("folder", PARAMS)
def test_release_predictions_match_probe(folder):
    probe_file = folder / PROBE_NAME
    assert probe_file.is_file(), f"{folder.name}: no {PROBE_NAME}; write it with hardened.recipes.release"
    probe = json.loads(probe_file.read_text())
    model = hardened.from_pretrained(folder.name)
    x = probe_images(tuple(probe["input_shape"]), probe["n"], probe["seed"])
    # A randomized model's probe was recorded with its randomness off, and says so.
    n_random = len(randomized_layers(model))
    assert probe.get("randomized_layers", 0) == n_random, (
        f"{folder.name}: {n_random} randomized layers but the probe records {probe.get('randomized_layers', 0)}; "
        "rewrite it with hardened.recipes.release.write_probe")
    assert probe.get("randomness", "off") == "off"
    logits = probe_logits(model, x)
    assert all(layer.randomness for layer in randomized_layers(model)), "probe_logits must restore the randomness"
    expected = np.asarray(probe["logits"])
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(logits, expected, atol=1e-4 * scale, rtol=0)
    assert np.argmax(logits, axis=-1).tolist() == probe["argmax"]
