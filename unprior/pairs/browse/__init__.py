"""``unprior pairs browse``: a self-contained static HTML browser of a pairs file and its reference margins.

- :mod:`unprior.pairs.browse.config`: ``BrowseConfig``.
- :mod:`unprior.pairs.browse.rows`: the rows (images resolved inside their root) and the reference margins.
- :mod:`unprior.pairs.browse.thumbs`: thumbnails, and the weakened images regenerated from provenance.
- :mod:`unprior.pairs.browse.build`: the output folder (page, data chunks, index, thumbnails) and the CLI entry.
- ``assets/``: the page itself (index.html, browse.js, browse.css), copied into every output folder.
"""

from unprior.pairs.browse.build import run_browse, write_browser
from unprior.pairs.browse.config import BrowseConfig

__all__ = ["BrowseConfig", "run_browse", "write_browser"]
