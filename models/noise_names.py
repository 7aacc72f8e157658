"""The noises a regret evaluation can use, without torch: the CLI offers them, the report and
the store label each regret row with one, so rows measured under different noises are never
drawn or compared as one.

``paper``: the noise as Cavagnero et al. (IOLTS 2022) describe it (models.regret).
``authors-2022``: what their published injector does at test time (models.authors_noise).
"""

from __future__ import annotations

PAPER = "paper"
AUTHORS_2022 = "authors-2022"
NOISES = (PAPER, AUTHORS_2022)
AUTHORS_BATCH = 200  # images that share one authors-2022 fault, as DieHardNET validates in batches of 200
