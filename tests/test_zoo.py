"""The zoo: registry names, from_pretrained through the real huggingface_hub cache, fallback, integrity, views.

No network: the Hub is either a small fake Hub HTTP server on 127.0.0.1 (enough
of the API for ``snapshot_download``), a hand-made HF cache folder, or
unreachable (offline mode / a closed port), in which case the bundled copy in
``$HARDENED_MODEL_CARDS`` is used.
"""

import hashlib
import json
import shutil
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import keras
import numpy as np
import pytest

import hardened
from hardened.cli import main, resolve_model
from hardened.layers import HashedDense, apply_gi, logits_augmentation
from hardened.zoo import hub
from hardened.zoo import registry as reg
from hardened.zoo.checkpoint import IntegrityError, sha256_file

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants as hf_constants  # noqa: E402

NAME = "toy-hash-mnist"
VIEW = "toy-hash-gi3-mnist"
REPO = "hardened-zoo/toy-hash-mnist"
COMMIT = "a" * 40
OTHER_COMMIT = "b" * 40
HUB_FILES = ("config.json", "model.safetensors", "metadata.json", "README.md")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def tiny_model(seed=0):
    """Flatten -> Dense fc1 -> HashedDense fc2 -> HashedDense logits: GI-ready, fast on every backend."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 1), name="image")
    h = keras.layers.Flatten(name="flatten")(inp)
    h = keras.layers.Dense(12, activation="relu", name="fc1")(h)
    h = HashedDense(12, compression=1 / 4, seed=1, activation="relu", name="fc2")(h)
    out = HashedDense(10, compression=1 / 4, seed=2, name="logits")(h)
    return keras.Model(inp, out, name="toy_hash")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny model, its bundled copy ``cards/<NAME>/`` and test images."""
    root = tmp_path_factory.mktemp("zoo")
    model = tiny_model()
    cards = root / "cards"
    folder = hardened.save_pretrained(model, cards / NAME, metadata={"dataset": "mnist"})
    (folder / "README.md").write_text(f"# {NAME}\n")
    (cards / VIEW).mkdir()
    (cards / VIEW / "README.md").write_text(f"# {VIEW}\n")
    x = np.random.default_rng(0).random((4, 6, 6, 1), dtype=np.float32)
    return {"model": model, "folder": folder, "cards": cards, "x": x, "expected": to_numpy(model(x)),
            "sha256": sha256_file(folder / "model.safetensors"), "config_sha256": sha256_file(folder / "config.json")}


def make_registry(saved, **changes):
    entry = {"repo_id": REPO, "revision": None, "sha256": saved["sha256"], "config_sha256": saved["config_sha256"],
             "aliases": ["hash-mnist-toy"], "arch": "tiny", "defense": "hash", "dataset": "mnist",
             "summary": "tiny hashed MLP for tests"}
    entry.update(changes)
    return {
        NAME: entry,
        VIEW: {"base": NAME, "view": {"transform": "gi3", "eps": 0.2, "seed": 0}, "repo_id": f"hardened-zoo/{VIEW}",
               "aliases": ["hash-gi3-mnist"], "arch": "tiny", "defense": "hash-gi3", "dataset": "mnist",
               "summary": "GI3 view of the tiny hashed MLP"},
    }


@pytest.fixture
def zoo_env(saved, tmp_path, monkeypatch):
    """Bundled cards from the fixture, an empty HF cache, the Hub offline; the module registry set too."""
    monkeypatch.setenv("HARDENED_MODEL_CARDS", str(saved["cards"]))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    registry = make_registry(saved)
    monkeypatch.setattr(reg, "REGISTRY", registry)
    return {"registry": registry, "cache": tmp_path / "hf-cache"}


