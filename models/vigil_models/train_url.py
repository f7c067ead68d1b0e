"""Trains the default URL-phishing model and writes the bundle `models/url-phishing/`.

    cd models && ../.venv/bin/python -m vigil_models.train_url

Deterministic (fixed seeds). Data: `models/data/phishing-urls/urls.csv` (Hannousse & Yahiouche,
CC BY 4.0) and `models/data/benign-domains/majestic_million_top15000.csv` (Majestic-12, CC BY
3.0), see models/data/README.md. Features are computed from the URL string only, by the
contract's transforms (`vigil_models.features`, the same code path as the sidecar), from
`url.original` or else `url.full`. Stratified 80/20 train/validation split; the golden rows and
`models/samples/urls.ndjson` come from the validation part; MODEL_CARD.md is written with the
validation metrics.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from .features import FeatureExtractor
from .metrics import markdown_metrics, summary
from .xgb_bundle import export_binary

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent
DATA = MODELS / "data"
SCRIPT = "models/vigil_models/train_url.py"
SEED = 20240601
SOURCE = ["url.original", "url.full"]

SUSPICIOUS_TOKENS = ["login", "verify", "account", "secure", "update", "bank", "paypal", "signin",
                     "webscr", "confirm", "password", "ebayisapi", "wp-", "admin", "billing",
                     "support", "unlock", "suspend"]
BRAND_TOKENS = ["paypal", "apple", "microsoft", "office", "outlook", "amazon", "netflix",
                "google", "facebook", "instagram", "whatsapp", "dropbox", "docusign", "chase",
                "wellsfargo", "bankofamerica", "ebay", "adobe"]
SUSPICIOUS_TLDS = ["tk", "ml", "ga", "cf", "gq", "xyz", "top", "info", "club", "online", "site",
                   "website", "live", "ru", "cn", "buzz", "work", "support", "icu", "pw", "cc",
                   "br", "in"]
SHORTENERS = ["bit.ly", "goo.gl", "tinyurl.com", "ow.ly", "t.co", "is.gd", "buff.ly", "cutt.ly",
              "rebrand.ly", "bitly.com", "shorturl.at", "tiny.cc", "rb.gy", "adf.ly"]


def _f(name: str, kind: str, part: str | None = None, **kw) -> dict:
    t = {"kind": kind}
    if part:
        t["part"] = part
    t.update(kw)
    return {"name": name, "source": SOURCE, "transform": t, "missing": None}


FEATURES = [
    _f("url_length", "length"),
    _f("host_length", "length", "host"),
    _f("path_length", "length", "path"),
    _f("query_length", "length", "query"),
    _f("url_digit_ratio", "digit_ratio"),
    _f("host_digit_ratio", "digit_ratio", "host"),
    _f("url_entropy", "entropy"),
    _f("host_entropy", "entropy", "host"),
    _f("url_dots", "char_count", chars="."),
    _f("host_hyphens", "char_count", "host", chars="-"),
    _f("url_hyphens", "char_count", chars="-"),
    _f("url_at_signs", "char_count", chars="@"),
    _f("url_underscores", "char_count", chars="_"),
    _f("url_question_marks", "char_count", chars="?"),
    _f("url_equals", "char_count", chars="="),
    _f("url_ampersands", "char_count", chars="&"),
    _f("url_percents", "char_count", chars="%"),
    _f("url_slashes", "char_count", chars="/"),
    _f("host_is_ip", "is_ip", "host"),
    _f("host_labels", "label_count", "host"),
    _f("path_segments", "segment_count", "path"),
    _f("query_params", "param_count", "query"),
    _f("suspicious_tokens", "token_count", tokens=SUSPICIOUS_TOKENS),
    _f("brand_in_url", "token_presence", tokens=BRAND_TOKENS),
    _f("brand_in_path", "token_presence", "path", tokens=BRAND_TOKENS),
    _f("path_has_php", "token_presence", "path", tokens=[".php"]),
    _f("path_has_http", "token_presence", "path", tokens=["http", "www."]),
    _f("scheme_https", "equals", "scheme", value="https"),
    _f("suspicious_tld", "suffix_in", "host", values=SUSPICIOUS_TLDS),
    _f("url_shortener", "in_set", "host", values=SHORTENERS),
    _f("top_domain", "in_set", "host", values_file="top_domains.txt"),
]


def load_urls() -> tuple[list[str], np.ndarray]:
    with open(DATA / "phishing-urls" / "urls.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seen, urls, y = set(), [], []
    for r in rows:
        u = r["url"]
        if u in seen:  # one duplicate in the file
            continue
        seen.add(u)
        urls.append(u)
        y.append(1 if r["status"] == "phishing" else 0)
    return urls, np.asarray(y, dtype=np.int64)


def top_domains_text() -> str:
    with open(DATA / "benign-domains" / "majestic_million_top15000.csv", newline="", encoding="utf-8") as f:
        doms = [r["Domain"].strip().lower() for r in csv.DictReader(f)]
    return "\n".join(dict.fromkeys(d for d in doms if d)) + "\n"


def document(url: str, rng: np.random.Generator) -> dict:
    r = rng.random()
    if r < 0.05:
        return {"url": {"full": url}}
    if r < 0.10:
        return {"url.original": url}
    return {"url": {"original": url}}


def manifest() -> dict:
    return {
        "name": "url-phishing",
        "version": "1.0.0",
        "description": "Scores a URL (url.original, else url.full) for phishing from the URL string "
                       "alone: lengths, character counts, entropy, host shape, suspicious tokens and "
                       "TLDs, membership in the Majestic top 15,000 domains. XGBoost trained on "
                       "Hannousse & Yahiouche (2021, CC BY 4.0). See MODEL_CARD.md.",
        "task": "binary",
        "model": {"file": "model.onnx", "sha256": "", "output": "probabilities"},
        "classes": ["legitimate", "phishing"],
        "positive_class": "phishing",
        "threshold": 0.5,
        "target_field": "ml.inference.url-phishing",
        "explanation": {"method": "auto", "top_k": 5, "min_score": 0.0, "budget": 16},
        "features": FEATURES,
        "reference_sample": "reference.json",
        "golden": {"file": "golden.json", "tolerance": 1e-5},
    }


def train(Xtr, ytr, Xva, yva):
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=300, max_depth=5, learning_rate=0.08, subsample=0.9,
                              colsample_bytree=0.8, min_child_weight=1.0, reg_lambda=1.0,
                              n_jobs=2, random_state=SEED, tree_method="hist",
                              eval_metric="logloss")
    model.fit(Xtr, ytr)
    return model


def cross_validated(X, y, folds: int = 5) -> dict:
    """Out-of-fold predictions over all rows: 5x more negatives than the validation split, for
    a less coarse estimate at FPR 1e-3."""
    from sklearn.model_selection import StratifiedKFold

    oof = np.zeros(len(y))
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(X, y):
        oof[b] = train(X[a], y[a], None, None).predict_proba(X[b])[:, 1]
    return summary(y, oof)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the URL-phishing model")
    ap.add_argument("--out", default=str(MODELS / "url-phishing"))
    ap.add_argument("--samples", default=str(MODELS / "samples" / "urls.ndjson"))
    ap.add_argument("--golden-rows", type=int, default=200)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from sklearn.model_selection import train_test_split

    urls, y = load_urls()
    top = top_domains_text()
    (out / "top_domains.txt").write_text(top, encoding="utf-8")
    fx = FeatureExtractor(FEATURES, out)
    X = fx.extract_many({"url": {"original": u}} for u in urls)
    idx = np.arange(len(urls))
    tr, va = train_test_split(idx, test_size=0.2, stratify=y, random_state=SEED)
    tr, va = np.sort(tr), np.sort(va)
    model = train(X[tr], y[tr], X[va], y[va])
    p_va = model.predict_proba(X[va])[:, 1]
    p_tr = model.predict_proba(X[tr])[:, 1]
    s_va, s_tr = summary(y[va], p_va), summary(y[tr], p_tr)
    s_cv = cross_validated(X, y)

    rng = np.random.default_rng(SEED)
    gold_idx = np.sort(rng.choice(va, size=min(args.golden_rows, len(va)), replace=False))
    docs = [document(urls[i], rng) for i in gold_idx]
    Xg = fx.extract_many(docs)
    parity = export_binary(model, out, manifest(), X[tr], Xg, docs, SCRIPT,
                           extra_files={"top_domains.txt": top})

    # demo samples: held-out URLs not used as golden rows
    rest = np.setdiff1d(va, gold_idx)
    pick = np.sort(rng.choice(rest, size=min(300, len(rest)), replace=False))
    samples = Path(args.samples)
    samples.parent.mkdir(parents=True, exist_ok=True)
    with open(samples, "w", encoding="utf-8") as f:
        for i in pick:
            f.write(json.dumps({"url": {"original": urls[i]},
                                "labels": {"vigil_truth": "phishing" if y[i] else "legitimate"}},
                               ensure_ascii=False) + "\n")

    gain = model.get_booster().get_score(importance_type="total_gain")
    names = [f["name"] for f in FEATURES]
    imp = sorted(((gain.get(f"f{j}", 0.0), names[j]) for j in range(len(names))), reverse=True)
    write_card(out, s_va, s_tr, s_cv, parity, imp, len(urls), int(y.sum()), len(tr), len(va))
    report = {"validation": s_va, "cross_validation_5fold": s_cv, "train": {k: s_tr[k] for k in ("roc_auc", "pr_auc", "brier")},
              "parity": parity}
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"validation": {k: s_va[k] for k in ("roc_auc", "pr_auc", "brier", "ece")},
                      "at_fpr": [{k: a[k] for k in ("target_fpr", "precision", "recall", "fp")}
                                 for a in s_va["at_fpr"]], "parity": parity}, indent=1))
    return 0


def write_card(out: Path, s_va, s_tr, s_cv, parity, imp, n, n_pos, n_tr, n_va):
    feats = "\n".join(
        f"| {i} | `{f['name']}` | `{f['transform']['kind']}`"
        f"{' (' + f['transform']['part'] + ')' if 'part' in f['transform'] else ''} | "
        f"{_args(f['transform'])} |" for i, f in enumerate(FEATURES))
    top = ", ".join(f"`{name}`" for _, name in imp[:10])
    card = f"""# url-phishing — model card

