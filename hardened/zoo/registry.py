"""The zoo's registry: one dict of released checkpoints and views, data not code.

Like timm's ``default_cfgs`` or keras-hub's presets, every released model is
one entry of `REGISTRY`, keyed by its canonical name ``arch-defense-dataset``.
There are two kinds of entry:

* a **checkpoint** entry has weights on the Hub::

      "cnn7-hash-mnist": {
          "repo_id": "hardened-zoo/cnn7-hash-mnist",
          "revision": None,          # Hub commit sha once pushed; None: "main"
          "sha256": "<sha256 of model.safetensors>",
          "config_sha256": "<sha256 of config.json>",   # optional
          "aliases": ["hash-mnist"],
          "arch": "cnn7", "defense": "hash", "dataset": "mnist",
          "summary": "one line",
      }

* a **view** entry has no weights of its own: a base checkpoint and a
  test-time transform (gradient inhibition, logits augmentation, or
  stochastic activation pruning inserted after ``fc1``), so no weights are
  duplicated::

      "cnn7-hash-gi3-mnist": {
          "base": "cnn7-hash-mnist",
          "view": {"transform": "gi3", "eps": 0.2, "seed": 0},
          "repo_id": "hardened-zoo/cnn7-hash-gi3-mnist",   # holds the card only
          "aliases": ["hash-gi3-mnist"],
          "arch": "cnn7", "defense": "hash-gi3", "dataset": "mnist",
          "summary": "...",
      }

Every function takes ``registry=None`` (the module's `REGISTRY`) so that
tests and forks can pass their own dict. `validate_registry` runs in the test
suite over the real `REGISTRY`, so an entry that breaks the rules fails CI.
"""

import difflib
import fnmatch
from collections.abc import Mapping

from hardened.zoo.entry import _REPO_ID, VIEW_OPTIONAL_KEYS, VIEW_TRANSFORMS, ZooEntry, entry_problems  # noqa: F401

HUB_ORG = "hardened-zoo"

