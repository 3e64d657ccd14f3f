#!/usr/bin/env bash
# The internal-vs-external demo report of docs/report_internal_external.png (issue 16), on CPU in minutes:
# two synthetic cohorts (the "external" one noisier, its sites renamed), a tiny ResNet34 trained on the first,
# evaluated on its test split and on the whole second cohort with Platt recalibration and conformal calls
# fitted on 40% of it, then one report with both side by side and a screenshot in headless Chromium.
# Usage: tools/demo_internal_external.sh [WORKDIR]   (needs chromium for the screenshot)
set -euo pipefail
W=${1:-/tmp/her2mri_demo}
PY=${PYTHON:-.venv/bin/python}
COMMON=(trainer.accelerator=cpu data.num_workers=0 data.progress=false "paths.cache_dir=$W/cache")
TINY=(model=resnet34 model.pretrained=false preprocess.image_size=32 preprocess.crop_size=32 preprocess.n_slices=2)
$PY -m her2mri.cli.synth "$W/int" --n 80 --seed 0 --shape 16 64 64 --quiet
$PY -m her2mri.cli.synth "$W/ext" --n 60 --seed 11 --shape 16 64 64 --noise-sd 20 --quiet
sed -i -E '2,$ s/,A$/,C/; 2,$ s/,B$/,D/' "$W/ext/metadata.csv"
$PY -m her2mri.cli.train data=breastdcedl "data.root=$W/int" "data.metadata_csv=$W/int/metadata.csv" "${TINY[@]}" \
    trainer.max_epochs=4 "${COMMON[@]}" "paths.output_dir=$W/train"
CK=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['ckpt_path'])" "$W/train/metrics.json")
$PY -m her2mri.cli.eval "ckpt_path=$CK" data=breastdcedl "data.root=$W/int" "data.metadata_csv=$W/int/metadata.csv" \
    split=test "${COMMON[@]}" "paths.output_dir=$W/eval_int"
$PY -m her2mri.cli.eval "ckpt_path=$CK" data=breastdcedl "data.root=$W/ext" "data.metadata_csv=$W/ext/metadata.csv" \
    split=all recalibrate=platt conformal_alpha=0.2 calibration.source=fraction calibration.fraction=0.4 \
    calibration.name=ext "${COMMON[@]}" "paths.output_dir=$W/eval_ext"
$PY - "$W" <<'PYEOF'
import sys
import pandas as pd
w = sys.argv[1]
frames = [pd.read_csv(f"{w}/{d}/metadata.csv", dtype=str)[["pid", "age", "menopause", "HR"]].assign(cohort=c)
          for c, d in (("internal", "int"), ("external", "ext"))]
pd.concat(frames).to_csv(f"{w}/clinical.csv", index=False)
PYEOF
# the two synthetic cohorts reuse patient ids: --cohorts keeps them apart
$PY -m her2mri.cli.report "THDA-demo=$W/eval_int" "THDA-demo=$W/eval_ext" --cohorts internal,external \
    --clinical "$W/clinical.csv" --subgroups HR --out "$W/report" --n-boot 500 \
    --title "her2mri demo: internal test vs external site (synthetic cohorts, tiny CPU model)"
$PY tools/screenshot_report.py "$W/report/report.html" "$W/report/screenshot.png" --height 12000
