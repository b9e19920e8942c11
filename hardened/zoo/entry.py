"""Typed registry entries: a released checkpoint or view as a frozen record, validated when it is made.

`REGISTRY` is written as plain dicts (data, as timm's ``default_cfgs``); at import each becomes a
`ZooEntry` through `ZooEntry.from_dict`, which is where an entry's own rules live (`entry_problems`).
Rules across entries (unique names and aliases, a view's base is a registered checkpoint) stay in
`hardened.zoo.registry.validate_registry`, which calls the same per-entry check.

Both records are read-only `Mapping`s with the keys the dict had, so ``entry["dataset"]``,
``entry.get("revision")`` and ``"base" in entry`` read as before; `to_dict` gives the plain,
JSON-ready dict.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Optional

#: Transforms a view can apply to its base's weights or activations.
VIEW_TRANSFORMS = ("gi1", "gi2", "gi3", "logits_augmentation", "sap", "bit_depth", "median", "weight_quant")
#: Transforms whose strength ``eps`` is an integer, with its smallest and largest value.
_INTEGER_STRENGTH = {"bit_depth": (1, 8), "median": (2, 9), "weight_quant": (1, 16)}
#: Optional keys of a view spec besides "transform" and "eps".
VIEW_OPTIONAL_KEYS = ("seed", "layers", "resample")
_ENTRY_KEYS = ("repo_id", "aliases", "arch", "defense", "dataset", "summary", "revision", "sha256", "config_sha256",
               "base", "view")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class _RecordMapping(Mapping):
    """Mapping access to a frozen dataclass: the keys are the fields `_present` keeps."""

    def _present(self):
        raise NotImplementedError

    def __getitem__(self, key):
        present = self._present()
        if key not in present:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._present())

    def __len__(self):
        return len(self._present())


@dataclass(frozen=True)
class ViewSpec(_RecordMapping):
    """What a view does to its base: a transform, its strength and its randomness.

    Attributes:
        transform: One of `VIEW_TRANSFORMS`.
        eps: The transform's strength: GI's epsilon, logits augmentation's tau (>= 1), SAP's ratio of draws to
            activations (> 0), bits per pixel (``bit_depth``) or per weight index (``weight_quant``), or the
            median window's side (``median``).
        seed: Seed of the transform's random draw (GI3's U, SAP's samples).
        layers: The layers it applies to, if not the transform's default.
        resample: GI3's resampling mode, if not the default.
    """

    transform: str
    eps: float
    seed: Optional[int] = None
    layers: Optional[tuple] = None
    resample: Optional[str] = None

    def _present(self):
        return [f.name for f in fields(self) if f.name in ("transform", "eps") or getattr(self, f.name) is not None]

    def to_dict(self):
        return {k: list(self[k]) if isinstance(self[k], tuple) else self[k] for k in self}


@dataclass(frozen=True)
class ZooEntry(_RecordMapping):
    """One released model of the zoo.

    Attributes:
        repo_id: Hub repository ``org/name`` (a view's holds its card only).
        arch: Builder name (``"cnn7"``, ``"resnet18"``).
        defense: Defense token of the name (``"hash-gi3"``, ``"none"``).
        dataset: Canonical dataset name.
        summary: One line for ``hardened list`` and the card.
        aliases: Other names that resolve to it.
        revision: Hub commit of a checkpoint (``None``: ``main``); views have none.
        sha256: sha256 of a checkpoint's ``model.safetensors``.
        config_sha256: sha256 of its ``config.json``, if pinned.
        base: A view's base checkpoint name.
        view: A view's `ViewSpec`.
    """

    repo_id: str
    arch: str
    defense: str
    dataset: str
    summary: str
    aliases: tuple = ()
    revision: Optional[str] = None
    sha256: Optional[str] = None
    config_sha256: Optional[str] = None
    base: Optional[str] = None
    view: Optional[ViewSpec] = None

    @property
    def is_view(self):
        return self.base is not None

    def _present(self):
        always = ["repo_id", "aliases", "arch", "defense", "dataset", "summary"]
        if self.is_view:
            return always + ["base", "view"]
        return always + ["revision", "sha256"] + (["config_sha256"] if self.config_sha256 is not None else [])

    @classmethod
    def from_dict(cls, name, entry):
        """Validate one raw registry dict and type it.

        Raises:
            ValueError: every problem of the entry (`entry_problems`), in one message.
        """
        if isinstance(entry, ZooEntry):
            return entry
        problems = entry_problems(name, entry)
        if problems:
            raise ValueError(f"Invalid zoo registry entry {name!r}:\n  - " + "\n  - ".join(problems))
        view = entry.get("view")
        if view is not None:
            view = ViewSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in view.items()})
        return cls(**{k: v for k, v in entry.items() if k not in ("aliases", "view")},
                   aliases=tuple(entry.get("aliases", ())), view=view)

    def to_dict(self):
        """A plain dict (lists, no records), as the registry source writes it."""
        out = {k: self[k] for k in self}
        out["aliases"] = list(self.aliases)
        if self.view is not None:
            out["view"] = self.view.to_dict()
        return out


def entry_problems(name, entry):
    """The problems of one registry entry on its own (the cross-entry rules are `validate_registry`'s)."""
    if not isinstance(entry, Mapping):
        return [f"{name!r}: entry must be a dict, got {type(entry).__name__}"]
    problems = []
    unknown = set(entry) - set(_ENTRY_KEYS)
    if unknown:
        problems.append(f"{name!r}: unknown keys {sorted(unknown)}")
    for key in ("repo_id", "arch", "defense", "dataset", "summary"):
        if not isinstance(entry.get(key), str):
            problems.append(f"{name!r}: {key} must be a string, got {entry.get(key)!r}")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, (list, tuple)) or not all(isinstance(a, str) for a in aliases):
        problems.append(f"{name!r}: aliases must be a list of names, got {aliases!r}")
    repo_id = entry.get("repo_id")
    if isinstance(repo_id, str) and not _REPO_ID.match(repo_id):
        problems.append(f"{name!r}: repo_id must look like 'org/name', got {repo_id!r}")
    if "base" in entry:
        problems += _view_problems(name, entry)
    else:
        for key in ("sha256", "config_sha256"):
            value = entry.get(key)
            if (key == "sha256" or value is not None) and not (isinstance(value, str) and _SHA256.match(value)):
                problems.append(f"{name!r}: {key} must be 64 lower-case hex characters, got {value!r}")
        revision = entry.get("revision")
        if revision is not None and not (isinstance(revision, str) and _COMMIT.match(revision)):
            problems.append(f"{name!r}: revision must be None or a 40-hex Hub commit sha, got {revision!r}")
    return problems


def _view_problems(name, entry):
    problems = []
    if not isinstance(entry.get("base"), str):
        problems.append(f"{name!r}: view base must be a model name, got {entry.get('base')!r}")
    for key in ("sha256", "config_sha256", "revision"):
        if key in entry:
            problems.append(f"{name!r}: a view holds no weights, so it must not have a {key}")
    view = entry.get("view")
    if not isinstance(view, Mapping):
        return problems + [f"{name!r}: a view entry needs a 'view' dict (transform, eps, seed)"]
    transform = view.get("transform")
    if transform not in VIEW_TRANSFORMS:
        problems.append(f"{name!r}: unknown view transform {transform!r}; expected one of {VIEW_TRANSFORMS}")
    eps = view.get("eps")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        problems.append(f"{name!r}: view eps must be a number >= 0, got {eps!r}")
    elif transform == "logits_augmentation" and eps < 1:
        problems.append(f"{name!r}: logits_augmentation's eps is tau and must be >= 1, got {eps!r}")
    elif transform == "sap" and not eps > 0:
        problems.append(f"{name!r}: sap's eps is the ratio of draws to activations and must be > 0, got {eps!r}")
    elif transform in _INTEGER_STRENGTH:
        lo, hi = _INTEGER_STRENGTH[transform]
        if int(eps) != eps or not lo <= eps <= hi:
            problems.append(f"{name!r}: {transform}'s eps (bits or window size) must be an integer in [{lo}, {hi}], "
                            f"got {eps!r}")
    unknown = set(view) - {"transform", "eps", *VIEW_OPTIONAL_KEYS}
    if unknown:
        problems.append(f"{name!r}: unknown view keys {sorted(unknown)}")
    return problems
