"""EV charger energy error estimated across the whole fleet (充电桩计量误差的群体估计).

Every session gives ``y = ln(E_charger / E_bms) = c[charger] - v[vehicle] + noise``: the charger's bias
(positive = it over-registers) minus the vehicle battery-management system's bias.  Because vehicles visit
many chargers, a least-squares fit over all sessions separates the two.  The fit is only defined up to a
common constant, which is fixed by *anchors* — chargers verified recently, whose error is known to about
``anchor_sd_pct`` — or, without anchors, by assuming the fleet is right on average.

The vehicle unknowns are eliminated exactly (each vehicle's normal-equation block is diagonal), leaving
the charger system ``S c = r`` with ``S = D_c - B D_v⁻¹ Bᵀ`` (Schur complement).  Its inverse scaled by the
residual variance is the covariance of the charger estimates, which gives the 95 % intervals.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> true_c = np.log1p([0.0, 0.02, -0.01]); true_v = rng.normal(0, 0.01, 40)
>>> ch = rng.integers(0, 3, 3000); ve = rng.integers(0, 40, 3000)
>>> y = true_c[ch] - true_v[ve] + rng.normal(0, 0.02, 3000)
>>> est = estimate(charger=ch, vehicle=ve, log_ratio=y, n_chargers=3, anchors={0: 0.0})
>>> [round(float(x), 1) for x in est.error_pct]
[0.0, 2.0, -1.0]

The intervals include the anchor's own uncertainty (±0.3 % → ±0.59 % at 95 %): the fleet's absolute level
is known only as well as the verified chargers that anchor it.

>>> [round(float(x), 1) for x in est.ci95_pct]
[0.6, 0.6, 0.6]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FleetEstimate:
    """Per charger: error in percent (``exp(c) - 1``), the 95 % half-width, sessions used; and the fit's
    residual standard deviation (per-session noise, in log units)."""

    error_pct: FloatArray
    ci95_pct: FloatArray
    sessions: IntArray
    noise_sd: float
    anchored: bool

    def exceeds(self, mpe_pct: FloatArray) -> npt.NDArray[np.bool_]:
        """True only when the whole 95 % interval lies outside ±MPE."""
        lo = self.error_pct - self.ci95_pct
        hi = self.error_pct + self.ci95_pct
        out: npt.NDArray[np.bool_] = (lo > mpe_pct) | (hi < -mpe_pct)
        return out


def estimate(*, charger: npt.ArrayLike, vehicle: npt.ArrayLike, log_ratio: npt.ArrayLike, n_chargers: int,
             anchors: Mapping[int, float] | None = None, anchor_sd_pct: float = 0.3) -> FleetEstimate:
    """``charger`` and ``vehicle`` are 0-based indices per session; ``anchors`` maps a charger index to its
    verified error in percent.  Chargers without sessions get NaN."""
    ch = np.asarray(charger, dtype=np.int64)
    ve_raw = np.asarray(vehicle, dtype=np.int64)
    y = np.asarray(log_ratio, dtype=np.float64)
    if not (ch.shape == ve_raw.shape == y.shape):
        raise ValueError("charger, vehicle and log_ratio must have the same length")
    if ch.size and (ch.min() < 0 or ch.max() >= n_chargers):
        raise ValueError("charger index out of range")
    if not np.isfinite(y).all():
        raise ValueError("log_ratio must be finite (drop sessions with zero energy first)")
    _vehicles, ve = np.unique(ve_raw, return_inverse=True)
    n_v = int(ve.max()) + 1 if ve.size else 0
    m = ch.size
    sessions = np.bincount(ch, minlength=n_chargers).astype(np.int64)
    # Normal equations of  y = c[ch] - v[ve]:  D_c c - B v = Σ y by charger ; -Bᵀ c + D_v v = -Σ y by vehicle
    d_c = sessions.astype(np.float64)
    d_v = np.bincount(ve, minlength=n_v).astype(np.float64)
    b = sparse.csr_matrix((np.ones(m), (ch, ve)), shape=(n_chargers, n_v))
    r_c = np.bincount(ch, weights=y, minlength=n_chargers)
    r_v = -np.bincount(ve, weights=y, minlength=n_v)
    inv_dv = sparse.diags(1.0 / np.maximum(d_v, 1.0))
    s = (sparse.diags(d_c) - b @ inv_dv @ b.T).toarray()
    rhs = r_c + b @ (inv_dv @ r_v)
    # Fix the free constant: anchors as prior rows weighted by noise²/anchor², or the fleet mean at zero.
    anchors = dict(anchors or {})
    used = sessions > 0
    resid_var = 0.025**2
    for _ in range(2):  # the prior weight depends on the noise, estimated from the first pass
        s_fit = s.copy()
        rhs_fit = rhs.copy()
        if anchors:
            w = resid_var / (anchor_sd_pct / 100.0) ** 2
            for i, err in anchors.items():
                s_fit[i, i] += w
                rhs_fit[i] += w * np.log1p(err / 100.0)
        else:
            ones = used.astype(np.float64)
            s_fit += np.outer(ones, ones) * (1.0 / max(used.sum(), 1))
        # chargers without sessions (nor anchors) would make S singular: pin them
        empty = ~used & ~np.isin(np.arange(n_chargers), list(anchors))
        s_fit[empty, empty] += 1.0
        cov_unscaled = np.linalg.pinv(s_fit, hermitian=True)
        c = cov_unscaled @ rhs_fit
        v = (b.T @ c + r_v) / np.maximum(d_v, 1.0)  # from  D_v v - Bᵀ c = r_v
        resid = y - (c[ch] - v[ve])
        dof = max(m - int(used.sum()) - n_v + (0 if anchors else 1), 1)
        resid_var = float(resid @ resid) / dof
    se = np.sqrt(np.maximum(np.diag(cov_unscaled), 0.0) * resid_var)
    err = np.expm1(c) * 100.0
    ci = 1.96 * se * np.exp(c) * 100.0
    err[empty] = np.nan
    ci[empty] = np.nan
    return FleetEstimate(err, ci, sessions, float(np.sqrt(resid_var)), bool(anchors))
