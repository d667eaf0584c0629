"""``unprior study``: a multi-seed experiment grid on the embedded world, with mean ± std tables.

A study is a set of *arms* (an objective, the pool its pairs come from, a share of planted noisy negatives) run on
every seed. One seed fixes everything random that the demo fixes with one number: the base model's training
(``base.seed``; the world stays the same, so the test sets do), the pool's image draw, the pair generation, the
planted noise, and the trainer's row order. The steps are the pipeline's (``unprior.pipeline``, as the demo runs
them) and share its cache:

1. *prepare* each seed (in parallel): the base model, then per pool the pairs and their reference scores
   (``unprior pairs`` / ``score``), then per noise rate the noised pairs (``unprior pairs noise``) and their scores;
2. *run* every arm × seed unit (in parallel, ``workers`` processes with ``threads`` torch threads each): train
   (``unprior train``, cached by the whole train config) and evaluate on the world benchmark and the grounding
   frontier (``unprior eval run`` / ``eval frontier``, cached by the model's files); the base of every seed and the
   no-prior control (the visual ceiling) are evaluated too;
3. *summarise*: ``summary.md`` and ``summary.json`` with mean ± sample std over seeds of every metric, the share of
   the base→ceiling frontier gap each arm closes, the in-distribution cost, paired differences between arms
   (``compare``), and a noise-level × objective pivot when arms differ in noise.

Each finished unit is written at once to ``<out>/runs/<arm>-s<seed>.json`` (with the key of everything that decided
it), so a killed study resumes with the units still missing; the summary is rewritten from those files.
"""

from unprior.study.config import ArmConfig, StudyConfig, objective_for_arm
from unprior.study.grid import run_study
from unprior.study.summary import derive, load_results, mean_std, write_summary

__all__ = ["ArmConfig", "StudyConfig", "derive", "load_results", "mean_std", "objective_for_arm", "run_study",
           "write_summary"]
