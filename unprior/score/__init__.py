"""``unprior score``: reference log-probs (cached by what determines them), the noise report, and the shared-prefix
forward that scores every response of an image from one encoding of the image and prompt.

Modules (imported on demand):

- :mod:`unprior.score.logps`: per-token log-probs at response positions, summed and counted.
- :mod:`unprior.score.batch`: encode a pairs row (prompt + every response) with the model's processor; truncation
  that never cuts image tokens; collation.
- :mod:`unprior.score.prefix`: :class:`~unprior.score.prefix.ResponseScorer` (shared prefix or naive forward) and
  the family support table.
- :mod:`unprior.score.reference`: the cache (key, compute, load) and ``run_score``.
- :mod:`unprior.score.noise_report`: margins per negative kind as JSON and PNG (NaPO Fig. 4).
"""
