"""Community contributions of the seed, kept under the seed's module names.

``uisrnn_jax.contrib.range_search_crp_alpha.estimate_crp_alpha`` is the
seed's ``uisrnn.contrib.range_search_crp_alpha.estimate_crp_alpha``, served by
`uisrnn_jax.estimators`.
"""

from uisrnn_jax.contrib import range_search_crp_alpha

__all__ = ['range_search_crp_alpha']
