"""Grid search for crp_alpha, under the seed's contrib module name.

  >>> import numpy as np
  >>> estimate_crp_alpha(np.array(
  ...     ['0_0', '0_0', '0_1', '0_1', '0_1', '0_0', '0_0', '1_0', '1_0', '1_0',
  ...      '1_1', '1_1', '1_1', '1_0', '1_0', '1_0', '1_2', '1_2', '1_2']))
  0.5

The input is the seed's concatenated training labels, ``'<seq>_<speaker>'``
strings; the estimate maximises the CRP likelihood of the speaker turns over
``alpha = k * search_step < search_range``. Computed in log space by
`uisrnn_jax.estimators.estimate_crp_alpha` (see there for the small
differences: the last label counts, and long sequences do not underflow).
"""

from uisrnn_jax.estimators import estimate_crp_alpha

__all__ = ['estimate_crp_alpha']
