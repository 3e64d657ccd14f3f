"""Parameter-light baseline for pre-fused RGB slices under the folds of a ``sweep=folds`` split file.

For cohorts released as RGB slices (R = pre, G = early, B = late; e.g. ``../shared/data/real/
fedsubtype_ispy_rgb``) there is no tumour mask, only a tumour box per slice. Per patient this computes, inside
each slice's box (clipped to the image), the median wash-in ``G - R`` and the median late change ``B - G``
(0-255 units of the released joint normalisation), averages them over the patient's slices, and adds the
late/early ratio ``median(B - G) / max(median(G - R), 1)``. For every fold of the split file a standardised
logistic regression (scikit-learn, ``C=1``) is fitted on the fold's train and val patients and scores its
test patients; the test predictions are written as ``<out>/fold<k>/predictions/test_patients.csv``, the same
layout as a her2mri run, so :func:`her2mri.runs.oof.pooled_oof_auc` (what ``her2mri-summarize`` uses) pools
them into one out-of-fold patient AUC with a DeLong CI, printed and written to ``<out>/oof.json``.

Usage::

    python tools/rgb_kfold_baseline.py --index-csv ../shared/data/real/fedsubtype_ispy_rgb/subset_index.csv \\
        --split-file runs/real/splits/rgb_slices_k5_seed0.json --out runs/real/baseline
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FEATURES: tuple[str, ...] = ("wash_in_median", "late_change_median", "late_early_ratio")


def patient_features(record: object) -> np.ndarray:
    """The three features of one RGB-slice record (``rgb_paths`` and ``extra['rgb_bboxes']``)."""
    from her2mri.data.errors import DataError
    from her2mri.data.io import read_rgb

    boxes = getattr(record, "extra", {}).get("rgb_bboxes")
    paths = record.rgb_paths  # type: ignore[attr-defined]
    wash_in, late = [], []
    for k, path in enumerate(paths):
        img = read_rgb(path).astype(np.float32)  # (H, W, 3)
        h, w = img.shape[:2]
        if boxes is not None and boxes[k] is not None and all(np.isfinite(boxes[k])):
            x, y, bw, bh = (int(round(float(v))) for v in boxes[k])
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        else:
            x0, y0, x1, y1 = 0, 0, w, h
        if x1 <= x0 or y1 <= y0:
            raise DataError(f"{path}: tumour box {boxes[k] if boxes else None} lies outside the image")
        roi = img[y0:y1, x0:x1]
        wash_in.append(float(np.median(roi[..., 1] - roi[..., 0])))
        late.append(float(np.median(roi[..., 2] - roi[..., 1])))
    wi, lc = float(np.mean(wash_in)), float(np.mean(late))
    return np.array([wi, lc, lc / max(wi, 1.0)], dtype=np.float64)


def _write_predictions(path: Path, pids: Sequence[str], labels: np.ndarray, probs: np.ndarray) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pd.DataFrame({"pid": list(pids), "label": labels.astype(int), "prob": probs}).to_csv(tmp, index=False)
    os.replace(tmp, path)


def run(index_csv: Path, split_file: Path, out: Path, n_folds: int) -> dict:
    """Fit and score every fold; returns the pooled out-of-fold result as a dict."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from her2mri.data.rgb import read_rgb_slices
    from her2mri.data.splits import load_split
    from her2mri.runs.oof import pooled_oof_auc

    records = {r.pid: r for r in read_rgb_slices(index_csv)}
    feats = {pid: patient_features(rec) for pid, rec in records.items()}
    labels = {pid: int(rec.label) for pid, rec in records.items()}
    run_dirs, folds = [], []
    for fold in range(n_folds):
        split = load_split(split_file, fold)
        fit_ids = [p for p in (*split["train"], *split.get("val", [])) if p in feats]
        test_ids = [p for p in split["test"] if p in feats]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        model.fit(np.stack([feats[p] for p in fit_ids]), [labels[p] for p in fit_ids])
        probs = model.predict_proba(np.stack([feats[p] for p in test_ids]))[:, 1]
        fold_dir = out / f"fold{fold}"
        _write_predictions(
            fold_dir / "predictions" / "test_patients.csv",
            test_ids,
            np.array([labels[p] for p in test_ids]),
            probs,
        )
        run_dirs.append(fold_dir)
        folds.append(fold)
    pooled = pooled_oof_auc(run_dirs, folds, seed=None, method="delong").to_dict()
    pooled["features"] = list(FEATURES)
    tmp = out / f".oof.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(pooled, indent=1), encoding="utf-8")
    os.replace(tmp, out / "oof.json")
    return pooled


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index-csv", type=Path, required=True, help="slice index CSV (subset_index.csv)")
    ap.add_argument("--split-file", type=Path, required=True, help="k-fold split file of a sweep=folds run")
    ap.add_argument("--out", type=Path, required=True, help="output folder (fold<k>/predictions, oof.json)")
    ap.add_argument("--n-folds", type=int, default=5)
    args = ap.parse_args(argv)
    if args.n_folds < 2:
        raise ValueError(f"--n-folds={args.n_folds} must be >= 2")
    res = run(args.index_csv, args.split_file, args.out, args.n_folds)
    print(json.dumps(res, indent=1))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
