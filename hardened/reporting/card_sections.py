"""The Markdown sections of a model card, laid out from `CardFacts` (no number is computed here).

Each method returns the lines of one section; the template
(``templates/model_card.md``) puts them in order under the Hub metadata.
"""

import json

from hardened.evaluation.masking import FLAGS
from hardened.evaluation.suites import build_suite
from hardened.reporting.card_facts import CardFacts
from hardened.reporting.card_rows import (
    _distortion_text,
    _eval_command,
    _images_text,
    _is_transfer,
    _notes_text,
    _paper_value,
    _versions_text,
    params_summary,
)
from hardened.reporting.defenses import _RANDOM_KINDS, DATASETS, DEFENSE_TEXTS, JPEG_CAVEAT
from hardened.reporting.folder import ACCURACY_FILE, METADATA_NAME, VIEW_NAME, _read_json
from hardened.reporting.formatting import (
    _num,
    _table,
    _threat_key_text,
    _threat_text,
    format_eps,
    format_interval,
    format_rate,
)
from hardened.reporting.papers import PAPER_SUITE_RESULTS, paper_suite_rows

#: Plots embedded when present in the folder: file name -> caption.
PLOTS = {"success_vs_eps.png": "Attack success rate vs ε (masking sweep and the suite's ℓ∞ attacks)",
         "training_curve.png": "Training curve",
         "prune_curve.png": "Iterative pruning: test accuracy and compression per round",
         "reconstruction.png": "Defend++ decoder: clean images, DCT low-pass targets and reconstructions per scale"}


