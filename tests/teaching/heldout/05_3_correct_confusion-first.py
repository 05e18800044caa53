# exercise: 05.3
# expect: correct
# why: builds the confusion matrix with np.add.at, then the scores
def spam_metrics(y_true, y_pred):
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    (tn, fp), (fn, tp) = cm
    p = tp / (tp + fp) if tp + fp > 0 else 0.0
    r = tp / (tp + fn) if tp + fn > 0 else 0.0
    return {"accuracy": (tp + tn) / cm.sum(), "precision": p, "recall": r, "f1": 0.0 if p + r == 0 else 2 * p * r / (p + r),
            "confusion": cm.tolist()}
