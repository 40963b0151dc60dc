"""What a search found: the Pareto front and its hypervolume (``front``), re-evaluation
of the best architectures against the baselines (``rank``), export of a chosen
architecture as a model spec with provenance (``export``), full-length training with
checkpoints (``fulltrain``) and a self-contained HTML report (``report``).

Everything reads the run directory alone (:mod:`nas.run.rundir`); nothing here needs Ray.
"""