Scores a URL for phishing from the URL string alone, at ingest time. Output: the probability of
`phishing` (classes `["legitimate", "phishing"]`), with a TreeSHAP explanation per document.
Bundle written by `models/vigil_models/train_url.py` (deterministic):

    bash models/setup.sh
    cd models && ../.venv/bin/python -m vigil_models.train_url

## Data and license

- **Phishing and legitimate URLs**: A. Hannousse, S. Yahiouche, "Web page phishing detection",
  Mendeley Data V3 (2021), doi:10.17632/c2gw7fy2j4.3, **CC BY 4.0**. A subset of {n:,} distinct
  URLs ({n_pos:,} phishing, {n - n_pos:,} legitimate), collected around 2020 from phishing feeds
  and search results. Copied unmodified to `models/data/phishing-urls/urls.csv`.
- **Popular domains**: "Majestic Million, Majestic-12 Ltd", **CC BY 3.0**; the top 15,000
  domains (`models/data/benign-domains/`), shipped lowercased as `top_domains.txt` for the
  `top_domain` feature. Popular is not the same as clean: shorteners and free hosting appear.
- Split: stratified 80/20 (seed {SEED}): {n_tr:,} training rows, {n_va:,} validation rows.
  The golden rows (200) and `models/samples/urls.ndjson` (300) come from the validation part.

