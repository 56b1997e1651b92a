"""The composite refinement target T = w * T_data + T_restraints.

Only arrays cross this seam: the data term and the restraint term each map
Cartesian sites (N, 3) to a value and a gradient.  With no data term (mode=opt)
T is the restraint term alone.
"""

import numpy as np


class CompositeTarget:
    def __init__(self, restraints, data=None, weight=1.0):
        self.restraints = restraints
        self.data = data
        self.weight = float(weight)
        self.evaluations = 0
        self.last = None  # (T, T_data, T_restraints) at the last evaluation

    def value_and_gradient(self, sites_cart):
        r_val, r_grad = self.restraints.value_and_gradient(sites_cart)
        value, grad = r_val, r_grad
        d_val = None
        if self.data is not None:
            d_val, d_grad = self.data.value_and_gradient(sites_cart)
            value = self.weight * d_val + r_val
            grad = self.weight * d_grad + r_grad
        self.evaluations += 1
        self.last = (value, d_val, r_val)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            raise FloatingPointError("non-finite refinement target")
        return value, grad
