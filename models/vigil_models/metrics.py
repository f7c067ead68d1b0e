"""Validation metrics for the shipped binary models (model cards)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def at_fpr(y: np.ndarray, p: np.ndarray, target: float) -> dict:
    """The operating point with the highest recall whose false-positive rate is <= target
    (threshold = a score of a negative example, alerts are score > threshold, or >= the
    smallest score above it)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    neg = np.sort(p[~y])[::-1]
    n_neg, n_pos = len(neg), int(y.sum())
    allowed = int(np.floor(target * n_neg + 1e-9))  # false positives allowed
    # Alert on scores strictly above the (allowed+1)-th highest negative score.
    cut = neg[allowed] if allowed < n_neg else -np.inf
    alert = p > cut
    tp = int((alert & y).sum())
    fp = int((alert & ~y).sum())
    return {
        "target_fpr": target,
        "threshold": float(cut),
        "fpr": fp / max(n_neg, 1),
        "recall": tp / max(n_pos, 1),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "tp": tp,
        "fp": fp,
        "negatives": n_neg,
    }


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(m.sum()),
                     "mean_score": float(p[m].mean()), "observed_rate": float(y[m].mean())})
    return rows


def expected_calibration_error(y, p, bins: int = 10) -> float:
    rel = reliability(y, p, bins)
    n = sum(r["n"] for r in rel)
    return float(sum(r["n"] * abs(r["mean_score"] - r["observed_rate"]) for r in rel) / n)


def summary(y, p) -> dict:
    return {
        "n": int(len(y)),
        "positives": int(np.sum(y)),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "at_fpr": [at_fpr(y, p, f) for f in (1e-2, 1e-3)],
        "reliability": reliability(y, p),
    }


def markdown_metrics(s: dict, reliability: bool = True, split: str = "validation") -> str:
    out = [
        f"- rows: {s['n']} ({s['positives']} positive)",
        f"- ROC-AUC: {s['roc_auc']:.4f}",
        f"- PR-AUC (average precision): {s['pr_auc']:.4f}",
        f"- Brier score: {s['brier']:.4f}; expected calibration error (10 bins): {s['ece']:.4f}",
        "",
        "| target FPR | threshold (alert if score >) | measured FPR | recall | precision | TP | FP | negatives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in s["at_fpr"]:
        out.append(f"| {a['target_fpr']:g} | {a['threshold']:.4f} | {a['fpr']:.4f} | {a['recall']:.3f} | "
                   f"{a['precision']:.3f} | {a['tp']} | {a['fp']} | {a['negatives']} |")
    if not reliability:
        return "\n".join(out)
    out += ["", f"Reliability ({split}):", "", "| score bin | rows | mean score | observed positive rate |",
            "|---|---|---|---|"]
    for r in s["reliability"]:
        out.append(f"| {r['bin']} | {r['n']} | {r['mean_score']:.3f} | {r['observed_rate']:.3f} |")
    return "\n".join(out)