# The releases. "revision": None until the repo is pushed (this environment has no Hub
# access); integrity is pinned by the sha256 values either way. GI entries are views of a
# checkpoint with seed 000's epsilons (MNIST 0.1 / 3 / 0.2, CIFAR-10 0.3 / 5 / 0.6).
REGISTRY = {
    # ---- MNIST, seed 000's 7-layer CNN --------------------------------------------------
    "cnn7-mnist": {
        "repo_id": "hardened-zoo/cnn7-mnist", "revision": None,
        "sha256": "7daa2bd5ab3d423252d7b206eec660d0649e3dc60178ce01943dc681766e8952",
        "config_sha256": "01a1fa651126be4d6581e670956d50c761653378a79ce0a4f7c9d09850c5d09c",
        "aliases": ["base-mnist"], "arch": "cnn7", "defense": "none", "dataset": "mnist",
        "summary": "Undefended 7-layer CNN (seed 000), the base of the MNIST hash/GI releases.",
    },
    "cnn7-hash-mnist": {
        "repo_id": "hardened-zoo/cnn7-hash-mnist", "revision": None,
        "sha256": "2889197fd37017af89b9745481c48c83c0a664ca06f5196723a61b595d8e8c30",
        "config_sha256": "9c62795c5c41d2c9197f95d0bbb8fad046fad221c1172e10e8f9659d9c841108",
        "aliases": ["hash-mnist"], "arch": "cnn7", "defense": "hash", "dataset": "mnist",
        "summary": "Defensive hash classifier (seed 000): fc2 and logits HashedDense at 1/4096 and 1/128, "
                   "transferred from cnn7-mnist and retrained 6 epochs with 2-pixel shifts (v2).",
    },
    # ---- CIFAR-10, fastcnn (airbench-style body, seed 000's FC256-FC256-logits head) ------------
    "fastcnn-cifar10": {
        "repo_id": "hardened-zoo/fastcnn-cifar10", "revision": None,
        "sha256": "b40764ccc6281cc025e785611ad24c1c68aa696bbc8fefcbf3b295790a013394",
        "config_sha256": "de9ec24ed660ddb6f95c64e24a2ad556a146436d32d12161f0ae02a013639821",
        "aliases": ["base-cifar10"], "arch": "fastcnn", "defense": "none", "dataset": "cifar10",
        "summary": "Undefended airbench-style CNN, 10 epochs on the JPEG re-encoded CIFAR-10 copy.",
    },
    "fastcnn-hash-cifar10": {
        "repo_id": "hardened-zoo/fastcnn-hash-cifar10", "revision": None,
        "sha256": "d51483a63ce51fa7d98eefa5dc6d4f497abe71c28ab4e59ff3230cc94cb94ec1",
        "config_sha256": "30c5c2ecbb3898ce172230bf71d813ee14a312978ab657db5d552a3e768df0e5",
        "aliases": ["hash-cifar10"], "arch": "fastcnn", "defense": "hash", "dataset": "cifar10",
        "summary": "Defensive hash classifier (seed 000): fc2 and logits HashedDense at 1/65536 and 1/2048, "
                   "transferred from fastcnn-cifar10 and retrained 3 epochs.",
    },
    # ---- Fashion-MNIST, seed 000's 7-layer CNN (GI epsilons: MNIST's; seed 000 gives none for it) ----
    "cnn7-fashion-mnist": {
        "repo_id": "hardened-zoo/cnn7-fashion-mnist", "revision": None,
        "sha256": "efca07330fcfb2c3021a5c869f35a92d87b2320c67ca28c3297b29e174b1d418",
        "config_sha256": "b1cf82d98c7d04762de6beb02ac0ebfa3c0c153a865d7c0251a9ff857232df37",
        "aliases": ["base-fashion-mnist"], "arch": "cnn7", "defense": "none", "dataset": "fashion_mnist",
        "summary": "Undefended 7-layer CNN (seed 000), the base of the Fashion-MNIST hash/GI releases.",
    },
    "cnn7-hash-fashion-mnist": {
        "repo_id": "hardened-zoo/cnn7-hash-fashion-mnist", "revision": None,
        "sha256": "7a13a46570603f6322566c379c247da85fa2f24988b5d8d26325a08b2d509b51",
        "config_sha256": "82768faecb44da1202bd32e6787393869695f6eb069a501bd513612e5b768dca",
        "aliases": ["hash-fashion-mnist"], "arch": "cnn7", "defense": "hash", "dataset": "fashion_mnist",
        "summary": "Defensive hash classifier (seed 000): fc2 and logits HashedDense at 1/4096 and 1/128, "
                   "transferred from cnn7-fashion-mnist and retrained 3 epochs.",
    },
    # ---- MNIST, Carlini & Wagner's 4-conv + 3-FC net (seeds 002 and 004) ---------------------
    "cwcnn-mnist": {
        "repo_id": "hardened-zoo/cwcnn-mnist", "revision": None,
        "sha256": "0d6d6cab5bc54d8c392ca1676be3232c464929d86ef8d286881468bf7b7435ac",
        "config_sha256": "ccc8d1e07697ecccd9b579d219f887b57d8c08544ceb3e6cdf23e8f37695ff84",
        "aliases": [], "arch": "cwcnn", "defense": "none", "dataset": "mnist",
        "summary": "Undefended 4-conv + 3-FC CNN (seeds 002/004), the base of the MNIST pruning release.",
    },
    "cwcnn-prune-mnist": {
        "repo_id": "hardened-zoo/cwcnn-prune-mnist", "revision": None,
        "sha256": "3e84243a8e5a5fc938c6a7ba6b77b4efc554a1dfde134793597d3f990978ae16",
        "config_sha256": "6c1e15c27918093454eece61af3efd800b912e94007b3a0d1012fb7af2b697a3",
        "aliases": ["prune-mnist"], "arch": "cwcnn", "defense": "prune", "dataset": "mnist",
        "summary": "Seed 002: cwcnn-mnist pruned by magnitude in 20 rounds (10 % FC / 5 % conv of the remaining "
                   "weights per round, 1 retraining epoch each).",
    },
    "cwcnn-prune-la-mnist": {
        "base": "cwcnn-prune-mnist", "view": {"transform": "logits_augmentation", "eps": 4.0, "seed": 0},
        "repo_id": "hardened-zoo/cwcnn-prune-la-mnist", "aliases": ["prune-la-mnist"],
        "arch": "cwcnn", "defense": "prune-la", "dataset": "mnist",
        "summary": "Seed 002 level two: logits augmentation (w <- 4 w on the logits kernel) of cwcnn-prune-mnist.",
    },
    # ---- MNIST, seed 004: HRS and its baselines on cwcnn-mnist's net and schedule (issue 17) ----
    "hrs10x10-mnist": {
        "repo_id": "hardened-zoo/hrs10x10-mnist", "revision": None,
        "sha256": "41403093c23dc0ee35ca35dc592f99c7feb9de5eb12d412192cb338c7680351a",
        "config_sha256": "2528533fbfc1cf9d90ee16e1a06bda58c5c1172b7af251178b3c6283cdd7c74b",
        "aliases": ["hrs-mnist"], "arch": "hrs_cnn", "defense": "hrs", "dataset": "mnist",
        "summary": "Seed 004 hierarchical random switching over the C&W net: 10 block-1 channels (conv1-4 + fc1, "
                   "6 epochs each) and 10 block-2 channels (fc2 + logits, 3 epochs each), trained bottom-up; one "
                   "random path per forward pass.",
    },
    "cwcnn-dropout0.1-mnist": {
        "repo_id": "hardened-zoo/cwcnn-dropout0.1-mnist", "revision": None,
        "sha256": "261ecbaefbe4dfd4af24958a5eca7f30235cae43458c356f36cea27105cdfcc6",
        "config_sha256": "a8a925b8bb5338305785aaa9e8e8c70d6dc22709abfee792ce4dc22291abfbcf",
        "aliases": ["dropout0.1-mnist"], "arch": "cwcnn", "defense": "dropout", "dataset": "mnist",
        "summary": "Seed 004 baseline: defensive dropout (rate 0.1, kept at inference) between FC1 and FC2 of the "
                   "C&W net, trained with cwcnn-mnist's schedule.",
    },
    "cwcnn-dropout0.3-mnist": {
        "repo_id": "hardened-zoo/cwcnn-dropout0.3-mnist", "revision": None,
        "sha256": "07243145a179fd090c462e3638ec7ebf0fd66fc6942dbef17c6ac63dec83eb81",
        "config_sha256": "b14b73368dcc899f7bcc5e0c834447fbde982edc5aefd906a4770f5aae744651",
        "aliases": ["dropout0.3-mnist"], "arch": "cwcnn", "defense": "dropout", "dataset": "mnist",
        "summary": "Seed 004 baseline: defensive dropout (rate 0.3, kept at inference) between FC1 and FC2 of the "
                   "C&W net, trained with cwcnn-mnist's schedule.",
    },
    "cwcnn-noise0.1-mnist": {
        "repo_id": "hardened-zoo/cwcnn-noise0.1-mnist", "revision": None,
        "sha256": "f76ced18ba37f597bce1ca91dc7d420c70fcf4f8f3951a5deefc9fd925e51860",
        "config_sha256": "1473942f35588abf5b20731aade5692137ffc37450d216ea7009db6ee44a2956",
        "aliases": ["noise0.1-mnist"], "arch": "cwcnn", "defense": "noise", "dataset": "mnist",
        "summary": "Seed 004 baseline: Gaussian noise before every conv (random self-ensemble; std 0.1 before "
                   "conv1, 0.05 before the others, in normalised units), trained and kept at inference.",
    },
    "cwcnn-noise0.2-mnist": {
        "repo_id": "hardened-zoo/cwcnn-noise0.2-mnist", "revision": None,
        "sha256": "beff2b88cecac5d43759f36c16da55f9affb32c498713a000c304c4cd9d70a0a",
        "config_sha256": "451891c1c766231730bdf8f1b56bae985578e0df4304bffdae7f01ae19a60e20",
        "aliases": ["noise0.2-mnist"], "arch": "cwcnn", "defense": "noise", "dataset": "mnist",
        "summary": "Seed 004 baseline: Gaussian noise before every conv (random self-ensemble; std 0.2 before "
                   "conv1, 0.1 before the others, in normalised units), trained and kept at inference.",
    },
    "cwcnn-advtrain-mnist": {
        "repo_id": "hardened-zoo/cwcnn-advtrain-mnist", "revision": None,
        "sha256": "764a6982d3b7779e0647bfd9722b5e98a4154bfb1138ae459d9de28afb09c4b9",
        "config_sha256": "ccc8d1e07697ecccd9b579d219f887b57d8c08544ceb3e6cdf23e8f37695ff84",
        "aliases": ["advtrain-mnist"], "arch": "cwcnn", "defense": "pgd-at", "dataset": "mnist",
        "summary": "Seed 004 baseline: Madry et al.'s PGD adversarial training (linf 0.3, 40 steps of 0.01, random "
                   "start, eps ramped over the first epoch) of the C&W net, 6 epochs with Adam.",
    },
    "fastcnn-advtrain-cifar10": {
        "repo_id": "hardened-zoo/fastcnn-advtrain-cifar10", "revision": None,
        "sha256": "699b63cdc407aa4cf48352fede63400af23c0a8a6caa0650c85d8add030149a6",
        "config_sha256": "de9ec24ed660ddb6f95c64e24a2ad556a146436d32d12161f0ae02a013639821",
        "aliases": ["advtrain-cifar10", "robust-reference-cifar10"], "arch": "fastcnn", "defense": "fgsm-rs-at",
        "dataset": "cifar10",
        "summary": "The zoo's CIFAR-10 robust reference (issue 17): Wong et al.'s FGSM with random start (linf 8/255, "
                   "step 10/255) adversarial training of the fastcnn body, 20 epochs of SGD on the JPEG re-encoded copy.",
    },
    "cwcnn-sap-mnist": {
        "base": "cwcnn-mnist", "view": {"transform": "sap", "eps": 1.0, "seed": 0},
        "repo_id": "hardened-zoo/cwcnn-sap-mnist", "aliases": ["sap-mnist"],
        "arch": "cwcnn", "defense": "sap", "dataset": "mnist",
        "summary": "Seed 004 baseline, training-free: stochastic activation pruning (ratio 1.0) after fc1 of "
                   "cwcnn-mnist, the cwcnn-sap recipe's placement, on the undefended weights.",
    },
    # ---- MNIST, ResNet-18 at width 0.5 (seed 003: Defend++ and its control) -----------------
    "resnet18-mnist": {
        "repo_id": "hardened-zoo/resnet18-mnist", "revision": None,
        "sha256": "9c8114a2699f992eb19f8b85f60a7e37ee28e7dea719807ea4c2d52dcfeb0626",
        "config_sha256": "8a7e781eb29beca24412257c8652c857ca6cc05b7d77c7af5e76bbc976aa7cbe",
        "aliases": [], "arch": "resnet18", "defense": "none", "dataset": "mnist",
        "summary": "Undefended ResNet-18 (width 0.5), the control of resnet18-defendpp-mnist: same init, batches "
                   "and schedule, no decoder.",
    },
    "resnet18-defendpp-mnist": {
        "repo_id": "hardened-zoo/resnet18-defendpp-mnist", "revision": None,
        "sha256": "7e1bc165e6eda461ecff56b41b3c834a16274a77959ca7d632439fae11c3cf94",
        "config_sha256": "8a7e781eb29beca24412257c8652c857ca6cc05b7d77c7af5e76bbc976aa7cbe",
        "aliases": ["defendpp-mnist"], "arch": "resnet18", "defense": "defendpp", "dataset": "mnist",
        "summary": "Seed 003 Defend++: ResNet-18 (width 0.5) trained jointly with a multi-scale DCT low-pass "
                   "decoder on its first blocks; the classifier alone (decoder/ beside it for inspection).",
    },
    # ---- CIFAR-10, ResNet-18 at width 0.5 (seed 003: Defend++ and its control) ---------------
    "resnet18-cifar10": {
        "repo_id": "hardened-zoo/resnet18-cifar10", "revision": None,
        "sha256": "c8286ba15a2cc6f28871f8f37a51ca8ad367a0c2d72fabe47657014bcc0f72b5",
        "config_sha256": "a83385471bb4442e7b498711be40004330457fd2a1fdd3a1a6523bbd9e8f05e0",
        "aliases": [], "arch": "resnet18", "defense": "none", "dataset": "cifar10",
        "summary": "Undefended ResNet-18 (width 0.5, 12 epochs), the control of resnet18-defendpp-cifar10: same "
                   "init, batches and schedule, no decoder.",
    },
    "resnet18-defendpp-cifar10": {
        "repo_id": "hardened-zoo/resnet18-defendpp-cifar10", "revision": None,
        "sha256": "ac3e47a125777da508784ee1501019e2eeedf147678294b1a7624f83620fc298",
        "config_sha256": "a83385471bb4442e7b498711be40004330457fd2a1fdd3a1a6523bbd9e8f05e0",
        "aliases": ["defendpp-cifar10"], "arch": "resnet18", "defense": "defendpp", "dataset": "cifar10",
        "summary": "Seed 003 Defend++: ResNet-18 (width 0.5, 12 epochs) trained jointly with a multi-scale DCT "
                   "low-pass decoder sharing its first 3 stages; the classifier alone (decoder/ beside it).",
    },
    # ---- CIFAR-10, Carlini & Wagner's 4-conv + 3-FC net (seed 002's base) ----------------------
    "cwcnn-cifar10": {
        "repo_id": "hardened-zoo/cwcnn-cifar10", "revision": None,
        "sha256": "e4231eb447d8d9582cbe6aacd2228743895b974a44960482a548e216a7df15b6",
        "config_sha256": "cefdb063102ca0274d07a886eb03cf24daa5e451c1083660cc2462e9c67aa95e",
        "aliases": [], "arch": "cwcnn", "defense": "none", "dataset": "cifar10",
        "summary": "Undefended 4-conv + 3-FC CNN (seed 002), 20 epochs; the base of the CIFAR-10 pruning recipe "
                   "(cwcnn-prune-cifar10, `hardened train cwcnn-prune-cifar10 --base model_cards/cwcnn-cifar10`).",
    },
    "cwcnn-prune-cifar10": {
        "repo_id": "hardened-zoo/cwcnn-prune-cifar10", "revision": None,
        "sha256": "ed4e7b2e37d65d6be167efd79e56c35c0fa9c87ddf6949e868d6011cb4b7e3d1",
        "config_sha256": "7c3f13253b16f6881a52582d23642c12a8203bbeba0b93dee31fc022c77e69a2",
        "aliases": ["prune-cifar10"], "arch": "cwcnn", "defense": "prune", "dataset": "cifar10",
        "summary": "Seed 002: cwcnn-cifar10 pruned by magnitude in 20 rounds (10 % FC / 5 % conv of the remaining "
                   "weights per round, 1 retraining epoch each).",
    },
    "cwcnn-prune-la-cifar10": {
        "base": "cwcnn-prune-cifar10", "view": {"transform": "logits_augmentation", "eps": 6.0, "seed": 0},
        "repo_id": "hardened-zoo/cwcnn-prune-la-cifar10", "aliases": ["prune-la-cifar10"],
        "arch": "cwcnn", "defense": "prune-la", "dataset": "cifar10",
        "summary": "Seed 002 level two: logits augmentation (w <- 6 w on the logits kernel) of cwcnn-prune-cifar10.",
    },
    "cwcnn-sap-cifar10": {
        "base": "cwcnn-cifar10", "view": {"transform": "sap", "eps": 1.0, "seed": 0},
        "repo_id": "hardened-zoo/cwcnn-sap-cifar10", "aliases": ["sap-cifar10"],
        "arch": "cwcnn", "defense": "sap", "dataset": "cifar10",
        "summary": "Seed 004 baseline, training-free: stochastic activation pruning (ratio 1.0) after fc1 of "
                   "cwcnn-cifar10, the cwcnn-sap recipe's placement, on the undefended weights.",
    },
    "hrs10x10-cifar10": {
        "repo_id": "hardened-zoo/hrs10x10-cifar10", "revision": None,
        "sha256": "1b96ff819852dd812e8585c11f938f640c8ab1ebafeb8a7113049d27b3d65f21",
        "config_sha256": "b0d4bf0776854c3b9e2c49333b40cfcf23d2a86617160f098ccbb57089ec31f5",
        "aliases": ["hrs-cifar10"], "arch": "hrs_cnn", "defense": "hrs", "dataset": "cifar10",
        "summary": "Seed 004 hierarchical random switching over the C&W CIFAR-10 net: 10 block-1 channels (conv1-4 "
                   "+ fc1) and 10 block-2 channels (fc2 + logits), 20 epochs each (cwcnn-cifar10's schedule), "
                   "trained bottom-up; one random path per forward pass. 82.15 % clean (full test set, mean of 3 "
                   "passes) vs cwcnn-cifar10's 83.53 %: 1.38 points, over seed 004's 1-point budget.",
    },
}


