# exercise: 05.3
# expect: wrong
# why: precision = tp / (tp + fn) and recall = tp / (tp + fp)
def spam_metrics(y_true, y_pred):
    t, p = np.asarray(y_true), np.asarray(y_pred)
    tp, fp = int(((t == 1) & (p == 1)).sum()), int(((t == 0) & (p == 1)).sum())
    fn, tn = int(((t == 1) & (p == 0)).sum()), int(((t == 0) & (p == 0)).sum())
    rec = tp / (tp + fp) if tp + fp else 0.0
    prec = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": float((t == p).mean()), "precision": prec, "recall": rec,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0, "confusion": [[tn, fp], [fn, tp]]}
