"""Data layer of her2mri: cohort readers, MONAI preprocessing transforms, cache, synthetic cohort, splits.

Nothing heavy is imported here (no torch, no MONAI): import the submodules you need, e.g.
``from her2mri.data.pipeline import preprocess_case``.
"""