#: What each GI transform does to a weight, for the generated summaries.
_GI_TEXT = {"gi1": "w + {eps:g} sign w", "gi2": "(1 + {eps:g}) w", "gi3": "w + {eps:g} U(0,1) sign w"}


def _name_ends(base, entry):
    """``(architecture token, dataset slug)`` of a canonical name: ``cnn7-hash-fashion-mnist`` -> cnn7, fashion-mnist."""
    return base.split("-")[0], base[len(base) - len(entry["dataset"].replace("_", "-")):]


def gi_views(base, eps, note=""):
    """The GI1/GI2/GI3 view entries of a registered checkpoint, as timm's ``generate_default_cfgs``.

    ``cnn7-hash-mnist`` gives ``cnn7-hash-gi1-mnist`` .. ``cnn7-hash-gi3-mnist`` (aliases
    ``hash-gi1-mnist`` ..., defense ``hash-gi1`` ...): the base's name with the GI token added to its
    defense, the base's architecture and dataset, seed 000's epsilons ``eps = {"gi1": .., "gi2": .., "gi3": ..}``.

    Args:
        base: The base's canonical name (``arch[-defense]-dataset``, already in `REGISTRY`).
        eps: Epsilon per transform.
        note: Added to every summary (e.g. where the epsilons come from).
    """
    entry = REGISTRY[base]
    arch_token, dataset_slug = _name_ends(base, entry)
    defense = "" if entry["defense"] == "none" else entry["defense"]
    views = {}
    for kind in ("gi1", "gi2", "gi3"):
        full = f"{defense}-{kind}" if defense else kind
        name = f"{arch_token}-{full}-{dataset_slug}"
        what = ("Hash classifier + " if defense == "hash" else "") + f"{kind.upper()} view"
        views[name] = {
            "base": base, "view": {"transform": kind, "eps": float(eps[kind]), "seed": 0},
            "repo_id": f"{HUB_ORG}/{name}", "aliases": [f"{full}-{dataset_slug}"],
            "arch": entry["arch"], "defense": full, "dataset": entry["dataset"],
            "summary": f"{what} ({_GI_TEXT[kind].format(eps=eps[kind])} on the last three layers"
                       + (", U drawn once with seed 0" if kind == "gi3" else "") + f"{note}) of {base}.",
        }
    return views


