"""Model card beside the checkpoints (issue 14 item 7)."""

from __future__ import annotations

import json

import pytest

from her2mri.runs.model_card import CARD_JSON, CARD_MD, card_id, card_id_for, file_sha256


def test_card_written_beside_the_checkpoints(tiny_run):
    run, ckpt = tiny_run
    folder = ckpt.parent
    card = json.loads((folder / CARD_JSON).read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model_card"] == str(folder / CARD_JSON)
    for key in ("name", "version", "intended_use", "input", "training_cohort", "metrics", "threshold",
                "her2mri_version", "seed", "date", "references"):  # fmt: skip
        assert card.get(key) not in (None, "", [], {}), key
    assert card["not_for_clinical_use"] is True and "Not for clinical use" in card["intended_use"]
    sha = file_sha256(ckpt)
    assert card["id"] == card_id("resnet34", sha) == card_id_for(ckpt, "resnet34")
    assert card["checkpoints"][0] == {"file": ckpt.name, "role": "best", "sha256": sha, "card_id": card["id"]}
    # input specification = what the checkpoint stores
    assert (
        card["input"]["preprocessing"]["image_size"] == 32 and card["input"]["preprocessing"]["n_slices"] == 2
    )
    assert card["input"]["spacing_mm_zyx"]["median"][0] > 0
    # training cohort: 12 patients in the fixture cohort, per split, class and site
    splits = card["training_cohort"]["splits"]
    assert sum(s["patients"] for s in splits.values()) == 12
    assert all(s["pos"] + s["neg"] == s["patients"] for s in splits.values())
    sites = card["training_cohort"]["sites"]
    assert sum(c["patients"] for c in sites["train"].values()) == splits["train"]["patients"]
    # threshold and metrics with CIs, equal to metrics.json
    assert card["threshold"]["value"] == pytest.approx(metrics["locked_threshold"]["value"])
    assert card["threshold"]["rule"].startswith("Youden")
    test = card["metrics"]["test"]
    assert test["accuracy_ci_low"] == pytest.approx(metrics["metrics"]["test/stats/accuracy_ci_low"])
    assert test["auroc_patient"] == pytest.approx(metrics["metrics"]["test/auroc_patient"])
    md = (folder / CARD_MD).read_text()
    assert card["id"] in md and "Not for clinical use" in md and "| train |" in md


def test_card_id_changes_with_the_weights(tiny_run, tmp_path):
    _, ckpt = tiny_run
    copy = tmp_path / ckpt.name
    copy.write_bytes(ckpt.read_bytes() + b"\0")  # another file, no card beside it: computed from its bytes
    assert (
        card_id_for(copy, "resnet34")
        == card_id("resnet34", file_sha256(copy))
        != card_id_for(ckpt, "resnet34")
    )
