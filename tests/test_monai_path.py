"""The MONAI data path: one preprocessing ``Compose`` equal to the recorded outputs, MONAI augmentation.

The golden file ``tests/data/golden_preprocess.npz`` was recorded by ``tests/_golden_preprocess.py`` from the
preprocessing as it was before it became a MONAI ``Compose``; every output array must still have the same
SHA-256 digest (exact, for uint8 and float16 images alike).
"""

from __future__ import annotations

from pathlib import Path

import _golden_preprocess as golden
import numpy as np
import pytest


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(golden.GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _compare(entries, recorded: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> int:
    """Check each produced array against its digest; each recorded entry of ``prefixes`` must be produced."""
    seen: set[str] = set()
    problems: list[str] = []
    for entry, arrays in entries:
        for key, arr in arrays.items():
            name = f"{entry}|{key}"
            seen.add(name)
            if f"{name}|sha256" not in recorded:
                problems.append(f"{name}: not in the golden file")
                continue
            arr = np.asarray(arr)
            if golden._digest(arr) == str(recorded[f"{name}|sha256"]):
                continue
            ref = recorded[name]
            got = arr[..., ::2, ::2] if key == "images" else arr
            if got.shape != ref.shape or got.dtype != ref.dtype:
                problems.append(f"{name}: {got.dtype} {got.shape} vs recorded {ref.dtype} {ref.shape}")
            else:
                diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
                problems.append(f"{name}: differs (max |diff| {diff.max():.4g} on the stored pixels)")
    want = {k[: -len("|sha256")] for k in recorded if k.endswith("|sha256") and k.startswith(prefixes)}
    problems += [f"{name}: recorded but not produced" for name in sorted(want - seen)]
    assert not problems, "\n".join(problems[:20])
    return len(seen)


def test_same_slices_as_recorded_on_a_synthetic_cohort(tmp_path: Path, recorded) -> None:
    n = _compare(golden.outputs(tmp_path, None), recorded, ("synth/",))
    assert n >= 5 * len(golden.CONFIGS) * 2  # 5 cases x configurations x (images, slice_idx)


def test_same_slices_as_recorded_on_the_real_masks(tmp_path: Path, recorded, real_data_dir: Path) -> None:
    """The three real I-SPY2 masks, the breast1 NRRD label and real RGB slices (skipped without ../shared)."""
    entries = ((e, a) for e, a in golden.outputs(tmp_path, real_data_dir) if not e.startswith("synth/"))
    n = _compare(entries, recorded, ("real/", "rgb/"))
    assert n > 100