_SEED000_GI_EPS = {"mnist": {"gi1": 0.1, "gi2": 3.0, "gi3": 0.2}, "cifar10": {"gi1": 0.3, "gi2": 5.0, "gi3": 0.6}}
for _base, _eps, _note in (("cnn7-mnist", _SEED000_GI_EPS["mnist"], ""),
                           ("cnn7-hash-mnist", _SEED000_GI_EPS["mnist"], ""),
                           ("fastcnn-cifar10", _SEED000_GI_EPS["cifar10"], ""),
                           ("fastcnn-hash-cifar10", _SEED000_GI_EPS["cifar10"], ""),
                           # seed 000 gives no Fashion-MNIST epsilons: MNIST's
                           ("cnn7-fashion-mnist", _SEED000_GI_EPS["mnist"], ", MNIST's epsilon"),
                           ("cnn7-hash-fashion-mnist", _SEED000_GI_EPS["mnist"], ", MNIST's epsilon")):
    _views = gi_views(_base, _eps, _note)
    # Each base's views right after it (the order `hardened list` prints).
    _items = list(REGISTRY.items())
    _at = [n for n, _ in _items].index(_base) + 1
    REGISTRY.clear()
    REGISTRY.update(_items[:_at] + list(_views.items()) + _items[_at:])


