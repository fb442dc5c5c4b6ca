"""Fuel dispenser (加油机) nozzle errors and tank leak (油罐渗漏) rate from the tank balance (液位仪对账).

A tank's gauge (液位仪) reads the fuel volume every hour or so; every nozzle (加油枪) drawing from the
tank reports each sale with the volume it *shows*, ``shown = true × (1 + e)`` (``e`` > 0: the nozzle
over-registers, the customer gets less than he pays for); deliveries (卸油) refill the tank.  Between two
readings the balance is ``gauge_start − gauge_end + delivered = Σ true sales + leak × Δt + noise``.

**Level form.**  Summing the period balances telescopes: each gauge reading ends one period and starts the
next, so successive period residuals share their gauge noise (correlation −½) and a per-period
least-squares fit would count the same noise twice and misstate its intervals.  The fit is made on the
equivalent *level* form, with independent noise per reading.  With ``C_n(t)`` the volume nozzle ``n`` has
shown since the first reading and ``g_n = e_n / (1 + e_n)`` (so that ``true = shown × (1 − g_n)`` exactly,
no linearisation):

    gauge(t_k) + Σ_n C_n(t_k) = a_s + Σ_n g_n C_n(t_k) − L t_k + β u_k + noise_k

``a_s`` is a free level per *segment* between deliveries: a delivery note is known to ±0.3 % or so — ±45 L
for 15 m³, far worse than the gauge — so deliveries only split the record, and readings within
``settle_h`` after a delivery (fuel still settling) are left out.  ``L`` is the leak rate (L/h, > 0 = the
tank loses fuel).  The segment levels are eliminated by demeaning within segments; what remains is a
small weighted least-squares problem per tank (a few nozzles, the leak, the thermal term).

**Temperature.**  Fuel expands about 0.1 % per °C (gasoline ≈ 0.0012/°C, diesel ≈ 0.0008/°C); a 30 m³
tank whose fuel cools by 0.5 °C a day after a warm delivery shrinks by ≈ 15 L a day, more than a
0.38 L/h leak.  Gauge volumes and sales (dispensed at the tank's temperature, interpolated from the
gauge's ``temp_c``) are brought to 20 °C: to first order this adds ``β u_k`` with
``u_k = gauge_k τ_k + Σ_{sales ≤ t_k} shown × τ_sale`` and ``τ = T − 20 °C``.  ``β`` is estimated per
tank (the registry does not say which product a tank holds) with a prior ``beta_prior`` (mean, sd) that
covers gasoline and diesel — a prior row in the weighted least squares.  ``temp_c=None`` leaves it out.

**Drift (计量漂移).** A nozzle whose error changes at time ``c`` adds ``d × R_n,c(t)``, ``R`` being its volume
shown since ``c``. Every nozzle and every ``c`` a whole number of ``drift_step_h`` before the last reading
(within ``drift_window_h``; by default the whole record but its first three days) is tried as a single
change — one projection scores all candidates; of those whose change is at least ``drift_threshold_pct``
the one that lowers the residual sum of squares most is refitted and kept when its change is still that
large and at least ``drift_z`` standard errors — with the noise of the model that has the change, since
the model without it is misfit — and the scan repeats for the other nozzles. One change at a time is what
makes an hourly gauge sensitive: nozzles on a tank sell in nearly fixed proportions, so *all* their errors
moving freely at once are poorly separated, while the tank's total change is well measured. Which nozzle
changed is told only by the sale-to-sale jitter of their shares, so the alarm names *suspects*: the
likelihood ratio of every candidate against the best gives each nozzle a probability ``drift_p``, and the
nozzles holding ``drift_credibility`` (95 %) of it are flagged — usually one, two or three when the gauge
is noisy. The kept change makes the strongest suspect's ``error_pct`` its error since ``c``; ``drift_pct``
is the change.

**Intervals.**  Gauge noise is not independent from hour to hour (waves, stratification, a probe that
drifts slowly), and every regressor varies slowly, so what matters is the noise's *long-run* variance:
a white + AR(1) model is fitted to the residual variogram over ``lags`` readings and its spectral density
at zero (never less than the residual variance) scales the covariance.  95 % intervals are ±1.96
standard errors.

**Identifiability.** Nozzle errors and the leak are separable because sales vary from period to period —
busy hours, quiet nights (a leak keeps going at night, sales do not), the randomness of arrivals and
nozzles busy at different times. A tank with a single nozzle still separates its error from the leak
through that variation, with wider intervals. Parameters the data cannot separate (a nozzle without sales,
sales exactly proportional to time) come out as NaN. Not separable at all: a scale error of the tank's own
volume table (罐容表) shifts every nozzle of the tank alike — nozzle errors are relative to the tank
calibration.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> t = np.arange(0.0, 24 * 30 + 1)                      # hourly readings for 30 days
>>> sale_h = np.sort(rng.uniform(0, 720, 4000)); nozzle = rng.integers(0, 2, 4000)
>>> busy = (sale_h % 24 > 6) & (sale_h % 24 < 22)        # the station sells by day
>>> sale_h, nozzle = sale_h[busy], nozzle[busy]
>>> shown = rng.uniform(20, 60, sale_h.size)
>>> true = shown / (1 + np.array([0.002, -0.001])[nozzle])   # nozzle 0 over-registers 0.2 %
>>> drawn = np.cumsum(np.bincount(np.searchsorted(t, sale_h), true, t.size))   # drawn by each reading
>>> gauge = 40000 - drawn - 0.5 * t + rng.normal(0, 2, t.size)  # leaking 0.5 L/h
>>> est = estimate_tank(reading_h=t, gauge_l=gauge, sale_h=sale_h, sale_nozzle=nozzle, sale_l=shown,
...                     n_nozzles=2)
>>> [round(float(x), 1) for x in est.error_pct], round(est.leak_l_per_h, 1), est.leak_detected()
([0.2, -0.1], 0.5, True)
>>> bool(est.ci95_pct.max() < 0.05), bool(est.leak_ci95 < 0.1), est.drift_flagged.tolist()
(True, True, [False, False])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

T_REF_C = 20.0
BETA_PRIOR = (0.00105, 0.00025)  # thermal expansion of the fuel, 1/°C: gasoline ≈ 0.0012, diesel ≈ 0.0008
SETTLE_H = 1.0                   # readings this soon after a delivery are left out
LAGS = 24                        # variogram lags (readings) of the noise model
MIN_READINGS = 6
# Decisions (bench/fuel_accuracy.py measures the detection and false-alarm rates they give)
LEAK_THRESHOLD_L_PER_H = 0.19    # half the 0.38 L/h (0.1 US gal/h) leak to be detected, as in EPA practice
LEAK_ALPHA = 0.01                # one-sided significance of the leak test
DRIFT_STEP_H = 24.0              # changes are looked for from any whole day before the last reading
DRIFT_THRESHOLD_PCT = 0.15       # half the 0.3 % MPE
DRIFT_Z = 5.5                    # the best of (nozzles × days) candidates, run every day
DRIFT_MIN_SALES = 20             # sales on each side of a candidate change
DRIFT_MIN_BEFORE_H = 72.0        # record before a candidate change: a shorter one is too weak a baseline
DRIFT_CREDIBILITY = 0.95         # the nozzles flagged for a drift hold this much of its attribution
Z95 = 1.959963984540054
PERIOD_H = 24.0                  # the evidence's per-period nozzle errors: one a day
PERIOD_MIN_L = 100.0             # a period's error is shown only when the nozzle sold at least this much


@dataclass(frozen=True)
class TankSeries:
    """What an alert's evidence charts (``estimate_tank(series=True)``).

    Per reading used (``reading_h``): the **balance** (账差) — gauge minus book inventory, L, where the book
    is the opening level of each segment between deliveries (estimated), less what the nozzles truly
    delivered (their shown volumes corrected by their estimated errors), brought to 20 °C; a leaking tank's
    balance falls along ``leak_line_l`` = −leak × (t − first reading).  Per period of ``period_h`` hours
    (``period_h`` are the periods' starts on the caller's time origin): each nozzle's **apparent error**
    (表观误差, %) — its error in the model without any drift plus the period's unexplained balance divided by
    what it showed, so the whole unexplained volume of the tank is put on that one nozzle (right for the
    nozzle that drifted, when only one did) — and the volume it showed (L); NaN when it showed less than
    ``PERIOD_MIN_L``."""

    reading_h: FloatArray
    balance_l: FloatArray
    leak_line_l: FloatArray
    period_h: FloatArray
    period_error_pct: FloatArray   # periods × nozzles
    period_shown_l: FloatArray     # periods × nozzles


@dataclass(frozen=True)
class TankEstimate:
    """One tank's fit.  Per nozzle (local index; ``nozzles`` gives the fleet index when made by
    :func:`estimate_fleet`): the current error in percent and its standard error; the largest change found
    in the drift window, its standard error and start (hours, NaN if none could be tested); whether the
    nozzle is a suspect of a drift alarm and its probability of being the one that changed (0 when no
    alarm, NaN when not tested); the sales used.  Per tank: the drift score (the first change tested,
    refitted, over its standard error; compared with ``drift_z``); the leak rate (L/h, > 0 = losing fuel)
    and its standard error, the thermal coefficient, the noise of one reading (L), the long-run variance
    factor, the readings used and the segments between deliveries."""

    error_pct: FloatArray
    error_se_pct: FloatArray
    drift_pct: FloatArray
    drift_se_pct: FloatArray
    drift_from_h: FloatArray
    drift_flagged: BoolArray
    drift_p: FloatArray
    drift_score: float
    sales: IntArray
    leak_l_per_h: float
    leak_se: float
    beta_per_c: float
    noise_sd_l: float
    lrv_factor: float
    readings: int
    segments: int
    nozzles: IntArray
    series: TankSeries | None = None

    @property
    def ci95_pct(self) -> FloatArray:
        """Half-width of the 95 % interval of each nozzle's current error."""
        out: FloatArray = Z95 * self.error_se_pct
        return out

    @property
    def drift_ci95_pct(self) -> FloatArray:
        out: FloatArray = Z95 * self.drift_se_pct
        return out

    @property
    def leak_ci95(self) -> float:
        """Half-width of the 95 % interval of the leak rate, L/h."""
        return Z95 * self.leak_se

    def exceeds(self, mpe_pct: float | FloatArray) -> BoolArray:
        """True only when the whole 95 % interval lies outside ±MPE (NaN: False)."""
        lo = self.error_pct - self.ci95_pct
        hi = self.error_pct + self.ci95_pct
        with np.errstate(invalid="ignore"):
            out: BoolArray = (lo > mpe_pct) | (hi < -np.asarray(mpe_pct))
        return out

    def leak_detected(self, threshold_l_per_h: float = LEAK_THRESHOLD_L_PER_H, alpha: float = LEAK_ALPHA) -> bool:
        """渗漏 decision: the estimated rate is at least ``threshold_l_per_h`` *and* significantly above zero
        (one-sided test at ``alpha``).  The threshold keeps a long, quiet record from flagging a
        statistically significant but harmless loss (a residual temperature effect, vapour)."""
        if not np.isfinite(self.leak_l_per_h) or not np.isfinite(self.leak_se):
            return False
        z = float(ndtri(1.0 - alpha))
        return bool(self.leak_l_per_h >= threshold_l_per_h and self.leak_l_per_h - z * self.leak_se > 0)


