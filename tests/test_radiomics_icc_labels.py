"""ICC against the Shrout & Fleiss (1979) example; HER2 label rules."""

from __future__ import annotations

import numpy as np
import pytest

from her2mri.radiomics.icc import icc
from her2mri.radiomics.labels import (
    apply_label,
    her2_binary,
    her2_category,
    her2_low_vs_zero,
    her2_status_change,
    parse_ihc,
)

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def test_icc_shrout_fleiss_reference_values() -> None:
    ratings = SF[:, :, None]  # (n, k, 1 feature)
    assert icc(ratings, "2,1")[0] == pytest.approx(0.29, abs=0.005)
    assert icc(ratings, "3,1")[0] == pytest.approx(0.71, abs=0.005)


def test_icc_vectorised_and_shift_sensitivity() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 3))
    b = a + rng.normal(scale=0.1, size=a.shape)
    b[:, 1] += 3.0  # systematic shift on feature 1
    b[:, 2] = rng.normal(size=50)  # unrelated feature 2
    v21, v31 = icc([a, b], "2,1"), icc([a, b], "3,1")
    assert v21[0] > 0.95 and v31[0] > 0.95
    assert v31[1] > 0.95 and v21[1] < 0.3  # absolute agreement penalises the shift, consistency does not
    assert abs(v21[2]) < 0.4
    assert np.isnan(icc([np.ones((5, 1)), np.ones((5, 1))])[0])
    with pytest.raises(ValueError, match="kind"):
        icc([a, b], "1,1")


def test_her2_labels() -> None:
    assert her2_binary("3+") == 1 and her2_binary(0) == 0 and her2_binary("1+") == 0
    assert her2_binary("2+", "amplified") == 1 and her2_binary("2+", "negative") == 0
    assert her2_binary("2+", None) is None and her2_binary(None) is None
    assert her2_category("1+") == "HER2-low" and her2_category("2+", 0) == "HER2-low"
    assert her2_category(0) == "HER2-0" and her2_category(2, 1) == "HER2-positive"
    assert her2_low_vs_zero("1+") == 1 and her2_low_vs_zero("0") == 0 and her2_low_vs_zero("3+") is None
    assert her2_status_change("1+", None, "0", None) == 1  # low -> zero
    assert her2_status_change("1+", None, "0", None, scheme="binary") == 0  # both negative
    assert her2_status_change("3+", None, "2+", "neg") == 1
    assert her2_status_change("3+", None, "2+", None) is None
    assert apply_label("low_vs_zero", [{"ihc": "1+"}, {"ihc": "3+"}]) == [1, None]
    with pytest.raises(ValueError, match="ihc"):
        parse_ihc("4+")
    with pytest.raises(ValueError, match="scheme"):
        her2_status_change(0, None, 1, None, scheme="x")
