"""File formats that more than one stage reads or writes (a component: no stage imported).

- :mod:`unprior.formats.pairs`: the pairs dataset (``PairRow`` / ``Negative`` rows, parquet and JSONL readers and
  writers, ``NEGATIVE_KINDS``), the ``Sample`` every loader produces, and the bounded image open every stage uses.
"""