class CardSections(CardFacts):
    """`CardFacts` plus one method per card section."""

    WEAK_L2_GAP = 0.2

    def header(self):
        """The summary, facts line, view note, headlines and aliases (the title is the template's)."""
        lines = []
        if self.entry.get("summary"):
            lines += [str(self.entry["summary"]), ""]
        facts = [f"**Defense:** {' + '.join(self.kinds)}", f"**Dataset:** {self.dataset_display()}"]
        arch = self.entry.get("arch") or self.metadata.get("arch") or self.metadata.get("architecture")
        if arch:
            facts.append(f"**Architecture:** `{arch}`")
        facts.append("**Release:** " + ("checkpoint (config.json, model.safetensors, metadata.json)"
                                        if self.is_checkpoint() else "view of a base checkpoint (no weights)"))
        lines += [" · ".join(facts), ""]
        if self.view:
            base = self.view.get("base")
            extra = ", ".join(f"{k} {v}" for k, v in self.view.items() if k not in ("base", "transform"))
            lines += [f"Base checkpoint: `{base}`. This model is the base seen through the test-time transform "
                      f"`{self.view.get('transform')}` ({extra}); the weights are the base's.", ""]
        if self.accuracy:
            lines += [self.accuracy_headline(), ""]
        for line in self.robustness_headline():
            lines += [line, ""]
        if self.masking:
            lines += [self.masking_warning(), ""]
        if self.entry.get("aliases"):
            lines += ["Aliases: " + ", ".join(f"`{a}`" for a in self.entry["aliases"]), ""]
        return lines

    def robustness_headline(self):
        """One line per headlined threat model: worst-case robust accuracy, its attack, n, CI and masking verdict."""
        standard = self.STANDARD_LINF.get(self.dataset)
        verdict = "**yes**, see the masking section" if self.masking else "no check triggered"
        rows = []
        for c in self.headline_cases():
            note = "" if c["standard"] or standard is None else (
                f" (no attack at the standard ε = {format_eps(standard)} yet)")
            n, robust = c["n"], c["robust"]
            ci = format_interval(robust, n) if isinstance(robust, int) and isinstance(n, int) else ""
            rows.append(f"**Worst-case robust accuracy, {_threat_key_text(c['threat'])}: "
                        f"{format_rate(c['robust_accuracy'])}** {ci} % (an upper bound) against "
                        f"{c['attack']}, the strongest of {c['n_attacks']} attacks run, on the first "
                        f"{n} test images{note} · gradient masking: {verdict}.")
        return rows

    def accuracy_headline(self):
        a = self.accuracy
        low, high = a.get("ci95") or (None, None)
        ci = f" (95 % CI [{100 * low:.2f}, {100 * high:.2f}] %)" if low is not None else ""
        passes = a.get("passes") or []
        how = (f", mean of {len(passes)} passes with the randomness on: "
               + ", ".join(f"{100 * p:.2f}" for p in passes) + " %") if len(passes) > 1 else ""
        return (f"**Clean accuracy: {100 * a['accuracy']:.2f} %** on the full {self.dataset_display()} test set "
                f"({a['n']} images{how}){ci}; `{ACCURACY_FILE}`, from `{a.get('command') or 'hardened accuracy'}` "
                f"({a.get('backend')}, commit `{str(a.get('commit') or '?')[:12]}`).")

    @staticmethod
    def masking_warning():
        return ("> **Warning: gradient masking detected. CE-based attack numbers overstate robustness; see the "
                "margin/adaptive rows.**")

    def usage(self):
        lines = ["## Usage", "", "```python", "import hardened", "",
                 f'model = hardened.from_pretrained("{self.name}")   # a keras.Model on any Keras 3 backend',
                 "logits = model(images)   # float32 NHWC images in [0, 1] -> logits (softmax is yours)"]
        if self.view and self.view.get("transform"):
            t = self.view["transform"]
            args = {k: v for k, v in self.view.items() if k not in ("base", "transform", "eps")}
            extra = "".join(f", {k}={v!r}" for k, v in args.items() if k in ("seed", "layers", "resample"))
            if t == "logits_augmentation":
                func, call = t, f"logits_augmentation(base, tau={self.view.get('eps')!r})"
            elif t == "sap":
                func, call = "sap_view", f"sap_view(base, ratio={self.view.get('eps')!r}{extra})"
            else:
                func, call = "apply_gi", f"apply_gi(base, {t!r}, {self.view.get('eps')!r}{extra})"
            lines += ["", "# the same model, built from its base:", f"from hardened.layers import {func}",
                      f'base = hardened.from_pretrained("{self.view.get("base")}")', f"model = {call}"]
        lines += ["```", ""]
        return lines

    def defense_section(self):
        lines = ["## Defense", ""]
        for k in self.kinds:
            lines += [DEFENSE_TEXTS[k], ""]
        if self.view and self.view.get("eps") is not None:
            spec = {k: v for k, v in self.view.items() if k != "base"}
            lines += [f"Transform parameters of this view: `{json.dumps(spec, sort_keys=True)}`.", ""]
            if spec.get("transform") == "sap":
                where = spec.get("layers") or "fc1"
                where = ", ".join(f"`{w}`" for w in ([where] if isinstance(where, str) else where))
                lines += [f"Training-free: the base's weights, unchanged, with a SAP layer after the activations of "
                          f"{where} (the `cwcnn-sap-*` recipes' placement, between FC1 and FC2, by default); `eps` is "
                          f"the number of draws as a fraction of that layer's width, `seed` the first SAP layer's "
                          f"seed. With randomness switched off (`hardened.layers.set_randomness(model, False)`) SAP "
                          f"is the identity and the view computes its base.", ""]
        lines += self._pruning_lines()
        lines += self._defendpp_lines()
        return lines

    def _pruning_lines(self):
        """Compression reached and the logits-augmentation check, from the (base) checkpoint's metadata."""
        meta = self.metadata if self.metadata.get("sparsity") else self.base_metadata
        sparsity = meta.get("sparsity") if isinstance(meta, dict) else None
        if not isinstance(sparsity, dict) or not sparsity.get("total"):
            return []
        source = "" if meta is self.metadata else " (of the base checkpoint)"
        lines = [f"Compression reached{source}: **{sparsity['compression']:.2f}x** fewer non-zero weights in the "
                 f"pruned layers ({sparsity['nonzero']:,} of {sparsity['total']:,}).", ""]
        base_acc = (meta.get("base_checkpoint") or {}).get("test_accuracy")
        if meta.get("test_accuracy") is not None and base_acc is not None:
            lines += [f"Test accuracy after pruning {100 * meta['test_accuracy']:.2f} % against "
                      f"{100 * base_acc:.2f} % before ({100 * (meta['test_accuracy'] - base_acc):+.2f} points, "
                      f"{meta.get('n_test', '?')} test images; from the training run's metadata).", ""]
        layers = sparsity.get("layers") or {}
        if layers:
            lines += ["| layer | non-zero | total | density |", "|---|---|---|---|"]
            lines += [f"| {name} | {v['nonzero']:,} | {v['total']:,} | {v['nonzero'] / v['total']:.3f} |"
                      for name, v in layers.items()]
            lines += [""]
        la = meta.get("logits_augmentation")
        if isinstance(la, dict) and self.view and self.view.get("transform") == "logits_augmentation":
            lines += [f"Logits augmentation scales the kernel of `{la.get('layer')}` by τ = {la.get('tau'):g}, not its "
                      f"bias, so the top class can change: it agreed with the pruned model's on "
                      f"{100 * la['argmax_agreement']:.2f} % of the test images (accuracy "
                      f"{100 * la['test_accuracy']:.2f} %; from the training run's metadata).", ""]
        return lines

    def _defendpp_lines(self):
        """Defend++ training facts and the clean accuracy of its no-decoder control, from the runs' metadata."""
        info = self.metadata.get("defendpp")
        if not isinstance(info, dict) or not info.get("decoder"):
            return []
        sizes = " → ".join("x".join(map(str, s)) for s in info.get("scale_sizes") or [])
        mse = ", ".join(f"{v:.4f}" for v in info.get("test_recon_mse") or [])
        lines = [f"Training: loss `{info.get('loss')}` with λ = {info.get('lambda')}, scales {sizes}, "
                 f"decoder taps {', '.join(f'`{t}`' for t in info.get('encoder_taps') or [])} "
                 f"({info.get('decoder_parameters', 0):,} decoder parameters, not part of inference); "
                 f"test reconstruction MSE per scale: {mse}.", ""]
        control = self.folder.parent / self.undefended_name()
        control_meta = _read_json(control / METADATA_NAME) if (control / METADATA_NAME).is_file() else None
        acc = self.metadata.get("test_accuracy")
        if isinstance(control_meta, dict) and control_meta.get("test_accuracy") is not None and acc is not None:
            c_acc = control_meta["test_accuracy"]
            lines += [f"Clean test accuracy {100 * acc:.2f} % against {100 * c_acc:.2f} % for `{control.name}`, the "
                      f"same network, initialisation, batches and schedule trained without the decoder "
                      f"({100 * (acc - c_acc):+.2f} points; {self.metadata.get('n_test', '?')} test images; "
                      "from both training runs' metadata).", ""]
        return lines

    def clean_section(self):
        lines = ["## Clean accuracy", ""]
        if self.accuracy:
            a = self.accuracy
            lines.append(f"- **{100 * a['accuracy']:.2f} %** on the full test set ({a['n']} images) — "
                         f"`{ACCURACY_FILE}`; the attack suites below use the first n test images:")
        if not self.results:
            return lines + ["Not evaluated yet: this folder has no results*.json.", ""]
        for fname, r in self.results:
            acc, n, k = r.get("clean_accuracy"), r.get("n"), r.get("n_correct")
            ci = format_interval(k, n) if isinstance(k, int) and isinstance(n, int) else ""
            src = f" — `{fname}`" if self.multi else ""
            lines.append(f"- **{format_rate(acc)}** ({k}/{n} of the first {n} test images; 95 % Wilson interval "
                         f"{ci} %){src}")
        if self.paper and self.paper.get("clean_accuracy") is not None:
            lines.append(f"- paper: {self.paper['clean_accuracy']:g} % on the full test set "
                         f"({self.paper.get('source')}; model: {self.paper.get('model', 'see source')})")
        return lines + [""]

    def _paper_cell(self, e):
        if not self.paper:
            return None
        if e.get("metric") == "deepfool_rho" and self.paper.get("rho") is not None:
            return f"ρ = {self.paper['rho']:.4g}"
        rate = (self.paper.get("rates") or {}).get(e["name"])
        return "–" if rate is None else f"{rate:g} %"

    def attack_table(self, suite):
        rows_in = self.entries(suite)
        if not rows_in:
            return []
        show_paper = bool(self.paper) and any(self._paper_cell(e) not in (None, "–") for _, e in rows_in)
        header = ["attack", "threat model", "parameters", "images attacked", "success rate", "95 % CI",
                  "mean distortion (successful)", "status", "notes"]
        if show_paper:
            header.insert(6, "paper")
        if self.multi:
            header.append("results file")
        rows = []
        for fname, e in rows_in:
            status = e.get("status", "?")
            if status == "skipped":
                status = f"skipped: {e.get('reason') or e.get('skip_reason') or 'no reason recorded'}"
            elif status == "error":
                status = f"**error**: {e.get('error') or 'no message recorded'}"
            ok = e.get("status") == "ok" and e.get("success_rate") is not None
            row = [e["name"], _threat_text(e.get("norm"), e.get("eps"), e.get("targeted")) +
                   (" (black-box)" if e.get("black_box") else ""),
                   params_summary(e), _images_text(e),
                   format_rate(e.get("success_rate"))
                   + (f" ({e.get('n_success')}/{e.get('n_attacked')})" if ok else ""),
                   format_interval(e.get("n_success", 0), e.get("n_attacked", 0)) if ok else "",
                   _distortion_text(e), status, _notes_text(e)]
            if show_paper:
                row.insert(6, self._paper_cell(e))
            if self.multi:
                row.append(f"`{fname}`")
            rows.append(row)
        return _table(header, rows)

    def seed_section(self):
        rows = self.entries("hash-gi")
        if not rows:
            return []
        r = self.primary
        eps = r.get("eps") or {}
        lines = ["## Robustness: the seed papers' attacks (suite `hash-gi`)", "",
                 f"Success rate = share of the correctly classified images that the attack turns into a "
                 f"misclassification (targeted: share of (image, target) pairs that reach the target). Attack "
                 f"settings: `{r.get('settings')}`; ℓ∞ ε = {_num(eps.get('seed_linf'))} "
                 f"({eps.get('seed_linf_source', 'source not recorded')}).", ""]
        lines += self.attack_table("hash-gi") + [""]
        lines += self.not_run("hash-gi")
        for fname, res in self.results:
            summ = res.get("summary") or {}
            mean = summ.get("mean_white_box_success_rate_seed")
            if mean is None:
                continue
            over = summ.get("mean_white_box_attacks") or []
            line = (f"Mean white-box success rate over {len(over)} attacks ({', '.join(over)}): "
                    f"**{format_rate(mean)}**" + (f" (`{fname}`)" if self.multi else ""))
            if self.paper and self.paper.get("average") is not None:
                paper_over = self.paper.get("average_over") or []
                line += f"; paper average {self.paper['average']:g} %"
                if paper_over:
                    line += f" over {len(paper_over)} attacks ({', '.join(paper_over)})"
                    if sorted(over) != sorted(paper_over):
                        line += " — a different set of attacks, not directly comparable"
            lines += [line + ".", ""]
            if summ.get("deepfool_rho") is not None:
                lines += [f"DeepFool robustness ρ (mean ‖r‖₂/‖x‖₂ of the minimal perturbations): "
                          f"{summ['deepfool_rho']:.4g}" + (f"; paper ρ = {self.paper['rho']:.4g}"
                                                           if self.paper and self.paper.get("rho") is not None
                                                           else "") + ".", ""]
                if self.paper and self.paper.get("rho") is not None:
                    lines += ["ρ here is measured on images in [0, 1] with the model's own preprocessing inside "
                              "it, DeepFool's overshoot 0.02 included; the paper does not state its input scale "
                              "or normalisation (a [0, 255] or mean-subtracted input changes ‖x‖₂ and so ρ), so "
                              "compare ρ between the zoo's models, not with the paper's value.", ""]
        if self.paper:
            lines += [f"Paper column: {self.paper.get('source')}"
                      + (f"; paper model: {self.paper['model']}" if self.paper.get("model") else "")
                      + (f". {self.paper['protocol']}" if self.paper.get("protocol") else "") + ".", ""]
            paper_eps = self.paper.get("eps") or {}
            if self.view and self.view.get("transform") in paper_eps and self.view.get("eps") is not None \
                    and float(self.view["eps"]) != float(paper_eps[self.view["transform"]]):
                lines += [f"The paper used ε = {paper_eps[self.view['transform']]:g} for "
                          f"{self.view['transform'].upper()}; this view uses ε = {self.view['eps']:g}.", ""]
        return lines

    def adaptive_section(self):
        if not self.entries("adaptive"):
            return []
        r = self.primary
        eps = r.get("eps") or {}
        lines = ["## Robustness: adaptive attacks (suite `adaptive`)", "",
                 f"What a careful evaluation adds: PGD with cross-entropy, margin (C&W) and DLR losses, BPDA, EOT "
                 f"and fixed-randomness PGD for randomized models, a gradient-free attack (Square) and AutoAttack. "
                 f"ℓ∞ ε = {_num(eps.get('adaptive_linf'))} "
                 f"({eps.get('adaptive_linf_source', 'source not recorded')}).",
                 ""]
        return lines + self.attack_table("adaptive") + [""] + self.not_run("adaptive")

    def paper_suite_section(self, suite):
        rows_in = self.entries(suite)
        if not rows_in:
            return []
        spec = PAPER_SUITE_RESULTS[suite]
        accuracy = spec["metric"] == "accuracy"
        papers = paper_suite_rows(suite, self.dataset, self.kinds) if self.show_paper else []
        undefended = self.undefended_results(suite)
        lines = [f"## Robustness: {spec['title']} (suite `{suite}`)", ""]
        if accuracy:
            lines += ["The paper reports **accuracy under attack**: the share of the evaluated images still "
                      "classified correctly after the attack, here (correct images − successes) / images. The "
                      "success rate on the correctly classified images is given beside it.", ""]
        else:
            lines += ["Success rate = share of the correctly classified images that the attack turns into a "
                      "misclassification (targeted: share of (image, target) pairs that reach the target). "
                      "`Grey-…` rows are grey-box transfer attacks: crafted on the source model below, scored "
                      "on this model.", ""]
        for fname, r in self.results:
            if r.get("suite") != suite:
                continue
            src = r.get("transfer_source")
            where = f" (`{fname}`)" if self.multi else ""
            if src:
                lines += [f"Transfer source{where}: `{src.get('model_name')}` (weights sha256 "
                          f"`{src.get('weights_sha256') or 'not recorded'}`, recorded from {src.get('recorded_from')})"
                          ".", ""]
            elif any(_is_transfer(e) for e in r.get("attacks", [])):
                lines += [f"No transfer source was given{where}: the grey-box rows are skipped.", ""]
        by_name = {e.get("name"): e for e in (undefended[1].get("attacks", []) if undefended else [])}
        header = ["attack", "threat model", "parameters", "images attacked"]
        header += (["accuracy under attack"] if accuracy else ["success rate", "95 % CI"])
        header += [f"paper: {p['label']}" for p in papers]
        if undefended:
            header.append(f"undefended `{undefended[0]}` (measured)")
        header += (["success rate", "95 % CI"] if accuracy else []) + ["mean distortion (successful)", "status",
                                                                       "notes"]
        if self.multi:
            header.append("results file")
        rows = []
        for fname, e in rows_in:
            ok = e.get("status") == "ok" and e.get("success_rate") is not None
            rate = [format_rate(e.get("success_rate")) + (f" ({e.get('n_success')}/{e.get('n_attacked')})"
                                                          if ok else ""),
                    format_interval(e.get("n_success", 0), e.get("n_attacked", 0)) if ok else ""]
            row = [e["name"], _threat_text(e.get("norm"), e.get("eps"), e.get("targeted")) +
                   (" (grey-box transfer)" if _is_transfer(e) else " (black-box)" if e.get("black_box") else ""),
                   params_summary(e), _images_text(e)]
            row += [format_rate(self._measured(e, "accuracy"))] if accuracy else rate
            row += [_paper_value((p.get("rates") or {}).get(e["name"])) for p in papers]
            if undefended:
                row.append(format_rate(self._measured(by_name.get(e["name"]), spec["metric"])))
            status = e.get("status", "?")
            if status == "skipped":
                status = f"skipped: {e.get('reason') or 'no reason recorded'}"
            elif status == "error":
                status = f"**error**: {e.get('error') or 'no message recorded'}"
            row += (rate if accuracy else []) + [_distortion_text(e), status, _notes_text(e)]
            if self.multi:
                row.append(f"`{fname}`")
            rows.append(row)
        lines += _table(header, rows) + [""]
        clean = [f"this model {format_rate(r.get('clean_accuracy'))}" + (f" (`{f}`)" if self.multi else "")
                 for f, r in self.results if r.get("suite") == suite]
        if undefended:
            clean.append(f"undefended `{undefended[0]}` {format_rate(undefended[1].get('clean_accuracy'))} "
                         f"(measured on its first {undefended[1].get('n')} test images)")
        clean += [f"paper {p['label']} {p['clean_accuracy']:g} %" for p in papers
                  if p.get("clean_accuracy") is not None]
        lines += ["Clean accuracy: " + "; ".join(clean) + ".", ""]
        lines += self._weaker_l2_attack_lines(rows_in)
        lines += self.not_run(suite)
        if papers:
            lines += [f"Paper columns: {spec['source']}; {spec['protocol']}. The paper's model is not this one; "
                      "an empty cell (–) means the summary quotes no number for that attack.", ""]
        return lines

    def _weaker_l2_attack_lines(self, rows_in):
        """Warn when an unbounded (minimal-distortion) l2 attack of a paper suite is far below another one.

        Both try to misclassify every image at any l2 distance, so the weaker one
        failed as an attack (e.g. seed 003's C&W 5 x 20 barely moves MNIST's
        saturated 0/1 pixels in tanh space); its accuracy-under-attack overstates
        robustness, and the card must say so rather than let the row stand alone.
        """
        l2 = [e for _, e in rows_in if e.get("norm") == "l2" and e.get("eps") is None and not _is_transfer(e)
              and not e.get("targeted") and e.get("status") == "ok" and e.get("success_rate") is not None]
        if len(l2) < 2:
            return []
        best = max(l2, key=lambda e: e["success_rate"])
        weak = [e for e in l2 if best["success_rate"] - e["success_rate"] >= self.WEAK_L2_GAP]
        if not weak:
            return []
        names = ", ".join(f"{e['name']} ({format_rate(e['success_rate'])})" for e in weak)
        return [f"**Weak attack:** {names} succeeded far less often than {best['name']} "
                f"({format_rate(best['success_rate'])}), although both are unbounded ℓ2 attacks that may use any "
                "distortion. The paper's budget for it is too small here, so its accuracy under attack overstates "
                f"this model's robustness; read the {best['name']} row and the adaptive suite instead.", ""]

    def not_run(self, suite):
        """A line naming the suite's attacks that an ``only=`` selection left out (never silently dropped)."""
        lines = []
        for fname, r in self.results:
            if not r.get("only") or r.get("suite") not in (suite, "full"):
                continue
            try:
                specs = build_suite(r["suite"], dataset=r.get("settings"), randomized=bool(r.get("randomized")),
                                    backend=r.get("backend"))
            except ValueError:
                continue
            ran = {e.get("name") for e in r.get("attacks", [])}
            # A spec that could not run on this model anyway (EOT on a deterministic one) is not "left out".
            missing = [sp.name for sp in specs if sp.suite == suite and sp.name not in ran and not sp.skip_reason]
            if missing:
                only = r.get("only")
                only = ",".join(only) if isinstance(only, (list, tuple)) else only
                lines += [f"**Not run in this evaluation** (not in the run's selection `--only {only}`; nothing "
                          f"is claimed about them): {', '.join(missing)}"
                          + (f" (`{fname}`)" if self.multi else "") + ".", ""]
        return lines

    def worst_section(self):
        worst = self.worst_cases()
        if not worst:
            return []
        lines = ["## Worst case per threat model", "",
                 "The strongest single attack of each threat model (untargeted, bounded). Robust accuracy = clean "
                 "accuracy × (1 − its success rate): an upper bound, since a stronger attack can only lower it.", ""]
        rows = [[_threat_key_text(t), w.get("attack"), format_rate(w.get("max_success_rate")),
                 format_rate(w.get("robust_accuracy_upper_bound"))] + ([f"`{f}`"] if self.multi else [])
                for f, t, w in worst]
        header = ["threat model", "strongest attack", "success rate", "robust accuracy (upper bound)"]
        return lines + _table(header + (["results file"] if self.multi else []), rows) + [""]

    def masking_section(self):
        if not self.results:
            return []
        lines = ["## Gradient-masking checks", ""]
        if self.masking:
            lines += [self.masking_warning(), ""]
        else:
            lines += ["No masking check triggered. These checks are necessary, not sufficient: passing them does "
                      "not prove robustness.", ""]
        rows = []
        for fname, r in self.results:
            for f in r.get("flags", []):
                mark = "**yes**" if f.get("triggered") else ("no" if f.get("evaluated", True) else "n/a")
                detail = f.get("detail", "") + (" (computed from the saved rows when this card was rendered)"
                                                 if f.get("added_from_rows") else "")
                rows.append([f.get("name"), f.get("kind", ""), mark, detail]
                            + ([f"`{fname}`"] if self.multi else []))
        header = ["check", "kind", "triggered", "evidence"] + (["results file"] if self.multi else [])
        lines += _table(header, rows) + [""]
        errors = {k: v for _, r in self.results for k, v in (r.get("masking_errors") or {}).items()}
        if errors:
            lines += ["Masking-check errors (the dependent checks are marked n/a):", ""]
            lines += [f"- {k}: {v}" for k, v in sorted(errors.items())] + [""]
        return lines

    def plots_section(self):
        present = [(f, c) for f, c in PLOTS.items() if (self.folder / f).is_file()]
        if not present:
            return []
        lines = ["## Plots", ""]
        for f, caption in present:
            lines += [f"![{caption}]({f})", "", f"*{caption}.*", ""]
        return lines

    def limitations_section(self):
        items = []
        flags = {}
        for _, r in self.results:
            for f in r.get("flags", []):
                if f.get("triggered"):
                    flags.setdefault(f["name"], f)
        if self.masking:
            items.append("**CE-based attack numbers overstate robustness.** At least one gradient-masking check "
                         "triggered (below); the robustness of this model is what the margin/DLR, BPDA and "
                         "gradient-free rows say, not the FGSM/BIM/MIM rows.")
        for name, f in flags.items():
            items.append(f"{FLAGS[name].sentence if name in FLAGS else name} ({f.get('detail')}).")
        if any(k in self.kinds for k in ("gi1", "gi2", "la")) and not self.results:
            items.append("GI1/GI2 and logits augmentation work by saturating the softmax; expect CE attacks to "
                         "fail and logit attacks not to. This release has not been evaluated yet.")
        elif any(k in self.kinds for k in ("gi1", "gi2", "la")) and "ce_margin_gap" not in flags:
            items.append("GI1/GI2 and logits augmentation work by saturating the softmax; expect CE attacks to "
                         "fail and logit attacks not to. The CE-vs-margin check did not trigger in this evaluation; "
                         "compare the PGD-CE and PGD-margin rows.")
        if any(k in self.kinds for k in _RANDOM_KINDS) and "randomized" not in flags and self.results:
            items.append("This defense is randomized by design, but the evaluation found the model deterministic "
                         "(see the `randomized` check).")
        for _, r in self.results:
            budget = r.get("budget") or {}
            if budget.get("quick") and budget.get("capped_attacks"):
                items.append(f"Budget: {budget.get('note')}. Their intervals are correspondingly wide.")
                break
        for fname, r in self.results:
            if r.get("only"):
                only = r["only"] if isinstance(r["only"], list) else [r["only"]]
                items.append(f"Only a selection of the `{r.get('suite')}` suite ran ({', '.join(map(str, only))})"
                             + (f" in `{fname}`" if self.multi else "") + "; attacks left out are not reported.")
        n_values = sorted({r.get("n") for _, r in self.results if r.get("n") is not None})
        if n_values:
            targeted = any(e.get("targeted") and e.get("status") == "ok"
                           for _, r in self.results for e in r.get("attacks", []))
            items.append(f"Only the first {', '.join(map(str, n_values))} test images were evaluated; the 95 % "
                         "intervals are Wilson intervals for that sample."
                         + (" Targeted attacks count (image, target) pairs, which are not independent, so their "
                            "intervals are too narrow." if targeted else ""))
        problems = [(e["name"], e.get("status")) for _, r in self.results for e in r.get("attacks", [])
                    if e.get("status") in ("skipped", "error")]
        if problems:
            items.append("Not every attack ran: " + ", ".join(f"{n} ({s})" for n, s in problems)
                         + "; the tables say why. The worst case is over the attacks that ran.")
        if self.jpeg_copy():
            items.append(JPEG_CAVEAT)
        if self.paper and self.paper.get("model") and self.results:
            items.append(f"The paper numbers are for its own model ({self.paper['model']}) on the full test set; "
                         "differences in architecture, training and sample size make the comparison indicative only.")
        if not items:
            return []
        return ["## Limitations / honest reading", ""] + [f"- {t}" for t in items] + [""]

    def data_section(self):
        lines = ["## Data", ""]
        ds = DATASETS.get(self.dataset)
        lines.append(f"- dataset: {self.dataset_display()}" + (f" (Hub id `{ds[1]}`)" if ds else ""))
        for fname, r in self.results:
            lines.append(f"- evaluation images: `{r.get('data_source')}`" + (f" (`{fname}`)" if self.multi else ""))
        for copy, where in ((self.metadata.get("data_copy"), ""), ((self.view or {}).get("data_copy"), ""),
                            (self.base_metadata.get("data_copy"), " (from the base checkpoint's metadata)")):
            if copy:
                lines.append(f"- copy used: {copy}{where}")
                break
        if self.dataset == "cifar10":
            if self.jpeg_copy():
                lines.append(f"- **Caveat:** {JPEG_CAVEAT}")
            elif not any("load_dataset" not in f for f in self.copy_fields()):
                lines.append("- The CIFAR-10 copy is not recorded in the metadata. The copy provided in this "
                             "project's offline environment is a JPEG re-encoding; if that one was used, accuracies "
                             "are not directly comparable to the original test set.")
        prep = self.metadata.get("preprocessing")
        if prep:
            lines.append(f"- preprocessing: `{json.dumps(prep, sort_keys=True)}`")
        return lines + [""]

    def reproduction_section(self):
        lines = ["## Reproduction", ""]
        m = self.metadata
        if self.view and not m:
            lines += [f"Training: see the card of the base checkpoint `{self.view.get('base')}`; this view only "
                      "applies the transform above at load time.", ""]
        if m:
            lines += ["Training (from `metadata.json`):", ""]
            for key, label in (("recipe", "recipe"), ("commit", "commit"), ("seed", "seed")):
                if m.get(key) is not None:
                    lines.append(f"- {label}: `{m[key]}`")
            if m.get("command"):
                lines += ["- command:", "", "  ```sh", f"  {m['command']}", "  ```"]
            training = m.get("training") or m.get("training_summary")
            if isinstance(training, dict) and training:
                history = training.get("history")
                rest = {k: v for k, v in training.items() if k != "history"} if isinstance(history, list) else training
                lines.append("- training summary: " + ", ".join(
                    f"{k} = {_num(v) if isinstance(v, float) else v}" for k, v in sorted(rest.items())))
                if isinstance(history, list) and history:
                    lines += ["", *_history_table(history)]
            elif training:
                lines.append(f"- training summary: {training}")
            versions = m.get("versions")
            if isinstance(versions, dict) and versions:
                lines.append("- versions at save time: " + _versions_text(versions))
            lines.append("")
        for fname, r in self.results:
            lines += [f"Evaluation (`{fname}`):", ""]
            cmd = r.get("command") or _eval_command(self.name, r)
            lines += ["```sh", cmd, "```", ""]
            budget = r.get("budget") or {}
            lines += [
                f"- suite `{r.get('suite')}`, n = {r.get('n')} images" +
                (f" (requested {r.get('n_requested')})" if r.get("n_requested") not in (None, r.get("n")) else "") +
                f", seed {r.get('seed')}, batch size {r.get('batch_size')}, backend `{r.get('backend')}`",
                f"- budget: {budget.get('note', 'not recorded')}",
                f"- started {r.get('started_at', 'not recorded')}, {_num(r.get('seconds'), '{:.1f}')} s in total",
                f"- versions: {_versions_text(r.get('versions') or {})}",
            ]
            ck = r.get("checkpoint")
            if isinstance(ck, dict) and ck.get("weights_sha256"):
                lines.append(f"- evaluated weights: sha256 `{ck['weights_sha256']}`")
            lines.append("")
        if any(r.get("attacks") for _, r in self.results):
            lines += ["<details><summary>Every attack's parameters, as run</summary>", ""]
            for fname, r in self.results:
                for e in r.get("attacks", []):
                    wp = json.dumps(e.get("wrapper_params") or {}, sort_keys=True)
                    wrapper = f" wrapped in `{e['wrapper']}({wp})`" if e.get("wrapper") else ""
                    lines.append(f"- **{e['name']}** ({e.get('suite')}, `{e.get('attack')}`{wrapper}): "
                                 f"`{json.dumps(e.get('params') or {}, sort_keys=True)}`; "
                                 f"{_num(e.get('seconds'), '{:.1f}')} s"
                                 + (f"; source: {e['source']}" if e.get("source") else "")
                                 + (f"; note: {e['note']}" if e.get("note") else "")
                                 + (f" (`{fname}`)" if self.multi else ""))
            lines += ["", "</details>", ""]
        return lines

    def files_section(self):
        if not self.is_checkpoint():
            return ["## Files", "", f"A view: `{VIEW_NAME}` names the base checkpoint and the transform; this "
                                    "repository holds no weights.", ""]
        files = self.metadata.get("files") or {}
        if not files:
            return []
        lines = ["## Files", ""]
        for name in sorted(files):
            info = files[name] or {}
            size = f", {info['bytes']} bytes" if info.get("bytes") is not None else ""
            lines.append(f"- `{name}`: sha256 `{info.get('sha256')}`{size}")
        for key in ("num_parameters", "input_shape", "output_shape"):
            if self.metadata.get(key) is not None:
                lines.append(f"- {key.replace('_', ' ')}: {self.metadata[key]}")
        return lines + [""]


