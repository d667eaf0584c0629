"""unprior: make multimodal LLMs look at the image.

Stages (each a folder that reads files and writes files, with its resolved config beside its output):
``world`` (synthetic data + tiny biased base VLM) -> ``pairs`` -> ``score`` -> ``train`` -> ``eval``.

Importing unprior pins torch's CPU kernel paths to AVX2 so that CPU training gives the same weights on every
x86-64 machine (see :mod:`unprior.numerics`; ``UNPRIOR_CPU_KERNELS=native`` opts out).
"""

from unprior.numerics import pin_cpu_kernels

pin_cpu_kernels()

__version__ = "0.1.0"