def squeeze_and_quantization_views(base, input_bits):
    """Seed 000's training-free baselines of a checkpoint as view entries (Table IV and Table VII).

    ``cnn7-mnist`` gives ``cnn7-bitdepth1-mnist`` (bit-depth reduction to ``input_bits``),
    ``cnn7-median2-mnist`` (2x2 median smoothing), ``cnn7-quant8-mnist`` and ``cnn7-quant3-mnist``
    (weights clustered into 2**8 / 2**3 shared values per kernel). The input transforms are layers in
    front of the network, so the adaptive suite's BPDA replaces them by the identity.

    Args:
        base: The base's canonical name (an undefended checkpoint already in `REGISTRY`).
        input_bits: Bits per pixel of the bit-depth view (seed 000: 1 on MNIST, 4 on CIFAR-10).
    """
    entry = REGISTRY[base]
    arch_token, dataset_slug = _name_ends(base, entry)
    specs = (
        ("bitdepth", f"bitdepth{input_bits}", "bit_depth", input_bits,
         f"Bit-depth reduction of the input to {input_bits} bit(s) per pixel (feature squeezing, Xu et al. 2018; "
         "seed 000 Table IV)"),
        ("median", "median2", "median", 2, "2x2 median smoothing of the input (feature squeezing, Xu et al. 2018; "
                                           "seed 000 Table IV)"),
        ("quant8", "quant8", "weight_quant", 8, "8-bit weight quantization (k-means weight sharing, 256 values per "
                                               "kernel, Han et al. 2016, without retraining; seed 000 Table VII)"),
        ("quant3", "quant3", "weight_quant", 3, "3-bit weight quantization (k-means weight sharing, 8 values per "
                                               "kernel, Han et al. 2016, without retraining; seed 000 Table VII)"),
    )
    views = {}
    for defense, token, transform, strength, what in specs:
        name = f"{arch_token}-{token}-{dataset_slug}"
        views[name] = {
            "base": base, "view": {"transform": transform, "eps": float(strength), "seed": 0},
            "repo_id": f"{HUB_ORG}/{name}", "aliases": [f"{token}-{dataset_slug}"],
            "arch": entry["arch"], "defense": defense, "dataset": entry["dataset"],
            "summary": f"{what}, a training-free view of {base}.",
        }
    return views


