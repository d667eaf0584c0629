"""unprior: make multimodal LLMs look at the image.

Stages (each a folder that reads files and writes files, with its resolved config beside its output):
``world`` (synthetic data + tiny biased base VLM) -> ``pairs`` -> ``score`` -> ``train`` -> ``eval``.
"""

__version__ = "0.1.0"
