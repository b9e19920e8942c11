"""Registry entries are typed, frozen records (issue 20 item 4) that still read like the dicts they came from."""

import dataclasses
import json

import pytest

from hardened.zoo import registry
from hardened.zoo.entry import ViewSpec, ZooEntry


def test_every_entry_is_a_frozen_record_equal_to_its_plain_dict():
    for name, entry in registry.REGISTRY.items():
        assert isinstance(entry, ZooEntry), name
        plain = entry.to_dict()
        json.dumps(plain)  # JSON-ready: no records inside
        assert ZooEntry.from_dict(name, plain) == entry
        assert dict(entry)["dataset"] == plain["dataset"] and set(entry) == set(plain)
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.dataset = "cifar10"
    view = registry.get_entry("hash-gi3-mnist")
    assert view.is_view and isinstance(view.view, ViewSpec) and view["view"]["transform"] == "gi3"
    assert "sha256" not in view and view.get("revision") is None
    checkpoint = registry.get_entry("hash-mnist")
    assert not checkpoint.is_view and "base" not in checkpoint and len(checkpoint["sha256"]) == 64


def test_from_dict_names_every_problem_of_a_broken_entry():
    bad = {"repo_id": "no-org", "arch": "cnn7", "defense": "hash", "dataset": "mnist", "summary": "x",
           "aliases": "hash-mnist", "sha256": "abc", "colour": "red"}
    with pytest.raises(ValueError) as err:
        ZooEntry.from_dict("broken", bad)
    message = str(err.value)
    for expected in ("repo_id must look like", "aliases must be a list", "sha256 must be 64", "unknown keys"):
        assert expected in message
    view = {"base": "cnn7-mnist", "view": {"transform": "gi3", "eps": -1}, "repo_id": "o/v", "arch": "cnn7",
            "defense": "gi3", "dataset": "mnist", "summary": "x", "sha256": "0" * 64}
    with pytest.raises(ValueError, match=r"(?s)holds no weights.*eps must be a number >= 0"):
        ZooEntry.from_dict("v", view)
