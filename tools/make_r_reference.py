"""Generate the synthetic data and the R reference numbers for the her2mri.stats tests.

Writes ``tests/data/stats_reference_data.csv`` (seeded synthetic data, 6 decimals so R and Python parse
identical values) and, when ``Rscript`` with pROC and rms is available, runs ``tools/r_reference.R`` to
write ``tests/data/r_reference.json``. R is only needed here, never at run time or in CI.

Usage (from the repository root)::

    python tools/make_r_reference.py            # data + R reference
    python tools/make_r_reference.py --data-only

R on Debian 12: ``apt-get install -y --no-install-recommends r-base-core r-cran-proc r-cran-rms``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "tests" / "data"
DATA_CSV = DATA_DIR / "stats_reference_data.csv"
JSON_OUT = DATA_DIR / "r_reference.json"
R_SCRIPT = ROOT / "tools" / "r_reference.R"
SEED = 20240611
N = 160


def make_data(seed: int = SEED, n: int = N) -> pd.DataFrame:
    """Seeded synthetic cohort: labels, two correlated scores (one with ties), probabilities, predictors."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.35).astype(int)
    latent = rng.normal(size=n)
    # model A: continuous score; model B: correlated with A, rounded to 1 decimal (many ties)
    score_a = 1.1 * y + latent
    score_b = np.round(0.7 * y + 0.6 * latent + 0.8 * rng.normal(size=n), 1)
    # miscalibrated probabilities (too extreme and shifted) from model A
    prob = 1.0 / (1.0 + np.exp(-(1.6 * (score_a - 0.4) - 0.5)))
    # probabilities rounded to 2 decimals: many values sit exactly on Hosmer-Lemeshow quantile breaks
    prob_rounded = np.clip(np.round(prob, 2), 0.01, 0.99)
    # nomogram cohort: three predictors (one binary) and an outcome drawn from a logistic model
    x1 = rng.normal(55.0, 10.0, size=n)  # age-like
    x2 = (rng.uniform(size=n) < 0.4).astype(int)  # binary (e.g. hormone receptor)
    x3 = rng.gamma(2.0, 1.5, size=n)  # skewed (e.g. size in cm)
    lp = -4.0 + 0.05 * x1 + 1.0 * x2 + 0.3 * x3
    y_nom = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-lp))).astype(int)
    df = pd.DataFrame(
        {
            "y": y,
            "score_a": score_a,
            "score_b": score_b,
            "prob": prob,
            "prob_rounded": prob_rounded,
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "y_nom": y_nom,
        }
    )
    return df.round(6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-only", action="store_true", help="write the CSV only, do not run R")
    args = parser.parse_args(argv)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    make_data().to_csv(DATA_CSV, index=False, float_format="%.6f")
    print(f"wrote {DATA_CSV}")
    if args.data_only:
        return 0
    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: install r-base-core r-cran-proc r-cran-rms", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "r_reference_raw.json"
        subprocess.run([rscript, str(R_SCRIPT), str(DATA_CSV), str(raw)], check=True, cwd=ROOT)
        ref = json.loads(raw.read_text())
    # pROC's aSAH data (GPL-3 package) is not committed: check Python against pROC's numbers here, keep
    # only the numbers, and record the Python values next to them.
    asah = ref["asah"]
    y, s100b, wfns = (np.asarray(asah.pop(k), dtype=np.float64) for k in ("y", "s100b", "wfns"))
    from her2mri.stats import auc_ci_delong, delong_test

    t = delong_test(y, s100b, wfns)
    ci = auc_ci_delong(y, s100b)
    asah["python"] = {
        "z": t.z,
        "p": t.p_value,
        "diff_ci": [t.diff_ci_lower, t.diff_ci_upper],
        "ci_s100b": [ci.ci_lower, ci.auc, ci.ci_upper],
    }
    dz, dp = abs(t.z - asah["z"]), abs(t.p_value - asah["p"])
    print(
        f"aSAH roc.test(s100b, wfns): R Z={asah['z']:.6f} p={asah['p']:.6f}; "
        f"Python Z={t.z:.6f} p={t.p_value:.6f}; |dZ|={dz:.1e} |dp|={dp:.1e}"
    )
    if dz > 1e-6 or dp > 1e-6:
        print("aSAH check FAILED", file=sys.stderr)
        return 1
    JSON_OUT.write_text(json.dumps(ref, indent=2) + "\n")
    print(f"wrote {JSON_OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
