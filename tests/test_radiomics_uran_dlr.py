"""URAN (HKFS + MAAE + FC) and deep-learning radiomics (deep features, PCA fusion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from her2mri.radiomics.dlr import DeepPCA, deep_features, load_backbone, roi_crop
from her2mri.radiomics.evaluate import build_pipeline
from her2mri.radiomics.selection import build_selection_steps
from her2mri.radiomics.uran import MAAE, URANClassifier, URANNet


def test_maae_hidden_width_and_gating() -> None:
    m = MAAE(channels=2, reduction=16)  # the published setting: width would be 2 // 16 = 0
    assert m.hidden == 1
    h = torch.randn(5, 2, 8)
    w = m.weights(h)
    assert w.shape == (5, 2) and (w > 0).all() and (w < 1).all()
    assert not torch.allclose(w, torch.full_like(w, 0.5))  # not a constant 0.5 gate
    torch.testing.assert_close(m(h), h * w.unsqueeze(-1))
    net = URANNet(7, channels=4, length=3)
    assert net(torch.randn(6, 7)).shape == (6,)
    with pytest.raises(ValueError, match="channels"):
        MAAE(0)


def test_uran_pipeline_learns_with_hkfs_inside() -> None:
    rng = np.random.default_rng(0)
    n, p = 120, 30
    X = pd.DataFrame(rng.normal(size=(n, p))).add_prefix("f")
    y = (X["f0"] + X["f1"] + 0.5 * rng.normal(size=n) > 0).astype(int).to_numpy()
    steps = build_selection_steps(["zscore", "lasso"], lasso_method="l1_logistic", lasso_cv=3)
    pipe = build_pipeline(steps, URANClassifier(max_epochs=60, batch_size=80))
    pipe.fit(X.iloc[:80], y[:80])
    kept = list(pipe[:-1].get_feature_names_out())
    assert "f0" in kept and "f1" in kept and len(kept) < p
    prob = pipe.predict_proba(X.iloc[80:])[:, 1]
    assert ((prob > 0) & (prob < 1)).all()
    assert roc_auc_score(y[80:], prob) > 0.85


def test_roi_crop_and_deep_pca() -> None:
    vol = np.zeros((6, 40, 40), np.float32)
    mask = np.zeros_like(vol, bool)
    mask[2, 10:15, 10:20] = True
    mask[3, 10:30, 10:30] = True  # the largest slice
    vol[3] = np.arange(40)[None, :]
    crop = roi_crop([vol], mask, margin_px=2)
    assert crop.shape == (3, 24, 24)
    np.testing.assert_allclose(crop.mean(axis=(1, 2)), 0, atol=1e-5)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(30, 12)), columns=[f"dl__{i}" for i in range(10)] + ["rad_a", "rad_b"])
    pca = DeepPCA(n_components=4).fit(X.iloc[:20])
    out = pca.transform(X.iloc[20:])
    assert list(out.columns) == ["rad_a", "rad_b", "dlpca__0", "dlpca__1", "dlpca__2", "dlpca__3"]
    assert list(pca.get_feature_names_out()) == list(out.columns)


def test_deep_features_from_local_weights(tmp_path: Path) -> None:
    import nibabel as nib
    import timm

    from her2mri.radiomics.cases import RadiomicsCase

    src = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    model = load_backbone("resnet10t", weights=tmp_path / "w.pt")
    torch.testing.assert_close(model.conv1[0].weight, src.conv1[0].weight)
    cases = []
    for i in range(3):
        img = np.random.default_rng(i).normal(size=(5, 32, 32)).astype(np.float32)
        m = np.zeros((5, 32, 32), np.uint8)
        m[2, 8:20, 8:20] = 1
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(tmp_path / f"i{i}.nii"))
        nib.save(nib.Nifti1Image(m, np.eye(4)), str(tmp_path / f"m{i}.nii"))
        cases.append(
            RadiomicsCase(f"p{i}", {"early": tmp_path / f"i{i}.nii"}, tmp_path / f"m{i}.nii", (2.0, 1, 1))
        )
    df = deep_features(cases, model, image_size=32, batch_size=2)
    assert df.shape == (3, model.num_features) and list(df.index) == ["p0", "p1", "p2"]
    assert df.columns[0] == "dl__0" and np.isfinite(df.to_numpy()).all()
    rt = deep_features(cases, model, image_size=32, mask_variant="dilate")
    assert rt.columns[0] == "retest__dl__0"


def test_uran_plain_loop_matches_lightning_trainer() -> None:
    """The plain torch loop of URANClassifier gives the Lightning Trainer's predictions (same seed)."""
    from lightning import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from her2mri.radiomics.uran import URANModule

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + 0.5 * rng.normal(size=40) > 0).astype(np.float32)
    clf = URANClassifier(max_epochs=25, random_state=3).fit(X, y)
    # the same optimisation in a Trainer, as URAN ran before: same seed, same pos_weight, a seeded shuffled
    # DataLoader of batch 32 (two batches of the 40 rows per epoch)
    torch.manual_seed(3)
    module = URANModule(6, lr=clf.lr, weight_decay=clf.weight_decay, pos_weight=(40 - y.sum()) / y.sum())
    xt = torch.from_numpy((X - clf.mean_) / clf.scale_)
    ds = TensorDataset(xt, torch.from_numpy(y))
    loader = DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
    Trainer(max_epochs=25, accelerator="cpu", devices=1, barebones=True).fit(module, loader)
    module.eval()
    with torch.no_grad():
        ref = module(xt).numpy()
    np.testing.assert_allclose(clf.decision_function(X), ref, rtol=1e-4, atol=1e-5)
    assert np.std(ref) > 0.1  # the networks learned something, not a constant


def test_uran_minibatch_and_bad_batch_size() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 4))
    y = (X[:, 0] > 0).astype(int)
    a = URANClassifier(max_epochs=5, batch_size=8).fit(X, y).decision_function(X)
    b = URANClassifier(max_epochs=5, batch_size=8).fit(X, y).decision_function(X)
    np.testing.assert_array_equal(a, b)  # seeded batch order: reproducible
    c = URANClassifier(max_epochs=5, batch_size=None).fit(X, y).decision_function(X)
    assert not np.allclose(a, c)  # mini-batches are really taken
    d = URANClassifier(max_epochs=5).fit(X, y).decision_function(X)  # 30 rows <= 32: a full batch too
    np.testing.assert_array_equal(c, d)
    with pytest.raises(ValueError, match="batch_size"):
        URANClassifier(batch_size=0).fit(X, y)