## Model

XGBoost 2.1.4 binary classifier, 300 trees of depth <= 5 (learning rate 0.08, subsample 0.9,
colsample 0.8), exported with onnxmltools 1.13 ({parity['trees']} trees, {parity['nodes']:,} ONNX
nodes). Features are read from `url.original`, else `url.full`; a document with neither gets
NaN for every feature (the trees' missing branches), which is not a meaningful score.

Parity checked at export: onnxruntime vs XGBoost probabilities max |diff| {parity['ort_vs_native']:.2e};
ONNX tree margin vs XGBoost margin {parity['onnx_margin_vs_native']:.2e}; sum of XGBoost
contributions vs margin {parity['local_accuracy']:.2e}.

## Features ({len(FEATURES)})

All from the URL string by the bundle contract's transforms (`docs/bundle-format.md`); `part`
is the contract's simple URL split (no normalisation, no public-suffix list).

| # | name | transform | arguments |
|---|---|---|---|
{feats}

Most important by total gain: {top}.

## Validation metrics

{markdown_metrics(s_va)}

Training set, for comparison: ROC-AUC {s_tr['roc_auc']:.4f}, PR-AUC {s_tr['pr_auc']:.4f},
Brier {s_tr['brier']:.4f}.

### 5-fold cross-validation (out-of-fold scores over all {s_cv['n']:,} URLs, same settings)

{markdown_metrics(s_cv, reliability=False)}

How to read these: the validation split has {s_va['n'] - s_va['positives']} legitimate URLs, so at
FPR 1e-3 it allows no false positive at all (the threshold sits above the highest-scoring
legitimate URL) and the row is a very coarse estimate; the cross-validated row, with
{s_cv['n'] - s_cv['positives']:,} legitimate URLs, allows {int(1e-3 * (s_cv['n'] - s_cv['positives']))}
and is the better estimate, still with a wide error bar. The data set is balanced (half phishing); real traffic has
a far lower phishing rate, so the **precision in production will be much lower** than above at the
same threshold, and the probabilities are calibrated to a 50% prior, not to your traffic. Pick
the threshold from the FPR you can afford (table above), not from the default 0.5.

## Known limitations

- **Stale labels**: labels come from ~2020 blocklists and crawls; some phishing hosts have since
  been cleaned or re-registered, some "legitimate" pages have since been compromised.
- **Dated data**: phishing kits, hosting (free site builders, cloud storage, IPFS gateways) and
  brand targets change quickly; data from ~2020 will miss current campaigns. Retrain regularly.
- **String only**: no page content, DNS, WHOIS age, certificate or reputation features. A
  phishing page on a popular platform (e.g. a form on a large hosting or document site) looks
  legitimate to this model; an unusual but benign URL (long tracking links, IP-address hosts in
  intranets) can look suspicious.
- **Data-set artefacts**: the legitimate URLs were largely collected from search results and
  the phishing ones from feeds, so they differ in ways unrelated to maliciousness (e.g. `www.`
  prefixes, https share, path style). The model may partly learn the collection process. A
  "host starts with `www.`" feature was tried and dropped for that reason: it was the single
  most important feature (validation ROC-AUC 0.965 with it, 0.960 without).
- **`top_domain`** matches the whole host without `www.` only; subdomains of popular sites do
  not match, and attacker-controlled subdomains of free hosting on the list would.
- **English-centric tokens**, and no handling of punycode/IDN homoglyphs.
- Use it as one signal for triage, never as a sole blocking decision.
"""
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def _args(t: dict) -> str:
    parts = []
    for k, v in t.items():
        if k in ("kind", "part"):
            continue
        if isinstance(v, list):
            v = ", ".join(v[:8]) + (f", … ({len(v)})" if len(v) > 8 else "")
        parts.append(f"{k}: {v}")
    return "; ".join(parts).replace("|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
