"""One module per benchmark; each registers its class with ``unprior.eval.registry.register``.

Every module in this package is imported on the first registry lookup, so a new benchmark is a new file here.
"""
