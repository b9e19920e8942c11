"""What a model card states, collected from its folder: the facts the card, its metadata and the leaderboard share.

`CardFacts` reads a card folder once (`hardened.reporting.folder`), adds the
registry entry, the view and the paper reference, and answers the questions
every report asks: which dataset and defense, the worst case per threat
model, the headline cases, the model-index metrics. Laying them out is
`hardened.reporting.card_sections`' job.
"""

import json
from pathlib import Path

from hardened.evaluation.masking import refresh_flags
from hardened.evaluation.records import read_results
from hardened.reporting.defenses import DATASETS, STANDARD_LINF, _dataset_key, _kind, defense_key, defense_kinds
from hardened.reporting.folder import METADATA_NAME, _read_json, read_card_inputs, results_files
from hardened.reporting.formatting import _threat_ascii, _threat_eps, _threat_key_ascii
from hardened.reporting.papers import PAPER_SUITE_RESULTS, SEED000_ARCHS, paper_reference
from hardened.zoo import registry

#: Attacks whose numbers stand on a masked model: not a cross-entropy gradient (other losses, black-box,
#: BPDA / EOT / fixed randomness, minimal-norm and score attacks).
_NON_CE_ATTACKS = ("square", "square_l2", "autoattack", "cw_l2", "ead", "ddn", "deepfool", "jsma", "fab", "zoo",
                   "substitute")


def _registry_entry(name):
    """The registry entry of ``name`` (copy), or ``None`` if the name is not registered."""
    table = registry.REGISTRY
    if name not in table:
        return None
    entry = table[name]
    return json.loads(json.dumps(entry.to_dict() if hasattr(entry, "to_dict") else entry))


def _base_repo_id(base):
    entry = _registry_entry(base) if isinstance(base, str) else None
    return entry.get("repo_id") if entry else None


def _view_spec(view, registry_entry):
    if view:
        return dict(view)
    if registry_entry and "base" in registry_entry:
        spec = dict(registry_entry.get("view") or {})
        spec["base"] = registry_entry["base"]
        return spec
    return None


def stands_on_masking(e):
    """Whether an attack row's number means something on a model with masked gradients."""
    loss = (e.get("params") or {}).get("loss")
    if e.get("transfer_source") is not None:  # crafted with another model's CE gradients: no better
        return False
    return bool(e.get("black_box") or e.get("wrapper") in ("bpda", "eot", "fixed_randomness")
                or e.get("attack") in _NON_CE_ATTACKS or (loss is not None and loss != "ce"))


