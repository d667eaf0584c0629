"""The model → response log-probs forward shared by ``unprior score`` and ``unprior train`` (docs/score.md).

Modules (imported on demand):

- :mod:`unprior.forward.logps`: per-token log-probs at response positions, summed and counted; the tiled LM head.
- :mod:`unprior.forward.batch`: encode a pairs row (prompt + every response) with the model's processor; truncation
  that never cuts image tokens; collation.
- :mod:`unprior.forward.prefix`: :class:`~unprior.forward.prefix.ResponseScorer` (shared prefix or naive forward)
  and the family support table.
"""
