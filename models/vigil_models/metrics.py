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


def precision_at_recall(y, p, recall: float) -> dict:
    """The highest threshold whose recall (alerts: score >= threshold) reaches `recall`, and the
    precision there."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    pos = np.sort(p[y])[::-1]
    k = int(np.ceil(recall * len(pos) - 1e-9))
    thr = float(pos[max(k - 1, 0)]) if len(pos) else float("nan")
    alert = p >= thr
    tp, fp = int((alert & y).sum()), int((alert & ~y).sum())
    return {"target_recall": recall, "threshold": thr, "recall": tp / max(len(pos), 1),
            "precision": tp / (tp + fp) if tp + fp else float("nan"), "tp": tp, "fp": fp,
            "fpr": fp / max(int((~y).sum()), 1)}


def recall_at_precision(y, p, precision: float) -> dict:
    """The operating point with the highest recall whose precision (alerts: score >= threshold)
    is at least `precision`."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp, fp = np.cumsum(ys), np.cumsum(~ys)
    last = np.r_[ps[1:] != ps[:-1], True]        # cut only between distinct scores
    prec = tp / np.maximum(tp + fp, 1)
    ok = np.nonzero(last & (prec >= precision))[0]
    if len(ok) == 0:
        return {"target_precision": precision, "threshold": float("inf"), "recall": 0.0,
                "precision": float("nan"), "tp": 0, "fp": 0, "fpr": 0.0}
    k = ok[-1]
    return {"target_precision": precision, "threshold": float(ps[k]), "recall": float(tp[k] / max(ys.sum(), 1)),
            "precision": float(prec[k]), "tp": int(tp[k]), "fp": int(fp[k]),
            "fpr": float(fp[k] / max((~ys).sum(), 1))}


def alert_budget(y, p, user, day, campaign, n_users: int, n_days: int, per: int = 1000,
                 budget: float = 1.0) -> dict:
    """Recall at an alert budget: alerts are (user, day) pairs with an event scored above the
    threshold (one alert per user per day, as analysts triage); the threshold is the lowest that
    keeps the *benign* alerts (user-days alerted on benign events) within `budget` per `per`
    users per day. Recall is reported per event, per attacked user-day and per campaign."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    keys = np.array([f"{u}\x00{d}" for u, d in zip(user, day)])
    best: dict[str, float] = {}
    for k, s in zip(keys[~y], p[~y]):
        if s > best.get(k, -1.0):
            best[k] = s
    allowed = int(np.floor(budget * n_users * n_days / per + 1e-9))
    top = np.sort(np.array(list(best.values())))[::-1]
    thr = float(top[allowed]) if allowed < len(top) else 0.0
    alert = p > thr
    attacked = set(keys[y])
    caught = set(keys[y & alert])
    camps = set(np.asarray(campaign)[y])
    camps_caught = set(np.asarray(campaign)[y & alert])
    benign_alerts = len({k for k, a in zip(keys[~y], alert[~y]) if a})
    return {"budget_per_1000_users_per_day": budget, "allowed_benign_alerts": allowed,
            "benign_alerts": benign_alerts, "threshold": thr,
            "event_recall": float(alert[y].mean()) if y.any() else float("nan"),
            "event_precision": float(y[alert].mean()) if alert.any() else float("nan"),
            "user_day_recall": len(caught) / max(len(attacked), 1), "attacked_user_days": len(attacked),
            "campaign_recall": len(camps_caught) / max(len(camps), 1), "campaigns": len(camps)}


def summary(y, p, fprs=(1e-2, 1e-3)) -> dict:
    return {
        "n": int(len(y)),
        "positives": int(np.sum(y)),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "at_fpr": [at_fpr(y, p, f) for f in fprs],
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
