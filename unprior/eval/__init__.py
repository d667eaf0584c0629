"""``unprior eval``: hallucination and modality-bias benchmarks with offline scorers, for any model.

- :mod:`unprior.eval.registry`: the benchmark base class, :data:`~unprior.eval.registry.REGISTRY`, ``Metric``,
  ``Item``, and the generation interface (``Request``, ``GenerateFn``).
- :mod:`unprior.eval.benchmarks`: one module per benchmark (POPE, CHAIR / Object HalBench, AMBER, VLind-Bench,
  MMHal-Bench).
- :mod:`unprior.eval.runner`: ``run_eval(cfg, generate_fn)``: resumable generation, scoring, ``results.json``.
- :mod:`unprior.eval.compare`: ``run_compare(runs, out_png)``: a table across runs and a bar chart.
- :mod:`unprior.eval.judge`: the cached, retrying LLM-judge client (MMHal-Bench).

No module here imports torch; generation backends live with the model code and plug in as a ``GenerateFn``.
"""
