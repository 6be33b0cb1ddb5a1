"""Experiments over runs: the run matrix (:mod:`.matrix`), its Dask runner (:mod:`.dask_runner`) and job
entry point (:mod:`.job_entry`), the ablation plans (:mod:`.ablations`), the summary of evaluations
(:mod:`.summary`) and stability across seeds (:mod:`.stability`)."""

from shapnas._facade import lazy_exports

__getattr__ = lazy_exports(__name__, ("matrix", "dask_runner", "ablations", "summary"))
