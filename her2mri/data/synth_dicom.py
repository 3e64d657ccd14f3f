"""The synthetic cohort written as DICOM studies (``her2mri-synth OUT --format dicom``).

Layout written under ``out`` (what a PACS export plus a radiologist's masks look like)::

    {pid}/...                 the DICOM files of the study (random names, nested folders), DCE acquisitions in
                              one of the layouts of :mod:`her2mri.data.dicom_series`
    {pid}/{pid}_mask.nii.gz   the tumour mask (NIfTI, RAS affine of the DICOM grid): found by her2mri-import's
                              default mask pattern
    labels.csv                patient_id, label (HER2pos), split, site: ``her2mri-import --labels``
    synth_truth.csv           the planted per-patient parameters

The voxels are those of :func:`her2mri.data.synth.make_synthetic_cohort` with the same arguments; the
geometry is an axial series (rows along +x, columns along +y, slices from inferior to superior) with the
metadata spacing, so ``her2mri-import`` gives back the same (z, y, x) arrays. Acquisition k starts
``k * FRAME_MINUTES`` minutes after the first; the default phase rule then picks (0, 2, last), the indices of
the NIfTI cohort's metadata. The headers carry made-up identifying values (name, birth date, institution) so
that the import's PHI policy can be seen at work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2mri.data.synth import FRAME_MINUTES, SyntheticCohort, make_synthetic_cohort

DICOM_LAYOUTS: tuple[str, ...] = ("series", "temporal", "times", "enhanced", "mixed")
SPLIT_NAMES: dict[int, str] = {0: "train", 1: "test", 2: "val"}


def make_synthetic_dicom_cohort(
    out: str | Path, *, dicom_layout: str = "series", show_progress: bool = False, **synth_kwargs: Any
) -> SyntheticCohort:
    """Write the synthetic cohort as one DICOM study folder per patient.

    Args:
        out: output folder (created).
        dicom_layout: ``series``, ``temporal``, ``times``, ``enhanced`` or ``mixed`` (the four in turn).
        show_progress: tqdm progress bars.
        **synth_kwargs: passed to :func:`her2mri.data.synth.make_synthetic_cohort` (n, seed, shape, ...;
            ``layout`` and ``dtype`` are fixed here).

    Returns:
        A :class:`SyntheticCohort` whose ``metadata_csv`` is ``labels.csv``.

    Raises:
        ValueError: bad ``dicom_layout`` or synthesis argument.
    """
    import nibabel as nib

    from her2mri.data.dicom_write import write_dicom_study
    from her2mri.data.geometry import dicom_affine_lps, lps_to_ras
    from her2mri.data.io import read_mask, read_volume

    if dicom_layout not in DICOM_LAYOUTS:
        raise ValueError(f"dicom_layout={dicom_layout!r} must be one of {DICOM_LAYOUTS}")
    for key in ("layout", "dtype"):
        if key in synth_kwargs:
            raise ValueError(f"{key}={synth_kwargs[key]!r} cannot be set for the DICOM cohort")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synth-nifti-", dir=root) as tmp:
        cohort = make_synthetic_cohort(tmp, layout="patient", show_progress=show_progress, **synth_kwargs)
        meta = pd.read_csv(cohort.metadata_csv)
        iterator: Any = meta.itertuples(index=False)
        if show_progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=len(meta), desc="writing DICOM", unit="patient")
        for i, row in enumerate(iterator):
            pid = str(row.pid)
            src = Path(tmp) / pid
            vols = [
                read_volume(src / f"{pid}_spy2_vis1_dce_aqc_{k}.nii.gz", dtype=None)
                for k in range(row.n_times)
            ]
            spacing = (float(row.slice_thick), float(row.xy_spacing), float(row.xy_spacing))
            shape = vols[0].shape
            origin = tuple(-0.5 * (n - 1) * s for n, s in zip(shape[::-1], spacing[::-1], strict=True))
            layout = DICOM_LAYOUTS[i % 4] if dicom_layout == "mixed" else dicom_layout
            write_dicom_study(
                vols,
                root / pid,
                times_s=[k * FRAME_MINUTES * 60.0 for k in range(len(vols))],
                spacing_zyx=spacing,
                origin_lps=origin,
                layout=layout,
                patient={
                    "PatientID": pid,
                    "PatientName": f"SYNTHETIC^PATIENT{i + 1}",
                    "PatientBirthDate": "19700101",
                    "InstitutionName": "Synthetic General Hospital",
                    "ReferringPhysicianName": "SYNTHETIC^DOCTOR",
                },
                seed=i,
                nested=True,
            )
            mask = read_mask(src / f"{pid}_spy2_vis1_mask.nii.gz")
            affine = lps_to_ras(dicom_affine_lps(origin, (1, 0, 0, 0, 1, 0), spacing[1:], spacing[0]))
            nib.save(
                nib.Nifti1Image(np.ascontiguousarray(mask.transpose(2, 1, 0)), affine),
                str(root / pid / f"{pid}_mask.nii.gz"),
            )
        labels = pd.DataFrame(
            {
                "patient_id": meta["pid"],
                "label": meta["HER2pos"],
                "split": [SPLIT_NAMES[int(c)] for c in meta["test"]],
                **({"site": meta["site"]} if "site" in meta.columns else {}),
            }
        )
        labels_csv = root / "labels.csv"
        labels.to_csv(labels_csv, index=False)
        truth_csv = root / "synth_truth.csv"
        truth_csv.write_bytes(Path(cohort.truth_csv).read_bytes())
    return SyntheticCohort(
        root=root, metadata_csv=labels_csv, truth_csv=truth_csv, pids=cohort.pids, labels=cohort.labels
    )