def _copy_cards(saved, tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    shutil.copytree(saved["cards"], cards)
    monkeypatch.setenv("HARDENED_MODEL_CARDS", str(cards))
    return cards


# ---------------------------------------------------------------- a fake Hub on 127.0.0.1

class FakeHub(ThreadingHTTPServer):
    """Serves ``repos = {repo_id: {"refs": {name: commit}, "commits": {commit: {file: bytes}}}}``.

    Implements what ``snapshot_download``/``hf_hub_download`` call: repo info at
    a revision, the recursive tree of a commit, and HEAD/GET of ``resolve`` URLs,
    with the Hub's headers (``X-Repo-Commit``, ``ETag``, ``X-Error-Code``).
    """

    daemon_threads = True

    def __init__(self, repos):
        self.repos = repos
        self.requests = []
        super().__init__(("127.0.0.1", 0), _FakeHubHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, code, head=False):
        self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code,
                                                                 "Content-Type": "application/json"}, head)

    def _resolve(self, repo_id, rev):
        repo = self.server.repos.get(repo_id)
        if repo is None:
            return None, "RepoNotFound"
        commit = repo["refs"].get(rev, rev)
        if commit not in repo["commits"]:
            return None, "RevisionNotFound"
        return commit, None

    def _handle(self, head):
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        self.server.requests.append((self.command, self.path))
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo_id = f"{parts[2]}/{parts[3]}"
            commit, error = self._resolve(repo_id, parts[5])
            if error:
                return self._error(error, head)
            files = self.server.repos[repo_id]["commits"][commit]
            if parts[4] == "revision":
                body = {"id": repo_id, "sha": commit, "private": False,
                        "siblings": [{"rfilename": name} for name in files]}
            else:
                body = [{"type": "file", "path": name, "size": len(data),
                         "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                        for name, data in files.items()]
            return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = f"{parts[0]}/{parts[1]}"
            commit, error = self._resolve(repo_id, parts[3])
            if error:
                return self._error(error, head)
            data = self.server.repos[repo_id]["commits"][commit].get("/".join(parts[4:]))
            if data is None:
                return self._error("EntryNotFound", head)
            return self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                          "Content-Type": "application/octet-stream"}, head)
        return self._error("RepoNotFound", head)

    def do_GET(self):
        self._handle(head=False)

    def do_HEAD(self):
        self._handle(head=True)


def _files(folder):
    return {name: (Path(folder) / name).read_bytes() for name in HUB_FILES}


@pytest.fixture
def fake_hub(saved, monkeypatch):
    """A served repo with ``main`` -> COMMIT (the saved model) and ``other`` -> a different model."""
    other_folder = hardened.save_pretrained(tiny_model(seed=5), Path(saved["cards"]).parent / "other")
    (other_folder / "README.md").write_text("# other\n")
    repos = {REPO: {"refs": {"main": COMMIT, "other": OTHER_COMMIT},
                    "commits": {COMMIT: _files(saved["folder"]), OTHER_COMMIT: _files(other_folder)}}}
    server = FakeHub(repos)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    yield server
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- Hub I/O

def test_served_repo_downloads_into_the_hf_cache_then_loads_offline(saved, zoo_env, fake_hub, monkeypatch):
    cache = zoo_env["cache"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", hub.HubFallbackWarning)
        model = hardened.from_pretrained(NAME, cache_dir=cache)
    np.testing.assert_allclose(to_numpy(model(saved["x"])), saved["expected"], rtol=1e-5, atol=1e-6)
    assert model.hardened_metadata["source"]["kind"] == "hub"
    # The standard huggingface_hub cache layout was written.
    storage = cache / "models--hardened-zoo--toy-hash-mnist"
    assert (storage / "refs" / "main").read_text() == COMMIT
    snapshot = storage / "snapshots" / COMMIT
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(HUB_FILES)
    assert (storage / "blobs" / saved["sha256"]).is_file()
    assert any(method == "GET" and "/resolve/" in path for method, path in fake_hub.requests)

    # Offline now: the cache answers, no request and no fallback.
    fake_hub.requests.clear()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hub.HubFallbackWarning)
        again = hardened.from_pretrained("HASH-MNIST-TOY", cache_dir=cache)
    assert fake_hub.requests == []
    assert again.hardened_metadata["source"]["path"] == str(snapshot)
    np.testing.assert_allclose(to_numpy(again(saved["x"])), saved["expected"], rtol=1e-5, atol=1e-6)


def test_served_revision_with_other_weights_is_refused(saved, zoo_env, fake_hub):
    with pytest.raises(IntegrityError) as err:
        hardened.from_pretrained(NAME, revision="other", cache_dir=zoo_env["cache"])
    message = str(err.value)
    assert "model.safetensors" in message and saved["sha256"] in message and "'other'" in message


def test_served_missing_revision_falls_back_to_bundled(saved, zoo_env, fake_hub):
    with pytest.warns(hub.HubFallbackWarning, match="RevisionNotFound"):
        model = hardened.from_pretrained(NAME, revision="no-such-branch", cache_dir=zoo_env["cache"])
    assert model.hardened_metadata["source"]["kind"] == "bundled"


