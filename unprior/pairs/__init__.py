"""``unprior pairs``: turn users' datasets into preference pairs with bootstrapped negatives.

Modules (imported on demand, so ``import unprior.pairs`` stays cheap); the pairs dataset's rows, readers and writers
are :mod:`unprior.formats.pairs`, which score, train and eval read too:

- :mod:`unprior.pairs.loaders`: one loader per source format, validation and a ``LoadReport`` of dropped rows.
- :mod:`unprior.pairs.filters`: drop degenerate negatives (equal to chosen, empty, too long), with counts.
- :mod:`unprior.pairs.export`: write TRL and LLaMA-Factory preference datasets.
- :mod:`unprior.pairs.rules`: dataset statistics and single common-but-wrong edits (error injection without an LLM).
- :mod:`unprior.pairs.strategies`: the negative strategies (image_weakening, error_injection, rules, language_bias,
  vision_bias, original).
- :mod:`unprior.pairs.run`: ``unprior pairs`` (sharded, resumable generation; the shards: :mod:`unprior.pairs.shards`,
  the counts and progress bar: :mod:`unprior.pairs.summary`); :mod:`unprior.pairs.merge`: ``unprior pairs merge``.
"""
