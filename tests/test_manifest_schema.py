"""The one manifest schema: read by the training data path and by ``her2mri-radiomics`` through one reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2mri.data.errors import DataError
from her2mri.data.manifest import read_manifest
from her2mri.data.readers import load_breastdcedl
from her2mri.radiomics.cases import read_case_arrays
from her2mri.radiomics.cohort import load_cases

ROOT = Path(__file__).resolve().parents[1]


def _pngs(folder: Path, n: int) -> list[dict[str, object]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = rng.integers(20, 60, (32, 40)).astype(np.uint8)
        mask = np.zeros((32, 40), np.uint8)
        mask[8 + i : 20, 10:30] = 255
        Image.fromarray(img).save(folder / f"us{i}.png")
        Image.fromarray(mask).save(folder / f"us{i}_mask.png")
        rows.append(
            {"case_id": f"u{i}", "image": f"us{i}.png", "mask": f"us{i}_mask.png", "spacing_y": 0.1,
             "spacing_x": 0.2, "label": i % 2, "split": "train", "age": 40 + i, "site": "B"}
        )  # fmt: skip
    return rows


def test_one_manifest_reader_in_the_code() -> None:
    """``git grep`` finds one definition of the manifest reader (issue 12)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: git grep needs one")
    out = subprocess.run(
        ["git", "grep", "-n", "def read_manifest", "--", "her2mri"], cwd=ROOT, capture_output=True, text=True
    )
    hits = [line for line in out.stdout.splitlines() if line]
    assert len(hits) == 1 and hits[0].startswith("her2mri/data/manifest.py:"), hits


def test_radiomics_reads_a_2d_manifest_through_the_data_reader(tmp_path: Path) -> None:
    pd.DataFrame(_pngs(tmp_path, 3)).to_csv(tmp_path / "us.csv", index=False)
    cohort = {"source": "manifest", "manifest": str(tmp_path / "us.csv"), "image_columns": ["image"]}
    cases = load_cases(cohort, tmp_path / "cache")
    assert [c.pid for c in cases] == ["u0", "u1", "u2"]
    assert [c.label for c in cases] == [0, 1, 0]
    c1 = cases[1]
    assert c1.is_2d and c1.images == {"image": tmp_path / "us1.png"}
    assert c1.mask_path == tmp_path / "us1_mask.png"
    assert c1.spacing == (0.1, 0.2) and c1.split == "train"
    assert c1.clinical == {"age": 41, "site": "B"}
    images, mask, spacing = read_case_arrays(c1)
    assert images["image"].shape == (32, 40) and spacing == (0.1, 0.2)
    assert int(mask.sum()) == (20 - 9) * 20


def test_radiomics_volume_manifest_row_axis_order_and_extra_masks(synthetic_cohort, tmp_path: Path) -> None:
    recs0 = [r for r in load_breastdcedl(*synthetic_cohort) if r.mask_path is not None][:2]
    rows = [
        {"case_id": r.pid, "early": str(r.phase_paths[1]), "mask": str(r.mask_path),
         "mask2": str(r.mask_path), "breast_mask": str(r.mask_path), "axis_order": "zyx" if i == 0 else "",
         "label": 1}
        for i, r in enumerate(recs0)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    recs = read_manifest(tmp_path / "m.csv", image_columns=("early",), axis_order="xyz")
    assert [r.extra["axis_order"] for r in recs] == ["zyx", "xyz"]  # the row overrides the reader's default
    assert recs[0].extra["mask2_path"] == Path(rows[0]["mask2"])
    assert recs[0].extra["breast_mask_path"] == Path(rows[0]["breast_mask"])
    assert recs[0].phase_paths is None and recs[0].images == {"early": Path(rows[0]["early"])}
    cohort = {"source": "manifest", "manifest": str(tmp_path / "m.csv"), "image_columns": ["early"]}
    cases = load_cases(cohort, tmp_path / "cache")
    assert [c.axis_order for c in cases] == ["zyx", "zyx"]  # radiomics' default axis order stays zyx
    assert cases[0].mask2_path == Path(rows[0]["mask2"]) and "mask2_path" not in cases[0].clinical
    images, mask, spacing = read_case_arrays(cases[0])
    assert images["early"].shape == mask.shape == (24, 64, 64) and len(spacing) == 3


def test_old_radiomics_manifest_fails_naming_file_column_and_fix(tmp_path: Path) -> None:
    rows = _pngs(tmp_path, 1)
    rows[0]["pid"] = rows[0].pop("case_id")
    csv = tmp_path / "old.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    cohort = {"source": "manifest", "manifest": str(csv), "image_columns": ["image"]}
    with pytest.raises(DataError, match=r"old\.csv: column 'pid' .*rename the column 'pid' to 'case_id'"):
        load_cases(cohort, tmp_path)


def test_radiomics_manifest_needs_a_mask_and_its_image_columns(tmp_path: Path) -> None:
    rows = _pngs(tmp_path, 2)
    rows[1]["mask"] = ""
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    cohort = {"source": "manifest", "manifest": str(tmp_path / "m.csv"), "image_columns": ["image"]}
    with pytest.raises(DataError, match=r"m\.csv: column 'mask' .*\['u1'\]"):
        load_cases(cohort, tmp_path)
    with pytest.raises(DataError, match=r"missing manifest column\(s\) \['us'\]"):
        load_cases({**cohort, "image_columns": ["us"]}, tmp_path)


def test_spacing_rules_of_2d_pictures_and_volumes(tmp_path: Path) -> None:
    rows = _pngs(tmp_path, 1)
    rows[0]["spacing_z"] = 1.0
    pd.DataFrame(rows).to_csv(tmp_path / "z.csv", index=False)
    with pytest.raises(DataError, match="spacing_z given for a 2-D picture"):
        read_manifest(tmp_path / "z.csv", image_columns=("image",))
    rows = _pngs(tmp_path, 1)
    del rows[0]["spacing_x"]
    pd.DataFrame(rows).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DataError, match=r"spacing column\(s\) \['spacing_x'\]"):
        read_manifest(tmp_path / "x.csv", image_columns=("image",))


def test_phase_manifest_of_training_is_unchanged(synthetic_cohort, tmp_path: Path) -> None:
    """The data path reads phase manifests as before: no images, spacing (z, y, x), extra columns kept."""
    r = load_breastdcedl(*synthetic_cohort)[0]
    pre, early, late = (str(p) for p in r.phase_paths)
    pd.DataFrame(
        [{"case_id": r.pid, "pre": pre, "early": early, "late": late, "label": 0,
          "spacing_z": 2.0, "spacing_y": 0.7, "spacing_x": 0.7, "age": 55, "axis_order": "zyx"}]
    ).to_csv(tmp_path / "m.csv", index=False)  # fmt: skip
    (rec,) = read_manifest(tmp_path / "m.csv")
    assert rec.images is None and rec.phase_paths == tuple(Path(p) for p in (pre, early, late))
    assert rec.spacing == (2.0, 0.7, 0.7) and rec.extra == {"age": 55, "axis_order": "zyx"}
    assert rec.source_files() == [Path(pre), Path(early), Path(late)]