def test_hand_made_hf_cache_layout_is_read_offline(saved, zoo_env):
    """The cache layout huggingface_hub documents: blobs/<etag>, snapshots/<commit>/<file> -> blob, refs/main."""
    storage = zoo_env["cache"] / "models--hardened-zoo--toy-hash-mnist"
    (storage / "blobs").mkdir(parents=True)
    (storage / "snapshots" / COMMIT).mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    for name in HUB_FILES:
        blob = storage / "blobs" / sha256_file(saved["folder"] / name)
        shutil.copyfile(saved["folder"] / name, blob)
        (storage / "snapshots" / COMMIT / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hub.HubFallbackWarning)
        model = hardened.from_pretrained(NAME, cache_dir=zoo_env["cache"])
    assert model.hardened_metadata["source"] == {"kind": "hub", "repo_id": REPO, "revision": "main",
                                                 "path": str(storage / "snapshots" / COMMIT)}
    np.testing.assert_allclose(to_numpy(model(saved["x"])), saved["expected"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["offline_empty_cache", "closed_port", "local_files_only"])
def test_unreachable_hub_falls_back_to_bundled_copy(saved, zoo_env, monkeypatch, how):
    kwargs = {"cache_dir": zoo_env["cache"]}
    if how == "closed_port":
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    elif how == "local_files_only":
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        kwargs["local_files_only"] = True
    with pytest.warns(hub.HubFallbackWarning, match="bundled local copy") as record:
        model = hardened.from_pretrained("hash-mnist-toy", **kwargs)
    assert str(saved["cards"] / NAME) in str(record[0].message)
    assert model.hardened_metadata["source"]["kind"] == "bundled" and model.hardened_metadata["name"] == NAME
    np.testing.assert_allclose(to_numpy(model(saved["x"])), saved["expected"], rtol=1e-5, atol=1e-6)


def test_neither_hub_nor_bundled_copy(zoo_env, tmp_path, monkeypatch):
    monkeypatch.setenv("HARDENED_MODEL_CARDS", str(tmp_path / "no-cards"))
    with pytest.raises(FileNotFoundError, match=r"(?s)Hub download of .*no bundled copy"):
        hardened.from_pretrained(NAME, cache_dir=zoo_env["cache"])


# ---------------------------------------------------------------- integrity

def test_tampered_bundled_weights_are_refused(saved, zoo_env, tmp_path, monkeypatch):
    cards = _copy_cards(saved, tmp_path, monkeypatch)
    weights = cards / NAME / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.warns(hub.HubFallbackWarning), pytest.raises(IntegrityError, match="registry expects"):
        hardened.from_pretrained(NAME, cache_dir=zoo_env["cache"])


def test_registry_sha_differing_is_refused(saved, zoo_env):
    registry = make_registry(saved, sha256="0" * 64)
    with pytest.warns(hub.HubFallbackWarning), pytest.raises(IntegrityError) as err:
        hardened.from_pretrained(NAME, cache_dir=zoo_env["cache"], registry=registry)
    message = str(err.value)
    assert "0" * 64 in message and saved["sha256"] in message and "revision" in message


def test_tampered_config_is_refused(saved, zoo_env, tmp_path, monkeypatch):
    cards = _copy_cards(saved, tmp_path, monkeypatch)
    config = cards / NAME / "config.json"
    config.write_text(config.read_text().replace('"units": 12', '"units": 13', 1))
    with pytest.warns(hub.HubFallbackWarning), pytest.raises(IntegrityError, match="config.json"):
        hardened.from_pretrained(NAME, cache_dir=zoo_env["cache"])


# ---------------------------------------------------------------- names and registry

def test_unknown_name_suggests_and_aliases_are_case_insensitive(zoo_env):
    registry = zoo_env["registry"]
    with pytest.raises(ValueError, match=r"(?s)Did you mean 'hash-gi3-mnist'.*hardened.list_models\(\)"):
        hardened.from_pretrained("hash-gi3-mnst", registry=registry)
    assert reg.resolve_name("HASH-GI3-MNIST", registry) == VIEW
    assert reg.resolve_name(VIEW.upper(), registry) == VIEW
    with pytest.raises(ValueError, match="registry is empty"):
        reg.resolve_name("hash-mnist", {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hardened.from_pretrained("./no/such/folder", registry=registry)
    assert hardened.list_models(registry=registry) == [VIEW, NAME]  # sorted
    assert hardened.list_models("gi3", registry=registry) == [VIEW]
    assert hardened.list_models("*mnist*", dataset="MNIST", include_aliases=True, registry=registry) == \
        [VIEW, "hash-gi3-mnist", NAME, "hash-mnist-toy"]
    assert hardened.list_models(dataset="cifar10", registry=registry) == []
    info = hardened.model_info("hash-gi3-mnist")
    assert info["name"] == VIEW and info["kind"] == "view" and info["base"] == NAME and info["card"]


def test_real_registry_is_valid():
    reg.validate_registry(reg.REGISTRY)
    assert reg.HUB_ORG == "hardened-zoo"


@pytest.mark.parametrize("break_it, message", [
    (lambda r: r[VIEW]["aliases"].append("hash-mnist-toy"), "already an alias of"),
    (lambda r: r[VIEW]["aliases"].append(NAME), "clashes with the model name"),
    (lambda r: r[VIEW].update(base="missing"), "is not a registered model"),
    (lambda r: r.update({"v2": {**r[VIEW], "aliases": [], "base": VIEW}}), "is itself a view"),
    (lambda r: r[VIEW]["view"].update(transform="gi4"), "unknown view transform"),
    (lambda r: r[NAME].update(sha256="abc"), "sha256 must be 64"),
    (lambda r: r[NAME].update(config_sha256="X" * 64), "config_sha256 must be 64"),
    (lambda r: r[NAME].update(repo_id="no-org"), "repo_id must look like"),
    (lambda r: r[NAME].update(revision="main"), "40-hex"),
])
def test_validate_registry_rejects_broken_dicts(saved, break_it, message):
    registry = make_registry(saved)
    reg.validate_registry(registry)
    registry[VIEW] = {**registry[VIEW], "aliases": list(registry[VIEW]["aliases"]),
                      "view": dict(registry[VIEW]["view"])}
    break_it(registry)
    with pytest.raises(ValueError, match=message):
        reg.validate_registry(registry)


# ---------------------------------------------------------------- views and heads

def test_view_entry_equals_apply_gi_of_base_without_duplicated_weights(saved, zoo_env, tmp_path):
    with pytest.warns(hub.HubFallbackWarning):
        view = hardened.from_pretrained("hash-gi3-mnist", cache_dir=zoo_env["cache"])
    expected = apply_gi(saved["model"], "gi3", 0.2, seed=0)
    np.testing.assert_allclose(to_numpy(view(saved["x"])), to_numpy(expected(saved["x"])), rtol=1e-5, atol=1e-6)
    assert not np.allclose(to_numpy(view(saved["x"])), saved["expected"], atol=1e-3)
    assert view.hardened_metadata["view"] == {"transform": "gi3", "eps": 0.2, "seed": 0}
    assert view.hardened_metadata["name"] == VIEW and view.hardened_metadata["base"] == NAME
    # Same variables as a plain model, and the registry holds no weights for the view.
    assert len(view.weights) == len(saved["model"].weights) and "sha256" not in zoo_env["registry"][VIEW]

    with pytest.warns(hub.HubFallbackWarning):
        stronger = hardened.from_pretrained(VIEW, cache_dir=zoo_env["cache"], eps=0.5)
    np.testing.assert_allclose(to_numpy(stronger(saved["x"])),
                               to_numpy(apply_gi(saved["model"], "gi3", 0.5, seed=0)(saved["x"])), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="eps"):
        hardened.from_pretrained(NAME, eps=0.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        hardened.from_pretrained(VIEW, tau=2.0)

    # A view card folder: view.json names the base (here a folder next to it) and the transform.
    card = tmp_path / "la-card"
    card.mkdir()
    (card / "view.json").write_text(json.dumps({"base": str(saved["folder"]), "transform": "logits_augmentation",
                                                "eps": 3.0}))
    la = hardened.from_pretrained(card)
    np.testing.assert_allclose(to_numpy(la(saved["x"])), to_numpy(logits_augmentation(saved["model"], 3.0)(saved["x"])),
                               rtol=1e-5, atol=1e-6)


def test_num_classes_rebuilds_the_head_keeping_its_defense(saved, zoo_env):
    with pytest.warns(hub.HubFallbackWarning):
        model = hardened.from_pretrained(NAME, cache_dir=zoo_env["cache"], num_classes=3)
    assert tuple(model.output_shape) == (None, 3)
    head, old_head = model.get_layer("logits"), saved["model"].get_layer("logits")
    assert isinstance(head, HashedDense) and head.compression == old_head.compression == 0.25
    for layer in saved["model"].layers:
        if layer.name != "logits":
            for new_w, old_w in zip(model.get_layer(layer.name).get_weights(), layer.get_weights()):
                np.testing.assert_array_equal(new_w, old_w)
    assert model.hardened_metadata["head"]["previous_num_classes"] == 10
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(saved["x"], np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    with pytest.warns(hub.HubFallbackWarning):
        view = hardened.from_pretrained(VIEW, cache_dir=zoo_env["cache"], num_classes=3)
    assert tuple(view.output_shape) == (None, 3) and view.hardened_metadata["view"]["transform"] == "gi3"
    with pytest.raises(ValueError, match="re-apply the view"):
        hub.rebuild_head(view, 4)
    assert hub.rebuild_head(saved["model"], 10) is saved["model"]


# ---------------------------------------------------------------- push

class _FakeApi:
    calls = []

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "https://hub.example/commit/123"


def test_push_to_hub_uploads_the_verified_folder(saved, zoo_env, monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    _FakeApi.calls = []
    assert hardened.push_to_hub("HASH-MNIST-TOY", private=True, token="t") == "https://hub.example/commit/123"
    assert _FakeApi.calls[0] == ("init", "t")
    assert _FakeApi.calls[1] == ("create_repo", REPO, {"exist_ok": True, "repo_type": "model", "private": True})
    upload = _FakeApi.calls[2][1]
    assert upload["folder_path"] == str(saved["cards"] / NAME) and upload["repo_id"] == REPO

    _FakeApi.calls = []
    hardened.push_to_hub(saved["folder"], "someone/copy")
    assert _FakeApi.calls[2][1]["repo_id"] == "someone/copy"
    with pytest.raises(ValueError, match="needs repo_id"):
        hardened.push_to_hub(saved["folder"])
    bad = tmp_path / "bad"
    shutil.copytree(saved["folder"], bad)
    (bad / "config.json").write_text("{}")
    with pytest.raises(IntegrityError):
        hardened.push_to_hub(bad, "someone/bad")


# ---------------------------------------------------------------- CLI

def test_cli_list_info_push_evaluate(saved, zoo_env, monkeypatch, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "hash-gi3-mnist" in out and "tiny hashed MLP for tests" in out
    assert main(["list", "--dataset", "cifar10"]) == 0 and "No registered model" in capsys.readouterr().out
    monkeypatch.setattr(reg, "REGISTRY", {})
    assert main(["list"]) == 0 and "No models are registered yet" in capsys.readouterr().out
    monkeypatch.setattr(reg, "REGISTRY", zoo_env["registry"])

    assert main(["info", "hash-gi3-mnist"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == VIEW and info["view"]["transform"] == "gi3"
    assert main(["info", "hash-gi3-mnst"]) == 1 and "Did you mean" in capsys.readouterr().err

    pushed = []
    monkeypatch.setattr(hub, "push_to_hub", lambda *a, **k: pushed.append((a, k)) or "https://hub.example/c/1")
    assert main(["push", NAME, "--repo-id", "me/x", "--private"]) == 0
    assert pushed[0][0] == (NAME, "me/x") and pushed[0][1]["private"] is True
    assert "https://hub.example/c/1" in capsys.readouterr().out

    with pytest.warns(hub.HubFallbackWarning):
        model = resolve_model("hash-mnist-toy")
    assert model.hardened_metadata["name"] == NAME
    loaded = []
    monkeypatch.setattr(hub, "from_pretrained", lambda name: loaded.append(name) or (_ for _ in ()).throw(
        FileNotFoundError("stop here")))
    assert main(["evaluate", "hash-gi3-mnist", "--no-progress"]) == 1
    assert loaded == ["hash-gi3-mnist"] and "stop here" in capsys.readouterr().err


def test_logits_augmentation_view_accepts_the_layer_as_a_string_or_a_one_item_list():
    from hardened.zoo.hub import apply_view

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="fc1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(x))
    bias = model.get_layer("logits").get_weights()[1]
    for layers in ("logits", ["logits"], None):
        view = apply_view(model, {"transform": "logits_augmentation", "eps": 4.0, "layers": layers})
        np.testing.assert_allclose(keras.ops.convert_to_numpy(view(x)) - bias, 4.0 * (logits - bias), rtol=1e-5, atol=1e-5)
        assert view.name == model.name + "_la"  # reports name it for what it is, not "..._gi2"
    with pytest.raises(ValueError, match="one layer"):
        apply_view(model, {"transform": "logits_augmentation", "eps": 4.0, "layers": ["fc1", "logits"]})
