"""Map-model Fourier shell correlation and its unweighted average.

seed 004 monitors refinement with the "unweighted FSC average": the mean over
resolution shells, up to the map's resolution, of

    FSC(s) = Re sum_shell F_map conj(F_model) / sqrt(sum |F_map|^2 sum |F_model|^2)

each shell counting once whatever its number of Fourier coefficients (a
weighted average would be dominated by the many high-resolution
coefficients).  The model map is the Gaussian model density of
:mod:`qrefine.data.gaussian`, the same for every data target, so the number
is comparable between ``map.target`` choices and independent of the score
that was refined.
"""

import numpy as np


def fsc_curve(map_box, model_box, frac, resolution, shell_width=None):
    """(shell centres in 1/A, FSC per shell) for the whole shells up to
    1/``resolution``.

    ``map_box`` and ``model_box``: real arrays on the same grid; ``frac``:
    the fractionalisation matrix of the box cell.  Shells are
    ``shell_width`` wide (default: 1 / the longest box edge, the finest
    spacing the box resolves).
    """
    a = np.asarray(map_box, dtype=float)
    b = np.asarray(model_box, dtype=float)
    if a.shape != b.shape:
        raise ValueError("map and model grids differ: %s against %s" % (a.shape, b.shape))
    fa, fb = np.fft.rfftn(a), np.fft.rfftn(b)
    n = a.shape
    h = np.meshgrid(np.fft.fftfreq(n[0]) * n[0], np.fft.fftfreq(n[1]) * n[1],
                    np.fft.rfftfreq(n[2]) * n[2], indexing="ij")
    recip = np.asarray(frac, dtype=float).reshape(3, 3)  # rows: a*, b*, c*
    s_vec = sum(h[i][..., None] * recip[i] for i in range(3))
    s = np.sqrt((s_vec ** 2).sum(axis=-1))
    if shell_width is None:
        shell_width = float(np.min(np.sqrt((recip ** 2).sum(axis=1))))
    # Whole shells only: a shell cut by 1/d (or by Nyquist) holds a few
    # coefficients and a noisy value that the unweighted mean would count fully.
    n_whole = int(np.floor(1.0 / (float(resolution) * shell_width) + 1e-9))
    shell = np.floor(s / shell_width).astype(int)
    use = (s > 0) & (shell < n_whole)
    shell, cross = shell[use], (fa * np.conj(fb)).real[use]
    pa, pb = (np.abs(fa) ** 2)[use], (np.abs(fb) ** 2)[use]
    n_shells = int(shell.max()) + 1 if shell.size else 0
    num = np.bincount(shell, weights=cross, minlength=n_shells)
    den = np.sqrt(np.bincount(shell, weights=pa, minlength=n_shells)
                  * np.bincount(shell, weights=pb, minlength=n_shells))
    filled = den > 0
    centres = (np.arange(n_shells) + 0.5) * shell_width
    return centres[filled], num[filled] / den[filled]


def fsc_average(map_box, model_box, frac, resolution):
    """Unweighted mean of :func:`fsc_curve` (None when no shell is filled)."""
    _, fsc = fsc_curve(map_box, model_box, frac, resolution)
    return float(fsc.mean()) if fsc.size else None
