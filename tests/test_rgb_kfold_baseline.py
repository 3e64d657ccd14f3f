"""tools/rgb_kfold_baseline.py: RGB box statistics, a logistic regression per fold, pooled OOF AUC."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location(
        "her2mri_rgb_kfold_baseline", ROOT / "tools" / "rgb_kfold_baseline.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _cohort(root: Path, n: int = 12) -> Path:
    """n patients, 2 slices of 32 px each; inside the box (x 8..23, y 4..19) R = 40, G = 40 + wash-in,
    B = G + late change; HER2+ patients wash out (late change -20), HER2- keep rising (+20)."""
    rows = []
    for i in range(n):
        her2 = i % 2
        wash_in, late = 60 + i, (-20 if her2 else 20)
        for k in range(2):
            img = np.full((32, 32, 3), 10, np.uint8)
            img[4:20, 8:24] = (40, 40 + wash_in, 40 + wash_in + late)
            name = f"P{i:02d}/slice_{k:03d}.png"
            (root / "images" / f"P{i:02d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "images" / name)
            row = {"filename": name, "pid": f"P{i:02d}", "her2": her2, "split": "test", "slice_index": k}
            rows.append({**row, "cohort": "s1", "bbox_x": 8, "bbox_y": 4, "bbox_w": 16, "bbox_h": 16})
    csv = root / "index.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_features_follow_their_formula_and_folds_pool(tool, tmp_path):
    from her2mri.data.rgb import read_rgb_slices
    from her2mri.data.splits import make_kfold_split

    csv = _cohort(tmp_path)
    rec = {r.pid: r for r in read_rgb_slices(csv)}["P03"]
    feats = tool.patient_features(rec)
    assert np.allclose(feats, [63.0, -20.0, -20.0 / 63.0])
    records = read_rgb_slices(csv)
    split = tmp_path / "split.json"
    make_kfold_split([r.pid for r in records], [r.label for r in records], 3, 0, path=split)
    res = tool.run(csv, split, tmp_path / "out", 3)
    assert res["n"] == 12 and res["n_pos"] == 6 and res["folds"] == [0, 1, 2]
    assert res["auroc"] == 1.0  # the late change separates the classes exactly
    assert json.loads((tmp_path / "out" / "oof.json").read_text())["auroc"] == res["auroc"]
    preds = pd.concat(
        pd.read_csv(tmp_path / "out" / f"fold{k}" / "predictions" / "test_patients.csv") for k in range(3)
    )
    assert sorted(preds["pid"]) == sorted(r.pid for r in records)
