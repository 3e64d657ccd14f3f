# Reference numbers for the her2mri.stats tests, computed with R (pROC, rms) on the seeded synthetic data
# written by tools/make_r_reference.py. Usage: Rscript tools/r_reference.R <data.csv> <out.json>
# R is a development-time tool only: the tests read the committed JSON.
suppressMessages({
  library(pROC)
  library(rms)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: Rscript tools/r_reference.R <data.csv> <out.json>")
d <- read.csv(args[1])

# ---------------------------------------------------------------- DeLong (pROC) --------------------
# direction "<": higher score = positive class, as in her2mri.stats; levels: 0 = control, 1 = case.
roc_a <- roc(d$y, d$score_a, levels = c(0, 1), direction = "<", quiet = TRUE)
roc_b <- roc(d$y, d$score_b, levels = c(0, 1), direction = "<", quiet = TRUE)
ci_a <- ci.auc(roc_a, method = "delong", conf.level = 0.95)
ci_b <- ci.auc(roc_b, method = "delong", conf.level = 0.95)
ci_a90 <- ci.auc(roc_a, method = "delong", conf.level = 0.90)
tst <- roc.test(roc_a, roc_b, method = "delong", paired = TRUE, conf.level = 0.95)
var_a <- var(roc_a, method = "delong")
cov_ab <- cov(roc_a, roc_b, method = "delong")

delong <- list(
  auc_a = as.numeric(auc(roc_a)), auc_b = as.numeric(auc(roc_b)),
  ci_a = as.numeric(ci_a), ci_b = as.numeric(ci_b), ci_a_90 = as.numeric(ci_a90),
  var_a = as.numeric(var_a), cov_ab = as.numeric(cov_ab),
  test_z = as.numeric(tst$statistic), test_p = as.numeric(tst$p.value),
  test_diff_ci = as.numeric(tst$conf.int)
)

# pROC's documented example (aSAH ships with r-cran-proc): roc.test(s100b, wfns), Z = -2.209, p = 0.0272
data(aSAH)
r1 <- roc(aSAH$outcome, aSAH$s100b, quiet = TRUE)
r2 <- roc(aSAH$outcome, aSAH$wfns, quiet = TRUE)
ta <- roc.test(r1, r2, method = "delong", paired = TRUE)
asah <- list(
  z = as.numeric(ta$statistic), p = as.numeric(ta$p.value),
  auc_s100b = as.numeric(auc(r1)), auc_wfns = as.numeric(auc(r2)),
  ci_s100b = as.numeric(ci.auc(r1, method = "delong")), diff_ci = as.numeric(ta$conf.int),
  # not committed as data (pROC is GPL-3): tools/make_r_reference.py checks Python against these in a temp dir
  y = as.integer(aSAH$outcome == "Poor"), s100b = aSAH$s100b, wfns = as.numeric(aSAH$wfns)
)

# ---------------------------------------------------------------- Youden (pROC coords) -------------
best <- coords(roc_a, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"),
               transpose = FALSE)
youden <- list(threshold = best$threshold, sensitivity = best$sensitivity, specificity = best$specificity,
               n_best = nrow(best))

# ---------------------------------------------------------------- Wilson (prop.test, no correction) -
wilson_cases <- list(c(81, 263), c(15, 148), c(0, 20), c(20, 20), c(1, 29), c(37, 50))
wilson <- lapply(wilson_cases, function(xn) {
  ci <- prop.test(xn[1], xn[2], correct = FALSE, conf.level = 0.95)$conf.int
  list(x = xn[1], n = xn[2], lower = ci[1], upper = ci[2])
})

# ---------------------------------------------------------------- calibration (rms::val.prob) -------
vp <- val.prob(d$prob, d$y, pl = FALSE)
# calibration-in-the-large: intercept of logit(y) ~ offset(logit(p)) (slope fixed at 1)
citl <- coef(glm(d$y ~ 1, offset = qlogis(d$prob), family = binomial,
                 control = glm.control(epsilon = 1e-14, maxit = 100)))[[1]]
calibration <- list(
  intercept = unname(vp["Intercept"]), slope = unname(vp["Slope"]), brier = unname(vp["Brier"]),
  c_index = unname(vp["C (ROC)"]), citl = citl,
  spiegelhalter_z = unname(vp["S:z"]), spiegelhalter_p = unname(vp["S:p"])
)
vp2 <- val.prob(d$prob_rounded, d$y, pl = FALSE)
calibration_rounded <- list(intercept = unname(vp2["Intercept"]), slope = unname(vp2["Slope"]),
                            brier = unname(vp2["Brier"]))

# ---------------------------------------------------------------- Hosmer-Lemeshow --------------------
# ResourceSelection is not packaged in Debian 12: this is its hoslem.test algorithm (v0.3-5), written out.
hoslem <- function(y, yhat, g = 10) {
  qq <- unique(quantile(yhat, probs = seq(0, 1, 1 / g)))
  cutyhat <- cut(yhat, breaks = qq, include.lowest = TRUE)
  observed <- xtabs(cbind(y0 = 1 - y, y1 = y) ~ cutyhat)
  expected <- xtabs(cbind(yhat0 = 1 - yhat, yhat1 = yhat) ~ cutyhat)
  chisq <- sum((observed - expected)^2 / expected)
  list(chisq = chisq, df = g - 2, p = 1 - pchisq(chisq, g - 2), breaks = as.numeric(qq),
       observed1 = as.numeric(observed[, "y1"]), expected1 = as.numeric(expected[, "yhat1"]),
       counts = as.numeric(rowSums(observed)))
}
hl <- list(
  prob_g10 = hoslem(d$y, d$prob, 10),
  prob_g5 = hoslem(d$y, d$prob, 5),
  prob_rounded_g10 = hoslem(d$y, d$prob_rounded, 10)
)

# ---------------------------------------------------------------- nomogram (rms) ---------------------
dd <- datadist(d)
options(datadist = "dd")
f <- lrm(y_nom ~ x1 + x2 + x3, data = d)
vals <- list(x1 = c(30, 40, 50, 60, 70, 80), x2 = c(0, 1), x3 = c(0, 4, 8, 12, 16))
fun_at <- c(0.25, 0.5, 0.75, 0.9)
nom <- nomogram(f, x1 = vals$x1, x2 = vals$x2, x3 = vals$x3, fun = plogis, fun.at = fun_at,
                lp = TRUE, maxscale = 100)
info <- attr(nom, "info")
nomo <- list(
  coef = as.list(coef(f)), values = vals,
  points = list(x1 = unname(nom$x1$points), x2 = unname(nom$x2$points), x3 = unname(nom$x3$points)),
  scale = info$sc, lp_offset = unname(info$Intercept),
  lp_at = nom$lp$x.real, lp_points = nom$lp$x,
  risk_at = nom[["Predicted Value"]]$x.real, risk_points = nom[["Predicted Value"]]$x
)

# Unpaired DeLong (pROC roc.test paired = FALSE): cohort 1 = the first 100 rows scored by score_a, cohort 2 =
# the other rows scored by score_b (disjoint patients, as an internal test set and an external site).
h <- seq_len(100)
ru1 <- roc(d$y[h], d$score_a[h], levels = c(0, 1), direction = "<", quiet = TRUE)
ru2 <- roc(d$y[-h], d$score_b[-h], levels = c(0, 1), direction = "<", quiet = TRUE)
tu <- roc.test(ru1, ru2, method = "delong", paired = FALSE)
delong_unpaired <- list(
  n1 = length(h), auc1 = as.numeric(auc(ru1)), auc2 = as.numeric(auc(ru2)),
  statistic = as.numeric(tu$statistic), df = as.numeric(tu$parameter), p = as.numeric(tu$p.value)
)

out <- list(
  meta = list(
    generated_by = "tools/r_reference.R (run by tools/make_r_reference.py)",
    r_version = R.version.string, pROC = as.character(packageVersion("pROC")),
    rms = as.character(packageVersion("rms")),
    hoslem = "ResourceSelection::hoslem.test algorithm written out in tools/r_reference.R (not packaged)",
    data = "tests/data/stats_reference_data.csv"
  ),
  delong = delong, asah = asah, youden = youden, wilson = wilson,
  calibration = calibration, calibration_rounded = calibration_rounded,
  hoslem = hl, nomogram = nomo, delong_unpaired = delong_unpaired
)
write_json(out, args[2], digits = NA, auto_unbox = TRUE, pretty = TRUE)
