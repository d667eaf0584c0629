"""``unprior train``: the training loop (:mod:`unprior.train.trainer`), its config (:mod:`unprior.train.config`),
data (:mod:`unprior.train.data`), policy setup (:mod:`unprior.train.model`) and checkpoints
(:mod:`unprior.train.checkpoint`). Imported on demand."""
