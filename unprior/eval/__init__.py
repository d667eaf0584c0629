"""``unprior eval``: hallucination and modality-bias benchmarks with offline scorers, for any model.

- :mod:`unprior.eval.registry`: the benchmark base class, :data:`~unprior.eval.registry.REGISTRY`, ``Metric``,
  ``Item``, and the generation interface (``Request``, ``GenerateFn``).
- :mod:`unprior.eval.benchmarks`: one module per benchmark (POPE, CHAIR / Object HalBench, AMBER, VLind-Bench,
  MMHal-Bench, and ``world``: the embedded synthetic world).
- :mod:`unprior.eval.runner`: ``run_eval(cfg, generate_fn)``: resumable generation, scoring, ``results.json``.
- :mod:`unprior.eval.generation`: ``make_generate_fn(cfg)``: the ``hf`` and ``vllm`` backends (base model, full
  checkpoint or LoRA adapter).
- :mod:`unprior.eval.frontier`: ``grounding_frontier(model, processor, world_dir)``: counterfactual accuracy at
  matched in-distribution accuracy.
- :mod:`unprior.eval.compare`: ``run_compare(runs, out_png)``: a table across runs and a bar chart.
- :mod:`unprior.eval.judge`: the cached, retrying LLM-judge client (MMHal-Bench).

The registry, the benchmarks, the runner and compare do not import torch; ``generation`` imports it when a backend
loads a model, ``frontier`` at import.
"""
