"""Radiomics, deep-learning radiomics (DLR), clinical fusion and URAN pipelines (seeds 000-003).

Nothing heavy is imported here: pyradiomics is an optional extra (``pip install her2mri[radiomics]``) and is
only imported by :mod:`her2mri.radiomics.extract` when features are extracted. Import the submodules you
need, e.g. ``from her2mri.radiomics.rings import peritumoral_ring``.

Modules:
    cases: :class:`RadiomicsCase` records (image(s), mask, spacing, label, pid) and adapters.
    volumes: reading NIfTI / NRRD volumes and 2-D PNG/JPG images with metadata spacing.
    rings: spacing-exact peritumoral rings of N mm.
    extract: pyradiomics extraction over a cohort (parallel, cached).
    icc: vectorised intraclass correlation ICC(2,1) / ICC(3,1).
    selection: sklearn feature-selection transformers (fitted inside cross-validation only).
    models: classifiers, grid searches and the Rad-score.
    evaluate: cross-validated and held-out predictions of a whole pipeline.
    dlr: deep features (timm backbone or her2mri checkpoint) and PCA fusion.
    clinical: univariable / stepwise multivariable logistic regression (statsmodels).
    clinical_fusion: the clinical and combined (clinical + signatures) runs of an experiment, nomogram.
    uran: HKFS + MAAE + FC classifier (plain torch loop; a Lightning module too) on tabular features.
    labels: HER2 labels from IHC / ISH, HER2-low, status change.
    cohort: the cohort of ``her2mri-radiomics`` and its config entry point (train or apply).
    pipelines: the four seed experiments end to end.
    persist: saved models (joblib, SHA-256 manifest) and Rad-score formulas (JSON).
    apply: scoring a new cohort with the saved models of a run (``mode=apply``).
"""