for _base, _bits in (("cnn7-mnist", 1), ("fastcnn-cifar10", 4)):
    REGISTRY.update(squeeze_and_quantization_views(_base, _bits))

# Typed, validated records from here on: a broken entry fails at import with every problem named.
REGISTRY = {_name: ZooEntry.from_dict(_name, _entry) for _name, _entry in REGISTRY.items()}


def _registry(registry):
    return REGISTRY if registry is None else registry


def is_view(entry):
    """Whether a registry entry is a view (base checkpoint + transform, no weights)."""
    return "base" in entry


def _lookup_table(registry):
    """Lower-cased canonical names and aliases -> canonical name."""
    table = {}
    for name, entry in registry.items():
        table[name.lower()] = name
        for alias in entry.get("aliases", ()):
            table.setdefault(alias.lower(), name)
    return table


def resolve_name(name, registry=None):
    """The canonical registry name for a canonical name or an alias (case-insensitive).

    Args:
        name: e.g. ``"cnn7-hash-gi3-mnist"`` or its alias ``"Hash-GI3-MNIST"``.
        registry: The registry dict (default: `REGISTRY`).

    Returns:
        The canonical name.

    Raises:
        ValueError: the name is unknown; the message suggests close names.
    """
    registry = _registry(registry)
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string, got {type(name).__name__}.")
    if name in registry:
        return name
    table = _lookup_table(registry)
    canonical = table.get(name.strip().lower())
    if canonical is not None:
        return canonical
    known = sorted(set(registry) | {a for e in registry.values() for a in e.get("aliases", ())})
    close = difflib.get_close_matches(name.strip().lower(), [k.lower() for k in known], n=3, cutoff=0.6)
    # Report the suggestions with their registered spelling.
    spelled = {k.lower(): k for k in known}
    hint = f" Did you mean {', '.join(repr(spelled[c]) for c in close)}?" if close else ""
    if not registry:
        what = "The zoo registry is empty (no checkpoints released yet)."
    else:
        what = f"It is not a registered model name or alias ({len(registry)} models registered)."
    raise ValueError(
        f"Unknown model {name!r}. {what}{hint} See hardened.list_models() (or `hardened list`) "
        "for the names; a checkpoint folder can be passed as a path."
    )


