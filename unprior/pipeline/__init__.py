"""The embedded default's pipeline as small steps over a cache, shared by ``unprior demo`` and ``unprior study``:
:mod:`~unprior.pipeline.config` (configs, methods), :mod:`~unprior.pipeline.steps` (world -> base -> pairs -> score
-> train -> eval), :mod:`~unprior.pipeline.report` (tables, figures, report.md)."""
