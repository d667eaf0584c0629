"""``unprior score``: reference log-probs (cached by what determines them) and the noise report; the forward that
scores every response of an image from one encoding of the image and prompt is :mod:`unprior.forward`.

Modules (imported on demand):

- :mod:`unprior.score.reference`: the cache (key, compute, load) and ``run_score``.
- :mod:`unprior.score.noise_report`: margins per negative kind as JSON and PNG (NaPO Fig. 4).
"""