def get_entry(name, registry=None):
    """The typed registry entry (`ZooEntry`, read-only) of ``name`` (canonical name or alias).

    Raises:
        ValueError: the name is unknown, or its entry (in a registry passed as plain dicts) is invalid.
    """
    registry = _registry(registry)
    canonical = resolve_name(name, registry)
    return ZooEntry.from_dict(canonical, registry[canonical])


def list_models(filter=None, dataset=None, include_aliases=False, registry=None):
    """Names of the registered models, sorted.

    Args:
        filter: A shell-style pattern (``"*gi3*"``) or plain substring that
            the name (or, with ``include_aliases``, an alias) must match.
        dataset: Keep only the models trained on this dataset (``"mnist"``).
        include_aliases: Also list the aliases.
        registry: The registry dict (default: `REGISTRY`).

    Returns:
        A list of names (canonical names, plus aliases when asked).
    """
    registry = _registry(registry)
    names = []
    for name, entry in sorted(registry.items()):
        if dataset is not None and str(entry.get("dataset", "")).lower() != str(dataset).lower():
            continue
        candidates = [name] + (list(entry.get("aliases", ())) if include_aliases else [])
        for candidate in candidates:
            if filter is None:
                names.append(candidate)
            elif any(ch in filter for ch in "*?["):
                if fnmatch.fnmatch(candidate.lower(), filter.lower()):
                    names.append(candidate)
            elif filter.lower() in candidate.lower():
                names.append(candidate)
    return names