def _floats(x: npt.ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite numbers")
    return a


def _empty(n: int, sales: IntArray, readings: int, segments: int) -> TankEstimate:
    def nan() -> FloatArray:
        return np.full(n, np.nan)

    return TankEstimate(nan(), nan(), nan(), nan(), nan(), np.zeros(n, dtype=np.bool_), nan(), np.nan, sales,
                        np.nan, np.nan, np.nan, np.nan, np.nan, readings, segments, np.arange(n, dtype=np.int64))




def _long_run_variance(r: FloatArray, lags: int) -> float:
    """Long-run variance of the gauge noise (its spectral density at frequency zero, per reading) from a
    white + AR(1) model fitted to the residuals' variogram ``V(h) = σw² + σa² (1 − φ^h)``, h = 1…lags.

    The variogram is used rather than the residual autocorrelations because differences at short lags are
    hardly touched by the fit, whereas the segment levels and the slowly varying regressors absorb the
    slow part of the noise and so bias the autocorrelations (and any long-run variance built on them)
    downwards."""
    h_max = min(lags, r.size // 4)
    if h_max < 2:
        return float(r @ r) / max(r.size, 1)
    h = np.arange(1, h_max + 1)
    sq = np.concatenate([[0.0], np.cumsum(r * r)])  # Σ (r[k:] − r[:-k])² = Σ r[k:]² + Σ r[:-k]² − 2 r[k:]·r[:-k]
    cross = np.array([float(r[k:] @ r[:-k]) for k in h])
    v = 0.5 * ((sq[-1] - sq[h]) + sq[r.size - h] - 2 * cross) / (r.size - h)
    # correlation times the lags can tell from a trend: half a reading up to a third of the lags
    phi = np.exp(-1.0 / np.linspace(0.5, h_max / 3.0, 40))
    b = 1.0 - phi[:, None] ** h[None, :]                       # (φ, h): the slow component's shape
    sb, sbb, sv, sbv = b.sum(1), (b * b).sum(1), v.sum(), b @ v
    det = h_max * sbb - sb * sb
    white = (sbb * sv - sb * sbv) / det                        # least squares for (σw², σa²) at every φ …
    slow = (h_max * sbv - sb * sv) / det
    neg = (white < 0) | (slow < 0)                             # … else one component only, the better one
    w_only, s_only = max(sv / h_max, 0.0), np.maximum(sbv / sbb, 0.0)
    sse_w = ((v - w_only) ** 2).sum()
    sse_s = ((v[None, :] - s_only[:, None] * b) ** 2).sum(1)
    use_w = neg & (sse_w <= sse_s)
    white = np.where(neg, np.where(use_w, w_only, 0.0), white)
    slow = np.where(neg, np.where(use_w, 0.0, s_only), slow)
    sse = ((v[None, :] - white[:, None] - slow[:, None] * b) ** 2).sum(1)
    i = int(np.argmin(sse))
    return float(white[i] + slow[i] * (1 + phi[i]) / (1 - phi[i]))


@dataclass
class _Fit:
    coef: FloatArray          # NaN where not identified
    m: FloatArray             # (X'X + prior)⁻¹, unscaled: coefficient covariance = var_eff × m
    ident: BoolArray
    resid: FloatArray         # data rows
    prior_row: float          # weight of the β prior row (0 without one)
    var_eff: float            # residual variance × long-run factor
    resid_var: float
    lrv: float
    dof: int


def _fit(x: FloatArray, y: FloatArray, beta_col: int | None, beta_prior: tuple[float, float], lags: int,
         segments: int) -> _Fit | None:
    """Weighted least squares with the β prior as one extra row; two passes (the prior's weight depends on
    the noise).  None when there are not enough readings for the unknowns."""
    scale = np.sqrt((x * x).sum(axis=0))
    scale[scale == 0] = 1.0
    xs = x / scale
    a = xs.T @ xs
    b = xs.T @ y
    var_eff = 4.0  # (2 L)², refined from the residuals
    fit: _Fit | None = None
    for _ in range(2):
        a_fit, b_fit = a.copy(), b.copy()
        row = 0.0
        if beta_col is not None:
            row = np.sqrt(var_eff) / beta_prior[1]  # prior row: row × β = row × mean, unscaled
            a_fit[beta_col, beta_col] += (row / scale[beta_col]) ** 2
            b_fit[beta_col] += (row / scale[beta_col]) ** 2 * beta_prior[0] * scale[beta_col]
        m_s = np.linalg.pinv(a_fit, rcond=1e-11, hermitian=True)
        ident = np.abs(np.diag(m_s @ a_fit) - 1.0) < 1e-6
        coef_s = m_s @ b_fit
        resid = y - xs @ coef_s
        dof = y.size - segments - int(ident.sum())
        if dof < 2:
            return None
        resid_var = float(resid @ resid) / dof
        lrv = max(1.0, _long_run_variance(resid, lags) / resid_var) if resid_var > 0 else 1.0
        coef = coef_s / scale
        coef[~ident] = np.nan
        fit = _Fit(coef, m_s / np.outer(scale, scale), ident, resid, row, resid_var * lrv, resid_var, lrv, dof)
        var_eff = fit.var_eff
    return fit


def _scan(fit: _Fit, x: FloatArray, cand: FloatArray, beta_col: int | None) -> tuple[FloatArray, FloatArray]:
    """Each candidate column added alone to the fitted model (Frisch–Waugh: the candidate residualised on
    the model, prior row included): its coefficient and ``rr``, so that its standard error is
    ``sqrt(var / rr)`` and the residual sum of squares falls by ``coef² × rr``."""
    h = fit.m @ (x.T @ cand)
    d = cand - x @ h
    rr = (d * d).sum(axis=0)
    if beta_col is not None:
        rr = rr + (fit.prior_row * h[beta_col]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(rr > 0, (cand.T @ fit.resid) / np.where(rr > 0, rr, 1.0), np.nan)
    return coef, rr


def _change(fit: _Fit, i: int, j: int) -> tuple[float, float, float, float]:
    """Current error (g_i + d_j), its standard error, the change e(g + d) − e(g) and its standard error, in
    percent, by the delta method on ``e = g / (1 − g)``."""
    g0 = fit.coef[i]
    g1 = g0 + fit.coef[j]
    d0, d1 = 1 / (1 - g0) ** 2, 1 / (1 - g1) ** 2
    c2 = fit.m[np.ix_([i, j], [i, j])] * fit.var_eff
    now, step = np.array([d1, d1]), np.array([d1 - d0, d1])
    return (float(g1 / (1 - g1) * 100), float(np.sqrt(max(float(now @ c2 @ now), 0.0)) * 100),
            float((g1 / (1 - g1) - g0 / (1 - g0)) * 100), float(np.sqrt(max(float(step @ c2 @ step), 0.0)) * 100))


def estimate_tank(*, reading_h: npt.ArrayLike, gauge_l: npt.ArrayLike, sale_h: npt.ArrayLike,
                  sale_nozzle: npt.ArrayLike, sale_l: npt.ArrayLike, n_nozzles: int,
                  temp_c: npt.ArrayLike | None = None, delivery_h: npt.ArrayLike | None = None,
                  settle_h: float = SETTLE_H, beta_prior: tuple[float, float] = BETA_PRIOR, lags: int = LAGS,
                  drift_scan: bool = True, drift_window_h: float | None = None,
                  drift_step_h: float = DRIFT_STEP_H,
                  drift_threshold_pct: float = DRIFT_THRESHOLD_PCT, drift_z: float = DRIFT_Z,
                  drift_min_sales: int = DRIFT_MIN_SALES, drift_min_before_h: float = DRIFT_MIN_BEFORE_H,
                  drift_credibility: float = DRIFT_CREDIBILITY, series: bool = False,
                  period_h: float = PERIOD_H) -> TankEstimate:
    """Fit one tank.  Times in hours on any common origin; volumes in litres; ``sale_nozzle`` is the
    0-based nozzle index of each sale; ``temp_c`` the gauge's temperature per reading.  A sale counts from
    the first reading at or after it; sales before the first or after the last usable reading are not
    used.  Changes are looked for at ``last reading − k × drift_step_h`` (k ≥ 1) within ``drift_window_h``
    (``None``: the whole record) and at least ``drift_min_before_h`` after the first reading, unless
    ``drift_scan`` is false.  ``series`` adds the balance and per-period errors an alert charts
    (:class:`TankSeries`, periods of ``period_h`` from time 0).  Returns NaN
    estimates when there are too few readings for the unknowns; raises ``ValueError`` on malformed input."""
    t = _floats(reading_h, "reading_h")
    g = _floats(gauge_l, "gauge_l")
    if t.size != g.size:
        raise ValueError("reading_h and gauge_l must have the same length")
    temp = None if temp_c is None else _floats(temp_c, "temp_c")
    if temp is not None and temp.size != t.size:
        raise ValueError("temp_c must have one value per reading")
    d = np.sort(_floats([] if delivery_h is None else delivery_h, "delivery_h"))
    st = _floats(sale_h, "sale_h")
    sv = _floats(sale_l, "sale_l")
    sn_raw = np.asarray(sale_nozzle).ravel()
    if sn_raw.size and not np.issubdtype(sn_raw.dtype, np.integer):
        raise ValueError("sale_nozzle must be integer indices")
    sn = sn_raw.astype(np.int64)
    if not (st.size == sv.size == sn.size):
        raise ValueError("sale_h, sale_nozzle and sale_l must have the same length")
    if n_nozzles < 1:
        raise ValueError("n_nozzles must be at least 1")
    if sn.size and (sn.min() < 0 or sn.max() >= n_nozzles):
        raise ValueError("sale_nozzle index out of range")
    if (sv < 0).any():
        raise ValueError("sale_l must not be negative")
    if beta_prior[1] <= 0:
        raise ValueError("beta_prior sd must be positive")
    if drift_step_h <= 0:
        raise ValueError("drift_step_h must be positive")
    order = np.argsort(t, kind="stable")
    t, g = t[order], g[order]
    if temp is not None:
        temp = temp[order]
    if (np.diff(t) <= 0).any():
        raise ValueError("two gauge readings at the same time")

    # segments between deliveries; readings still settling after a delivery are left out
    seg_all = np.searchsorted(d, t, side="right")
    keep = t - np.concatenate([[-np.inf], d])[seg_all] >= settle_h
    tk, gk, seg = t[keep], g[keep], seg_all[keep]
    n_k = tk.size
    k = np.searchsorted(tk, st, side="left")
    used = (k >= 1) & (k < n_k)
    sales = np.bincount(sn[used], minlength=n_nozzles).astype(np.int64)
    if n_k < MIN_READINGS:
        return _empty(n_nozzles, sales, int(n_k), 0)
    k, nz, vol, s_time = k[used], sn[used], sv[used], st[used]

    def cumulative(mask: BoolArray) -> FloatArray:
        """Volume shown per nozzle by each reading (K × N), of the sales in ``mask``."""
        out: FloatArray = np.cumsum(np.bincount(k[mask] * n_nozzles + nz[mask], weights=vol[mask],
                                                minlength=n_k * n_nozzles).reshape(n_k, n_nozzles), axis=0)
        return out

    starts = np.concatenate([[0], np.flatnonzero(np.diff(seg)) + 1])
    counts = np.diff(np.concatenate([starts, [n_k]]))

    def demean(m: FloatArray) -> FloatArray:
        out: FloatArray = m - np.repeat(np.add.reduceat(m, starts, axis=0) / counts[:, None], counts, axis=0)
        return out

    cum = cumulative(np.ones(k.size, dtype=np.bool_))
    active = np.flatnonzero(sales > 0)
    cols = [cum[:, n] for n in active] + [-tk]
    beta_col: int | None = None
    if temp is not None:
        tau_sale = np.interp(s_time, t, temp) - T_REF_C
        cols.append(gk * (temp[keep] - T_REF_C) + np.cumsum(np.bincount(k, weights=vol * tau_sale, minlength=n_k)))
        beta_col = len(cols) - 1
    xy = demean(np.column_stack([*cols, gk + cum.sum(axis=1)]))
    x, y = xy[:, :-1], xy[:, -1]
    leak_col = active.size
    n_seg = int(starts.size)
    fit = _fit(x, y, beta_col, beta_prior, lags, n_seg)
    if fit is None:
        return _empty(n_nozzles, sales, int(n_k), n_seg)

    # drift scan: every (nozzle, start day) as a single change, strongest first
    drift = np.full(n_nozzles, np.nan)
    drift_se = np.full(n_nozzles, np.nan)
    drift_from = np.full(n_nozzles, np.nan)
    changes: dict[int, tuple[int, float]] = {}  # nozzle -> (column, start)
    flagged = np.zeros(n_nozzles, dtype=np.bool_)
    drift_p = np.full(n_nozzles, np.nan)
    score = np.nan  # the strongest change's |change| / standard error, refitted
    if drift_scan and active.size:
        span = tk[-1] - tk[0] if drift_window_h is None else min(drift_window_h, tk[-1] - tk[0])
        cuts = tk[-1] - drift_step_h * np.arange(1, int(span // drift_step_h) + 1)
        cuts = cuts[cuts >= tk[0] + drift_min_before_h]
        # R_n,c(t_k) = volume shown by n from c to t_k: its running total less what it had shown before c
        order = np.lexsort((s_time, nz))
        bounds = np.searchsorted(nz[order], np.arange(n_nozzles + 1))
        run = np.concatenate([[0.0], np.cumsum(vol[order])])
        pairs = []
        for n in active:
            times = s_time[order[bounds[n]:bounds[n + 1]]]
            before = np.searchsorted(times, cuts, side="left")     # sales of n before each cut
            ok = (before >= drift_min_sales) & (times.size - before >= drift_min_sales)
            pairs += [(int(n), float(c), float(run[bounds[n] + b] - run[bounds[n]]))
                      for c, b in zip(cuts[ok], before[ok], strict=True)]
        cand_key = [(n, c) for n, c, _v in pairs]
        if pairs:
            cols_n = np.array([n for n, _c, _v in pairs])
            cut_t = np.array([c for _n, c, _v in pairs])
            shown_before = np.array([v for _n, _c, v in pairs])
            cand = demean(np.where(tk[:, None] >= cut_t[None, :], cum[:, cols_n] - shown_before[None, :], 0.0))
        else:
            cand = np.zeros((n_k, 0))
        keys = np.array([n for n, _ in cand_key], dtype=np.int64)
        local = np.searchsorted(active, keys)  # column of each candidate's nozzle error
        while cand.shape[1]:
            coef, rr = _scan(fit, x, cand, beta_col)
            gain = np.where(np.isfinite(coef), coef**2 * rr, -1.0)  # fall of the residual sum of squares
            gain[np.isin(keys, list(changes))] = -1.0
            if gain.max() <= 0:
                break
            g_n = fit.coef[local]
            with np.errstate(divide="ignore", invalid="ignore"):
                size = coef / (1 - g_n) ** 2 * 100  # the change in percent of error
                size_se = np.sqrt(fit.var_eff / rr) / (1 - g_n) ** 2 * 100
            for n in np.unique(keys[gain >= 0]):  # each nozzle's strongest candidate, for the report
                j = np.flatnonzero(keys == n)
                j = j[np.argmax(gain[j])]
                drift[n], drift_se[n], drift_from[n] = size[j], size_se[j], cand_key[j][1]
            # the strongest candidate among those big enough to matter: a nozzle selling a small share of
            # the tank needs a large change to explain what a busy neighbour explains with a small one
            big = np.where(np.abs(size) >= drift_threshold_pct, gain, -1.0)
            if big.max() <= 0:
                break
            best = int(np.argmax(big))
            n_best = int(keys[best])
            new = _fit(np.column_stack([x, cand[:, best]]), y, beta_col, beta_prior, lags, n_seg)
            if new is None:
                break
            # the change tested with the noise of the model that has it (the model without it is misfit)
            _now, _now_se, step, step_se = _change(new, int(local[best]), x.shape[1])
            if not changes:
                score = abs(step) / step_se if step_se > 0 else np.nan
            if not (abs(step) >= drift_threshold_pct and abs(step) >= drift_z * step_se):
                break
            # which nozzle: the likelihood ratio of each candidate against the best, summed over start days
            live = gain >= 0
            loglik = (gain[live] - gain[best]) / (2 * new.var_eff)
            weight = np.bincount(keys[live], weights=np.exp(loglik), minlength=n_nozzles)
            post = weight / weight.sum()
            ranked = np.argsort(-post, kind="stable")
            need = int(np.searchsorted(np.cumsum(post[ranked]), drift_credibility - 1e-12)) + 1
            flagged[ranked[:need]] = True
            drift_p = np.fmax(np.where(np.isnan(drift_p), 0.0, drift_p), post)
            x, fit = np.column_stack([x, cand[:, best]]), new
            changes[n_best] = (x.shape[1] - 1, cand_key[best][1])

    err = np.full(n_nozzles, np.nan)
    err_se = np.full(n_nozzles, np.nan)
    cov = fit.m * fit.var_eff
    for i, n in enumerate(active):
        if int(n) in changes:
            col, start = changes[int(n)]
            err[n], err_se[n], drift[n], drift_se[n] = _change(fit, i, col)
            drift_from[n] = start
            continue
        g0 = fit.coef[i]
        err[n] = g0 / (1 - g0) * 100
        err_se[n] = np.sqrt(max(cov[i, i], 0.0)) / (1 - g0) ** 2 * 100
    leak_se = float(np.sqrt(max(cov[leak_col, leak_col], 0.0))) if fit.ident[leak_col] else np.nan
    beta = float(fit.coef[beta_col]) if beta_col is not None else np.nan
    if drift_scan and not changes:
        drift_p[active] = 0.0
    leak = float(fit.coef[leak_col])
    out_series = None
    if series:
        if period_h <= 0:
            raise ValueError("period_h must be positive")
        out_series = _series(tk, seg, cum, fit, x, changes, active, leak, period_h)
    return TankEstimate(err, err_se, drift, drift_se, drift_from, flagged, drift_p, float(score), sales,
                        leak, leak_se, beta, float(np.sqrt(fit.resid_var)), fit.lrv, int(n_k),
                        n_seg, np.arange(n_nozzles, dtype=np.int64), out_series)


def _series(tk: FloatArray, seg: IntArray, cum: FloatArray, fit: _Fit, x: FloatArray,
            changes: dict[int, tuple[int, float]], active: IntArray, leak: float, period_h: float) -> TankSeries:
    """The balance per reading and each nozzle's apparent error per period (see :class:`TankSeries`): the
    nozzle's error before any change found, plus the period's balance unexplained by the model *without that
    nozzle's change*, over what the nozzle showed."""
    line = -(leak if np.isfinite(leak) else 0.0) * (tk - tk[0])
    balance = fit.resid + line
    same = seg[1:] == seg[:-1]                         # increments within a segment only (deliveries split)
    period = np.floor(tk[1:] / period_h).astype(np.int64)
    first = int(period.min()) if period.size else 0
    n_p = int(period.max()) - first + 1 if period.size else 0
    idx = period - first
    n_noz = cum.shape[1]
    err = np.full((n_p, n_noz), np.nan)
    shown = np.zeros((n_p, n_noz))
    d_c = np.where(same[:, None], np.diff(cum, axis=0), 0.0)
    for i, n in enumerate(active.tolist()):
        r = fit.resid.copy()
        if n in changes:
            col = changes[n][0]
            r = r + fit.coef[col] * x[:, col]
        dr_p = np.bincount(idx, weights=np.where(same, np.diff(r), 0.0), minlength=n_p)
        shown[:, n] = np.bincount(idx, weights=d_c[:, n], minlength=n_p)
        with np.errstate(divide="ignore", invalid="ignore"):
            g_p = fit.coef[i] + dr_p / shown[:, n]
            err[:, n] = np.where(shown[:, n] >= PERIOD_MIN_L, g_p / (1 - g_p) * 100, np.nan)
    starts = np.asarray((np.arange(n_p) + first) * period_h, dtype=np.float64)
    return TankSeries(tk.copy(), balance, line, starts, err, shown)


def estimate_fleet(*, nozzle_tank: npt.ArrayLike, reading_tank: npt.ArrayLike, reading_h: npt.ArrayLike,
                   gauge_l: npt.ArrayLike, sale_nozzle: npt.ArrayLike, sale_h: npt.ArrayLike,
                   sale_l: npt.ArrayLike, temp_c: npt.ArrayLike | None = None,
                   delivery_tank: npt.ArrayLike | None = None, delivery_h: npt.ArrayLike | None = None,
                   **options: float | int | tuple[float, float] | None) -> list[TankEstimate]:
    """Every tank of a fleet from flat arrays: ``nozzle_tank[n]`` is the 0-based tank of nozzle ``n``;
    readings and deliveries carry their tank index, sales their nozzle index; ``options`` are passed to
    :func:`estimate_tank`.  One :class:`TankEstimate` per tank that has nozzles, in tank order, its
    ``nozzles`` the fleet indices of its nozzles in local order."""
    ntank = np.asarray(nozzle_tank, dtype=np.int64).ravel()
    rt = np.asarray(reading_tank, dtype=np.int64).ravel()
    r_h, r_g = _floats(reading_h, "reading_h"), _floats(gauge_l, "gauge_l")
    r_temp = None if temp_c is None else _floats(temp_c, "temp_c")
    d_t = np.asarray([] if delivery_tank is None else delivery_tank, dtype=np.int64).ravel()
    d_h = _floats([] if delivery_h is None else delivery_h, "delivery_h")
    s_n = np.asarray(sale_nozzle, dtype=np.int64).ravel()
    s_h, s_l = _floats(sale_h, "sale_h"), _floats(sale_l, "sale_l")
    if not (rt.size == r_h.size == r_g.size) or (r_temp is not None and r_temp.size != rt.size):
        raise ValueError("reading arrays must have the same length")
    if d_t.size != d_h.size:
        raise ValueError("delivery_tank and delivery_h must have the same length")
    if not (s_n.size == s_h.size == s_l.size):
        raise ValueError("sale arrays must have the same length")
    if ntank.size == 0 or ntank.min() < 0:
        raise ValueError("nozzle_tank must give every nozzle a tank index >= 0")
    if s_n.size and (s_n.min() < 0 or s_n.max() >= ntank.size):
        raise ValueError("sale_nozzle index out of range")
    if (rt.size and rt.min() < 0) or (d_t.size and d_t.min() < 0):
        raise ValueError("tank index must be >= 0")
    n_tanks = int(max(ntank.max(), rt.max(initial=-1), d_t.max(initial=-1))) + 1
    local = np.zeros(ntank.size, dtype=np.int64)
    members = _groups(ntank, n_tanks)
    for m in members:
        local[m] = np.arange(m.size)
    r_groups, d_groups, s_groups = _groups(rt, n_tanks), _groups(d_t, n_tanks), _groups(ntank[s_n], n_tanks)
    out: list[TankEstimate] = []
    for i in range(n_tanks):
        m, ri, di, si = members[i], r_groups[i], d_groups[i], s_groups[i]
        if m.size == 0:
            continue
        est = estimate_tank(reading_h=r_h[ri], gauge_l=r_g[ri], temp_c=None if r_temp is None else r_temp[ri],
                            delivery_h=d_h[di], sale_h=s_h[si], sale_nozzle=local[s_n[si]], sale_l=s_l[si],
                            n_nozzles=int(m.size), **options)  # type: ignore[arg-type]
        out.append(dataclasses.replace(est, nozzles=m))
    return out


def _groups(key: IntArray, n: int) -> Sequence[IntArray]:
    """Row indices per key value 0 … n−1, in their original order."""
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]
