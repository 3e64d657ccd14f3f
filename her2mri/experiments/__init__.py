"""Experiments at scale: run summaries, checkpoint ensembles, per-site metrics, fault tolerance, exact resume.

Modules:
    summary: collect ``metrics.json`` of runs and multiruns into ``summary.csv`` / ``summary.md``.
    ensemble: mean-probability ensembles of patient predictions over several checkpoints.
    sites: per-site patient metrics for cohorts with a ``site`` column.
    faults: keep a multirun going when one job fails; simulate a crash to test resume.
    resume: ``ckpt_path=last`` and per-epoch reseeding that makes a resumed run equal an uninterrupted one.
    scoring: score one checkpoint on one split (shared by ``her2mri-eval`` and ensembles).
    folds: the k-fold split file of ``sweep=folds``, written once before the jobs start.
    resolvers: the ``${job_device:N}`` OmegaConf resolver (one GPU per parallel job).
"""
