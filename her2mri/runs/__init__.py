"""Orchestration: everything that works on a composed Hydra config (the tier between training and cli).

Modules:
    train: ``train(cfg)``, the body of ``her2mri-train``, and what every task shares: the task wrapper
        (``metrics.json`` with ``status: failed``), log routing, seeds, config helpers, the per-stage metrics,
        per-site metrics and statistics with CIs of a run, the printed summary.
    evaluate: ``evaluate(cfg)`` and ``evaluate_ensemble(cfg)``, the bodies of ``her2mri-eval``.
    scoring: load one checkpoint with its preprocessing and score it on one split (shared core of evaluate,
        ensembles and calibration).
    calibration: recalibration and conformal sets fitted on a calibration set (``her2mri-eval recalibrate=``).
    rundir: the one reader of a run directory (metrics.json and Hydra side files), shared with the report.
    outputs: ``metrics.json`` and ``predictions/*.csv`` writers and reader.
    sites: per-site patient metrics for cohorts with a ``site`` column.
    oof: pooled out-of-fold AUC with its CI for ``sweep=folds``.
    summary: collect ``metrics.json`` of runs and multiruns into ``summary.csv`` / ``summary.md``.
    folds: the k-fold split file of ``sweep=folds``, written once before the jobs start.
    resolvers: the ``${job_device:N}`` OmegaConf resolver (one GPU per parallel job).
    faults: keep a multirun going when one job fails; simulate a crash to test resume.
    resume: per-epoch reseeding that makes a run resumed with ``ckpt_path=last`` equal an uninterrupted one.
"""