#: Column titles of a training history's known keys (others keep their key as the title).
_HISTORY_TITLES = {"epoch": "epoch", "loss": "train loss", "accuracy": "train accuracy", "eps": "train ε",
                   "val_accuracy": "clean accuracy (monitor)", "val_adv_accuracy": "PGD accuracy (monitor)",
                   "seconds": "seconds"}


def _history_table(history):
    """A per-epoch Markdown table of ``metadata['training']['history']`` (adversarial training's PGD monitor
    shows there, so a collapse such as FGSM's catastrophic overfitting is visible on the card)."""
    keys = [k for k in _HISTORY_TITLES if any(k in h for h in history)]
    keys += sorted({k for h in history for k in h} - set(keys))
    lines = ["  | " + " | ".join(_HISTORY_TITLES.get(k, k) for k in keys) + " |",
             "  |" + "---|" * len(keys)]
    for h in history:
        cells = []
        for k in keys:
            v = h.get(k)
            if k == "epoch" and isinstance(v, (int, float)):
                cells.append(str(int(v) + 1))
            elif isinstance(v, float) and k == "eps":
                cells.append(format_eps(v))
            elif isinstance(v, float) and k in ("accuracy", "val_accuracy", "val_adv_accuracy"):
                cells.append(f"{100 * v:.2f} %")
            elif isinstance(v, float):
                cells.append(_num(v))
            else:
                cells.append("" if v is None else str(v))
        lines.append("  | " + " | ".join(cells) + " |")
    return lines + [""]