def validate_registry(registry=None):
    """Check a registry dict; raise one ValueError listing every problem.

    Each entry's own rules are `hardened.zoo.entry.entry_problems` (the check `ZooEntry.from_dict` runs);
    the rules across entries are here. Rules: names and aliases are unique (case-insensitively) and no alias
    equals another model's name; checkpoint entries have a ``repo_id``
    ``org/name``, a 64-hex ``sha256`` (and ``config_sha256`` if given) and a
    ``revision`` that is None or a 40-hex commit; view entries name an
    existing base that is itself a checkpoint, and a known transform with
    ``eps`` >= 0 (>= 1 for logits augmentation, where it is tau; > 0 for
    SAP, where it is the ratio of draws to activations).

    Returns:
        The registry, unchanged.
    """
    registry = _registry(registry)
    problems = []
    names = {}  # lower-cased canonical name -> name
    for name in registry:
        if name.lower() in names:
            problems.append(f"{name!r}: same name as {names[name.lower()]!r} up to case")
        names[name.lower()] = name
    alias_owner = {}  # lower-cased alias -> the model it belongs to
    for name, entry in registry.items():
        problems += entry_problems(name, entry)  # the entry's own rules, as ZooEntry.from_dict checks them
        if not isinstance(entry, Mapping):
            continue
        aliases = entry.get("aliases", [])
        for alias in aliases if isinstance(aliases, (list, tuple)) else []:
            key = str(alias).lower()
            if key == name.lower():
                problems.append(f"{name!r}: alias {alias!r} repeats the canonical name")
            elif key in names:
                problems.append(f"{name!r}: alias {alias!r} clashes with the model name {names[key]!r}")
            elif key in alias_owner:
                problems.append(f"{name!r}: alias {alias!r} is already an alias of {alias_owner[key]!r}")
            alias_owner.setdefault(key, name)
        if is_view(entry):
            base = entry["base"]
            if base not in registry:
                problems.append(f"{name!r}: view base {base!r} is not a registered model")
            elif is_view(registry[base]):
                problems.append(f"{name!r}: view base {base!r} is itself a view; a view's base must hold weights")
    if problems:
        raise ValueError("Invalid zoo registry:\n  - " + "\n  - ".join(problems))
    return registry