class CardFacts:
    """The inputs of one card folder and the facts derived from them."""

    STANDARD_LINF = STANDARD_LINF

    def __init__(self, folder, registry_entry, paper):
        self.folder = Path(folder)
        inputs = read_card_inputs(self.folder)
        # Checks that need only the saved rows also apply to results saved before they existed.
        self.results = [(fname, refresh_flags(r)) for fname, r in inputs["results"]]
        self.metadata = inputs["metadata"] or {}
        self.accuracy = inputs["accuracy"]
        self.use_registry = registry_entry is None
        self.entry = (_registry_entry(self.folder.name) if registry_entry is None else registry_entry) or {}
        self.view = _view_spec(inputs["view"], self.entry)
        self.name = self.folder.name
        # A view has no metadata of its own: its base's (a sibling folder, if bundled) says which data copy.
        base_meta = self.folder.parent / str((self.view or {}).get("base", "")) / METADATA_NAME
        self.base_metadata = (_read_json(base_meta) if self.view and self.view.get("base") and base_meta.is_file()
                              else {})
        first = self.results[0][1] if self.results else {}
        self.primary = first
        self.dataset = (_dataset_key(self.entry.get("dataset")) or _dataset_key(first.get("dataset"))
                        or _dataset_key(self.metadata.get("dataset")))
        self.kinds = defense_kinds(self.name, self.entry, self.metadata, self.view)
        self.defense = defense_key(self.kinds)
        if paper is None:
            paper = self.entry.get("paper") if isinstance(self.entry.get("paper"), dict) else None
            # Seed 000's tables describe its own networks only (the 7-layer CNN on MNIST, VGG-19 on CIFAR-10,
            # for which fastcnn stands in): a C&W CNN or ResNet base of another seed must not quote them.
            arch = self.entry.get("arch") or self.metadata.get("arch")
            if arch in SEED000_ARCHS:
                # The registry's own defense token first: it can name a variant (quant8 vs quant3) that the
                # kinds merge.
                paper = (paper or paper_reference(self.dataset, str(self.entry.get("defense") or ""))
                         or paper_reference(self.dataset, self.defense))
        self.paper = paper or None
        self.show_paper = paper is not False
        self.multi = len(self.results) > 1
        self.masking = any(r.get("gradient_masking") for _, r in self.results)

    def dataset_display(self):
        name = DATASETS.get(self.dataset, (self.dataset or "unknown dataset", None))[0]
        return name + (" (JPEG re-encoded copy)" if self.jpeg_copy() else "")

    def copy_fields(self):
        fields = [self.entry.get("data_copy"), (self.view or {}).get("data_copy")]
        for meta in (self.metadata, self.base_metadata):
            fields.append(meta.get("data_copy"))
            ds = meta.get("dataset")
            if isinstance(ds, dict):
                fields += [ds.get("copy"), ds.get("data_copy"), ds.get("source")]
        for _, r in self.results:
            fields += [r.get("data_source"), r.get("data_copy")]
        return [str(f) for f in fields if f]

    def jpeg_copy(self):
        return self.dataset == "cifar10" and any("jpeg" in f.lower() for f in self.copy_fields())

    def is_checkpoint(self):
        return self.view is None

    def entries(self, suite):
        rows = []
        for fname, r in self.results:
            rows += [(fname, e) for e in r.get("attacks", []) if e.get("suite") == suite]
        return rows

    def headline_cases(self):
        """The headlined threat models as facts, the card's first section and the leaderboard read them.

        Headlined: linf at the dataset's standard eps and every l2 budget evaluated; when no attack ran at the
        standard linf eps, the largest linf budget evaluated (``standard`` False).

        Returns:
            ``[{"threat", "standard", "robust_accuracy", "attack", "n", "robust" (images still correct or
            None), "n_attacks", "file"}]``.
        """
        standard = self.STANDARD_LINF.get(self.dataset)
        worst = self.worst_cases()
        linf = [(f, t, w) for f, t, w in worst if str(t).startswith("linf:")]
        chosen = [(f, t, w) for f, t, w in linf if standard is not None and abs(_threat_eps(t) - standard) < 1e-6]
        at_standard = bool(chosen)
        if not chosen and linf:
            chosen = [max(linf, key=lambda item: _threat_eps(item[1]))]
        chosen += [(f, t, w) for f, t, w in worst if str(t).startswith("l2:")]
        cases = []
        for fname, threat, w in chosen:
            r = dict(self.results)[fname]
            e = next((a for a in r.get("attacks", []) if a.get("name") == w.get("attack")
                      and a.get("threat") == threat), {})
            n, n_correct = r.get("n"), r.get("n_correct")
            robust = None if n_correct is None else n_correct - int(e.get("n_success", 0))
            cases.append({"threat": threat, "standard": at_standard or not threat.startswith("linf:"),
                          "robust_accuracy": w.get("robust_accuracy_upper_bound"), "attack": w.get("attack"),
                          "n": n, "robust": robust, "n_attacks": self._n_attacks(threat), "file": fname})
        return cases

    def _n_attacks(self, threat):
        return sum(1 for _, r in self.results for a in r.get("attacks", [])
                   if a.get("threat") == threat and a.get("status") == "ok")

    def undefended_name(self):
        """This card's name without its defense tokens: its undefended sibling (or control) release."""
        return "-".join(t for t in self.name.split("-") if _kind(t) in (None, "base"))

    def undefended_results(self, suite):
        """``(name, results)`` of the undefended sibling card's evaluation with ``suite``, or ``None``.

        The sibling is this card's name without its defense tokens
        (``resnet18-defendpp-cifar10`` -> ``resnet18-cifar10``, ``cwcnn-prune-mnist``
        -> ``cwcnn-mnist``), a folder beside this one holding a results file of
        the same suite: its numbers are measurements, read like this card's own.
        """
        if self.kinds == ["base"]:
            return None
        name = self.undefended_name()
        folder = self.folder.parent / name
        if name == self.name or not folder.is_dir():
            return None
        for path in results_files(folder):
            data = read_results(path)
            if data.get("suite") == suite:
                return name, data
        return None

    @staticmethod
    def _measured(e, metric):
        """Our number for an entry in the paper's metric (a rate in [0, 1]), or ``None``."""
        if e is None or e.get("status") != "ok" or e.get("success_rate") is None:
            return None
        if metric != "accuracy":
            return e["success_rate"]
        if e.get("targeted") or not e.get("n_images"):
            return None
        # Accuracy under attack on every image tried: the correct ones the attack did not flip.
        return (e["n_attacked"] - e["n_success"]) / e["n_images"]

    def worst_cases(self):
        """``[(results file, threat key, worst dict)]``: the strongest attack per threat model."""
        best = {}
        for fname, r in self.results:
            for threat, w in ((r.get("summary") or {}).get("worst_case_by_threat") or {}).items():
                rate = w.get("max_success_rate") or 0
                if threat not in best or rate > (best[threat][1].get("max_success_rate") or 0):
                    best[threat] = (fname, w)
        return [(f, t, w) for t, (f, w) in sorted(best.items())]

    def model_index_metrics(self):
        """The model-index metrics, headline first: full-test accuracy, subset accuracy, worst-case robust
        accuracy per threat model, then per-attack success rates (and a paper suite's accuracy under attack).

        On a model flagged for gradient masking, a threat model whose attacks are all cross-entropy gradient
        attacks gives no robust-accuracy metric: its bound would only measure the masked gradient.
        """
        metrics, seen = [], set()
        if self.accuracy:  # the headline: every test image, before any subset or attack number
            metrics.append({"type": "accuracy", "value": round(100 * self.accuracy["accuracy"], 2),
                            "name": f"Clean accuracy (full test set, {self.accuracy['n']} images"
                                    + (f", mean of {len(self.accuracy['passes'])} random passes)"
                                       if len(self.accuracy.get("passes", [])) > 1 else ")")})
        for _, r in self.results:
            if r.get("clean_accuracy") is not None and "clean" not in seen:
                seen.add("clean")
                metrics.append({"type": "accuracy", "value": round(100 * r["clean_accuracy"], 2),
                                "name": f"Clean accuracy (first {r.get('n')} test images)"})
        rows = [e for _, r in self.results for e in r.get("attacks", []) if e.get("status") == "ok"]
        for fname, threat, w in self.worst_cases():
            label = f"Robust accuracy upper bound ({_threat_key_ascii(threat)}; worst: {w.get('attack')})"
            if w.get("robust_accuracy_upper_bound") is None or label in seen:
                continue
            if self.masking and not any(stands_on_masking(e) for e in rows if e.get("threat") == threat):
                continue
            seen.add(label)
            metrics.append({"type": "robust_accuracy", "value": round(100 * w["robust_accuracy_upper_bound"], 2),
                            "name": label})
        for _, r in self.results:
            for e in r.get("attacks", []):
                if e.get("status") != "ok" or e.get("success_rate") is None:
                    continue
                if e.get("metric") == "deepfool_rho":
                    if e.get("rho") is not None and "rho" not in seen:
                        seen.add("rho")
                        metrics.append({"type": "deepfool_robustness", "value": round(e["rho"], 6),
                                        "name": "DeepFool robustness rho (mean ||r||2 / ||x||2)"})
                    continue
                label = f"{e['name']} ASR ({_threat_ascii(e.get('norm'), e.get('eps'), e.get('targeted'))})"
                if label in seen:
                    label = label[:-1] + f", {e.get('suite')})"
                if label in seen:
                    continue
                seen.add(label)
                metrics.append({"type": "attack_success_rate", "value": round(100 * e["success_rate"], 2),
                                "name": label})
                paper_metric = (PAPER_SUITE_RESULTS.get(e.get("suite")) or {}).get("metric")
                accuracy = self._measured(e, "accuracy") if paper_metric == "accuracy" else None
                if accuracy is not None:  # the number a seed-003 reader compares with the paper
                    # Not "accuracy": the model's accuracy is the clean one; this is accuracy under one attack.
                    metrics.append({"type": "accuracy_under_attack", "value": round(100 * accuracy, 2),
                                    "name": f"Accuracy under {e['name']} "
                                            f"({_threat_ascii(e.get('norm'), e.get('eps'), False)}; "
                                            f"suite {e.get('suite')})"})
        return metrics

    def hub_tags(self):
        tags = ["hardened", "keras", "adversarial-robustness", "image-classification"]
        tags += [f"defense-{k}" for k in self.kinds] + ([self.dataset] if self.dataset else [])
        return tags + (["gradient-masking"] if self.masking else [])
