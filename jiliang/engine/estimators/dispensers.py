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
The probe's temperature (油温) is first smoothed within each segment (a local quadratic over
± ``temp_smooth_h`` hours, so a delivery's jump is kept): its reading-to-reading noise of a few hundredths
of a degree times 30 m³ of fuel is a litre of noise *in the regressor* ``u``, which biases β towards zero
(errors in variables) and leaves a slow thermal misfit — in a tank whose temperature hardly moves, the
misfit of the first days after a cool-down looked exactly like a nozzle change (measured: the drift
scan's worst false alarms, a change and a β of 0.0004 instead of 0.0012 fitting the raw temperatures
better than the truth).

**Drift (计量漂移): a GLS change-point scan.**  A nozzle (油枪) whose error changes at time ``c`` adds
``d × R_n,c(t)`` to the level form, ``R`` being the volume it has shown since ``c``.  Every nozzle and
every ``c`` a whole number of ``drift_step_h`` before the last reading (within ``drift_window_h``; by
default the whole record but its first three days) is a candidate, tested as the only change: its
generalised likelihood ratio (GLR) is ``z²``, ``z`` being its estimated change over its standard error
when added alone to the model.  The test is generalised least squares (GLS): the gauge noise (液位仪噪声)
white + AR(1) is whitened exactly — ``e_k − φ e_{k−1}`` has a tridiagonal covariance, whose banded
Cholesky factor makes the rows independent, for any reading spacing (φ per median interval, ``φ^(Δt/Δ)``
across a gap) — with a free level per segment (油罐 segments between deliveries) as explicit columns; all
candidates of one nozzle are whitened from one whitening of its running total
(:meth:`_Whitener.steps`).  Measured on the simulator, the whitening gains less in the size of the test
(a least-squares scan scaled by the long-run variance is nearly as precise) than in its calibration: the
tail of the scan's maximum over nozzles, days and daily runs comes from noise models that understate the
slow noise, and a modelled noise lets the alarm sit lower for the same false alarms.

The noise shape decides the calibration, so it is estimated twice: first from the base fit's variogram
(below), and — when the best candidate whose change is at least ``drift_threshold_pct`` reaches
``DRIFT_PRESCREEN`` × ``drift_z`` — again by restricted maximum likelihood (REML) on the model *with* that
change (without it the model is misfit and the slow noise looks larger), over a grid of shapes
(``NOISE_PHI`` × ``NOISE_RHO``).  A week or two of hourly readings tells the slow part of the noise
poorly from the white one, and the most likely shape understates it now and then — the scan's maximum
then has a long tail; so of the shapes within ``drift_noise_cut`` of the best REML log-likelihood the one
with the *largest long-run variance* is used.  The scan is repeated with it and the best candidate raises
the alarm when ``|z| ≥ drift_z``; the scan then repeats for the other nozzles with that change in the
model.  ``drift_score`` is the first test's ``|z|``.

One change at a time is what makes an hourly gauge sensitive: nozzles on a tank sell in nearly fixed
proportions, so *all* their errors moving freely at once are poorly separated, while the tank's total
change is well measured.  Which nozzle changed (attribution, 归属) is told only by the sale-to-sale jitter
of their shares: the likelihood ratio ``exp((z² − z_best²) / 2)`` of every candidate against the best,
summed over the start days, gives each nozzle a probability ``drift_p`` (the largest GLR names the top
suspect), and the nozzles holding ``drift_credibility`` (95 %) of it are flagged — usually one, two or
three.  A nozzle with a change found reports the GLS fit's error since ``c`` as ``error_pct`` and the
change as ``drift_pct`` (with their standard errors); every other nozzle reports its strongest
candidate's change.  What an hourly gauge cannot do: a 0.3 % drift on a nozzle selling a sixth of a
tank's fuel changes the tank's balance by ≈ 2.5 L a day against ≈ 3.6 L of long-run gauge noise per
reading, and some such drifts are not distinguishable from noise within a week even knowing the nozzle
and the day (bench/RESULTS.md).

**Intervals.**  Gauge noise is not independent from hour to hour (waves, stratification, a probe that
drifts slowly), and every regressor varies slowly, so what matters is the noise's *long-run* variance:
a white + AR(1) model is fitted to the residual variogram over ``lags_h`` hours and its spectral density
at zero (never less than the residual variance) scales the ordinary least-squares covariance of the
errors and the leak.  95 % intervals are ±1.96 standard errors.

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
from scipy.linalg import cholesky_banded, solve_banded
from scipy.special import ndtri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

T_REF_C = 20.0
BETA_PRIOR = (0.00105, 0.00025)  # thermal expansion of the fuel, 1/°C: gasoline ≈ 0.0012, diesel ≈ 0.0008
SETTLE_H = 1.0                   # readings this soon after a delivery are left out
TEMP_SMOOTH_H = 6.0              # the gauge temperature is smoothed over ± this many hours (0: raw)
LAGS_H = 24.0                    # variogram lags of the noise model, hours (so many readings at the median interval)
MIN_READINGS = 6
# Decisions (bench/fuel_accuracy.py measures the detection and false-alarm rates they give)
LEAK_THRESHOLD_L_PER_H = 0.19    # half the 0.38 L/h (0.1 US gal/h) leak to be detected, as in EPA practice
LEAK_ALPHA = 0.01                # one-sided significance of the leak test
DRIFT_STEP_H = 24.0              # changes are looked for from any whole day before the last reading
DRIFT_THRESHOLD_PCT = 0.15       # half the 0.3 % MPE
DRIFT_Z = 4.25                   # the best of (nozzles × days) candidates (GLS), run every day
DRIFT_NOISE_CUT = 1.0            # REML log-likelihood drop within which the largest long-run variance is taken
DRIFT_PRESCREEN = 0.6            # a tank whose best candidate is below this × drift_z is not refitted
DRIFT_MIN_SALES = 20             # sales on each side of a candidate change
DRIFT_MIN_BEFORE_H = 72.0        # record before a candidate change: a shorter one is too weak a baseline
DRIFT_CREDIBILITY = 0.95         # the nozzles flagged for a drift hold this much of its attribution
Z95 = 1.959963984540054
PERIOD_H = 24.0                  # the evidence's per-period nozzle errors: one a day
PERIOD_MIN_L = 100.0             # a period's error is shown only when the nozzle sold at least this much
# the drift test's noise shapes (REML grid): the slow part's AR(1) coefficient after one hour, slow/white variance ratio
NOISE_PHI = (0.5, 0.65, 0.75, 0.82, 0.88, 0.92, 0.95)  # the slow noise's correlation after one hour
NOISE_RHO = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


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
    :func:`estimate_fleet`): the current error in percent and its standard error; the change of its
    strongest candidate in the drift window (the kept change if flagged), its standard error and start
    (hours, NaN if none could be tested); whether the
    nozzle is a suspect of a drift alarm and its probability of being the one that changed (0 when no
    alarm, NaN when not tested); the sales used.  Per tank: the drift score (the GLS scan's largest
    |change| / standard error among the candidates of at least ``drift_threshold_pct``, compared with
    ``drift_z``; NaN when there was none); the leak rate (L/h, > 0 = losing fuel)
    and its standard error, the thermal coefficient, the noise of one reading (L), the long-run variance
    factor, the readings used, the segments between deliveries and the readings' median interval (hours) —
    with hourly readings a 0.3 % drift on a nozzle selling a sixth of the tank's fuel is flagged within a
    week about 97 times in 100, with readings every 15 minutes 99.5 (bench/RESULTS.md)."""

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
    reading_interval_h: float = float("nan")  # the median interval of the gauge readings used, hours

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




def _variogram_noise(r: FloatArray, lags: int) -> tuple[float, float, float]:
    """The gauge noise as white + AR(1), ``(σw², σa², φ)`` with φ per reading, fitted to the residuals'
    variogram ``V(h) = σw² + σa² (1 − φ^h)``, h = 1…lags; its long-run variance (spectral density at
    frequency zero, per reading) is ``σw² + σa² (1 + φ) / (1 − φ)``.

    The variogram is used rather than the residual autocorrelations because differences at short lags are
    hardly touched by the fit, whereas the segment levels and the slowly varying regressors absorb the
    slow part of the noise and so bias the autocorrelations (and any long-run variance built on them)
    downwards."""
    h_max = min(lags, r.size // 4)
    if h_max < 2:
        return float(r @ r) / max(r.size, 1), 0.0, 0.5
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
    return float(white[i]), float(slow[i]), float(phi[i])


def _interval_h(t: FloatArray) -> float:
    """The median interval between readings, hours (1 for fewer than two readings)."""
    return float(np.median(np.diff(t))) if t.size > 1 else 1.0


def _long_run(noise: tuple[float, float, float]) -> float:
    white, slow, phi = noise
    return white + slow * (1 + phi) / (1 - phi)


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
    noise: tuple[float, float, float]  # the residuals' white + AR(1) model (σw², σa², φ)


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
        noise = _variogram_noise(resid, lags)
        lrv = max(1.0, _long_run(noise) / resid_var) if resid_var > 0 else 1.0
        coef = coef_s / scale
        coef[~ident] = np.nan
        fit = _Fit(coef, m_s / np.outer(scale, scale), ident, resid, row, resid_var * lrv, resid_var, lrv, dof,
                   noise)
        var_eff = fit.var_eff
    return fit


def _change(coef: FloatArray, cov: FloatArray, i: int, j: int) -> tuple[float, float, float, float]:
    """Current error (g_i + d_j), its standard error, the change e(g + d) − e(g) and its standard error, in
    percent, by the delta method on ``e = g / (1 − g)``; ``cov`` is the coefficients' covariance."""
    g0 = coef[i]
    g1 = g0 + coef[j]
    d0, d1 = 1 / (1 - g0) ** 2, 1 / (1 - g1) ** 2
    c2 = cov[np.ix_([i, j], [i, j])]
    now, step = np.array([d1, d1]), np.array([d1 - d0, d1])
    return (float(g1 / (1 - g1) * 100), float(np.sqrt(max(float(now @ c2 @ now), 0.0)) * 100),
            float((g1 / (1 - g1) - g0 / (1 - g0)) * 100), float(np.sqrt(max(float(step @ c2 @ step), 0.0)) * 100))


def _smooth_temperature(t: FloatArray, temp: FloatArray, seg: IntArray, half_h: float) -> FloatArray:
    """Each reading's temperature from a local quadratic fitted to the readings of its segment within
    ± ``half_h`` hours (any spacing; one-sided at the ends of a segment, so a delivery's jump is kept).  A
    probe's reading-to-reading noise (a few hundredths of a degree) multiplied by 30 m³ of fuel and
    β ≈ 0.001/°C is a litre of noise *in the thermal regressor*: it biases β towards zero (errors in
    variables) and leaves a slow thermal misfit that a drift scan takes for a change; the fuel's own
    temperature changes over a day or more.  Too few readings for a quadratic: the raw value."""
    k = t.size
    idx = np.arange(k)
    reach = int(max((idx - np.searchsorted(t, t - half_h, side="left")).max(initial=0),
                    (np.searchsorted(t, t + half_h, side="right") - 1 - idx).max(initial=0)))
    j = idx[:, None] + np.arange(-reach, reach + 1)[None, :]   # each reading's neighbours (K × window)
    jc = np.clip(j, 0, k - 1)
    dt = t[jc] - t[:, None]
    w = ((j >= 0) & (j < k) & (seg[jc] == seg[:, None]) & (np.abs(dt) <= half_h)).astype(np.float64)
    dt = dt * w
    d2 = dt * dt
    s0, s1, s2, s3, s4 = w.sum(axis=1), dt.sum(axis=1), d2.sum(axis=1), (d2 * dt).sum(axis=1), (d2 * d2).sum(axis=1)
    v = temp[jc] * w
    b0, b1, b2 = v.sum(axis=1), (v * dt).sum(axis=1), (v * d2).sum(axis=1)
    # the quadratic's value at the reading (its intercept), by Cramer's rule on [[s0 s1 s2] [s1 s2 s3] [s2 s3 s4]]
    c0, c1, c2 = s2 * s4 - s3 * s3, s2 * s3 - s1 * s4, s1 * s3 - s2 * s2
    det = s0 * c0 + s1 * c1 + s2 * c2
    good = (s0 >= 5) & (det > 1e-9 * s0 * s2 * s4)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(good, (b0 * c0 + b1 * c1 + b2 * c2) / det, temp)
    return out


class _Whitener:
    """Exact whitening (GLS) for gauge noise white (σw²) + AR(1) (σa², φ per median reading interval, so
    ``φ^(Δt / interval)`` across a gap): ``z_k = e_k − φ_k e_{k−1}`` has a tridiagonal covariance, whose
    banded Cholesky factor L gives independent unit-variance rows ``L⁻¹ z``."""

    def __init__(self, t: FloatArray, noise: tuple[float, float, float]) -> None:
        white, slow, phi = noise
        dt = np.diff(t)
        self.p = np.concatenate([[0.0], phi ** (dt / _interval_h(t))])
        white = max(white, 1e-9 * (white + slow) + 1e-12)
        diag = white * (1 + self.p**2) + slow * (1 - self.p**2)
        diag[0] = white + slow
        ab = np.zeros((2, t.size))
        ab[0] = diag
        ab[1, :-1] = -self.p[1:] * white
        self.chol = cholesky_banded(ab, lower=True, check_finite=False)
        self.logdet = 2.0 * float(np.log(self.chol[0]).sum())

    def __call__(self, m: FloatArray) -> FloatArray:
        z = m.copy()
        z[1:] -= self.p[1:].reshape((-1,) + (1,) * (m.ndim - 1)) * m[:-1]
        out: FloatArray = solve_banded((1, 0), self.chol, z, check_finite=False)
        return out

    def steps(self, cum: FloatArray, nozzle: IntArray, first: IntArray, before: FloatArray) -> FloatArray:
        """The whitened change columns ``R_j = 1[k ≥ first_j] (cum[:, nozzle_j] − before_j)`` — many start
        readings per nozzle — from one whitening of each nozzle's running total: the solve started at a
        later reading differs from the full one by the full solution's state there, carried forward by
        ``Π a``, and by the difference filter's first row."""
        # the solve L w = z is the recurrence w_k = a_k w_{k−1} + z_k / l_k; log Π a
        a = -self.chol[1, :-1] / self.chol[0, 1:]
        log_a = np.concatenate([[0.0], np.cumsum(np.log(np.maximum(a, 1e-300)))])
        used, col = np.unique(nozzle, return_inverse=True)
        w = self(np.column_stack([cum[:, used], np.ones(cum.shape[0])]))
        j = np.arange(nozzle.size)
        full = w[:, col] - before[None, :] * w[:, -1:]          # W(cum_n − before), every reading
        expo = log_a[:, None] - log_a[first - 1][None, :]
        after = np.arange(cum.shape[0])[:, None] >= first[None, :]
        carry = np.exp(np.where(after, expo, -np.inf))          # Π a from the first reading on
        lead = self.p[first] * (cum[first - 1, nozzle] - before) / self.chol[0, first]
        a_first = np.exp(log_a[first] - log_a[first - 1])
        out: FloatArray = np.where(after, full - carry * full[first - 1, j] + carry * (lead / a_first), 0.0)
        return out


def _reml_noise(t: FloatArray, x: FloatArray, y: FloatArray, cut: float) -> tuple[float, float, float]:
    """The noise model for the drift test, by restricted maximum likelihood (REML) over a grid of shapes
    (``NOISE_PHI`` — per hour, so ``φ^interval`` per reading — × ``NOISE_RHO`` and white alone), the white
    variance profiled; φ is returned per median reading interval.  Of the shapes within
    ``cut`` of the best log-likelihood the one with the *largest long-run variance* is taken: with a week or
    two of readings the slow part is poorly told from the white one, and taking the least favourable shape
    the data allow keeps a short record from understating the noise a change is tested against."""
    k, p = x.shape
    z = np.column_stack([x, y])
    rows = []
    step_h = _interval_h(t)
    for phi, rho in [(0.5, 0.0)] + [(f**step_h, r) for f in NOISE_PHI for r in NOISE_RHO]:
        w = _Whitener(t, (1.0, rho, phi))
        zw = w(z)
        g = zw.T @ zw
        a, b, yy = g[:p, :p], g[:p, p], g[p, p]
        sc = np.sqrt(np.diag(a))
        sc[sc == 0] = 1.0
        ev, vec = np.linalg.eigh(a / np.outer(sc, sc))
        keep = ev > 1e-10 * ev.max()
        proj = vec[:, keep].T @ (b / sc)
        dof = k - int(keep.sum())
        if dof < 2:
            return 1.0, 0.0, 0.5
        s2 = max(float(yy - (proj * proj / ev[keep]).sum()) / dof, 1e-12)
        ll = -0.5 * (dof * np.log(s2) + w.logdet + np.log(ev[keep]).sum() + 2 * np.log(sc).sum())
        rows.append((ll, s2, phi, rho))
    top = max(r[0] for r in rows)
    _ll, s2, phi, rho = max((r for r in rows if r[0] >= top - cut),
                            key=lambda r: r[1] * (1 + r[3] * (1 + r[2]) / (1 - r[2])))
    return s2, s2 * rho, phi


@dataclass
class _Scan:
    coef: FloatArray      # the model's coefficients (NaN: not identified)
    cov: FloatArray       # their covariance
    change: FloatArray    # each candidate's coefficient added alone
    z: FloatArray         # … over its standard error


def _gls_scan(w: _Whitener, x: FloatArray, y: FloatArray, cw: FloatArray, beta_col: int | None,
              beta_prior: tuple[float, float]) -> _Scan:
    """GLS fit of the model (the β prior as one row) and every candidate column (``cw``, whitened) added
    alone (Frisch–Waugh on the whitened columns): its coefficient and z, so ``z²`` is its log-likelihood
    ratio × 2."""
    p = x.shape[1]
    allw = w(np.column_stack([x, y]))
    xw, yw = allw[:, :p], allw[:, p]
    scale = np.sqrt((xw * xw).sum(axis=0))
    scale[scale == 0] = 1.0
    xs = xw / scale
    a = xs.T @ xs
    b = xs.T @ yw
    row = 0.0
    if beta_col is not None:
        row = 1.0 / beta_prior[1] / scale[beta_col]
        a[beta_col, beta_col] += row**2
        b[beta_col] += row**2 * beta_prior[0] * scale[beta_col]
    m = np.linalg.pinv(a, rcond=1e-11, hermitian=True)
    ident = np.abs(np.diag(m @ a) - 1.0) < 1e-6
    coef_s = m @ b
    r = yw - xs @ coef_s
    h = m @ (xs.T @ cw)
    d = cw - xs @ h
    rr = (d * d).sum(axis=0)
    if beta_col is not None:
        rr = rr + (row * h[beta_col]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(rr > 0, (cw.T @ r) / np.where(rr > 0, rr, 1.0), np.nan)
    coef = coef_s / scale
    coef[~ident] = np.nan
    return _Scan(coef, m / np.outer(scale, scale), change, change * np.sqrt(rr))


def estimate_tank(*, reading_h: npt.ArrayLike, gauge_l: npt.ArrayLike, sale_h: npt.ArrayLike,
                  sale_nozzle: npt.ArrayLike, sale_l: npt.ArrayLike, n_nozzles: int,
                  temp_c: npt.ArrayLike | None = None, delivery_h: npt.ArrayLike | None = None,
                  settle_h: float = SETTLE_H, beta_prior: tuple[float, float] = BETA_PRIOR,
                  lags_h: float = LAGS_H, temp_smooth_h: float = TEMP_SMOOTH_H,
                  drift_scan: bool = True, drift_window_h: float | None = None,
                  drift_step_h: float = DRIFT_STEP_H,
                  drift_threshold_pct: float = DRIFT_THRESHOLD_PCT, drift_z: float = DRIFT_Z,
                  drift_min_sales: int = DRIFT_MIN_SALES, drift_min_before_h: float = DRIFT_MIN_BEFORE_H,
                  drift_credibility: float = DRIFT_CREDIBILITY, drift_noise_cut: float = DRIFT_NOISE_CUT,
                  drift_noise: tuple[float, float, float] | None = None,
                  series: bool = False, period_h: float = PERIOD_H) -> TankEstimate:
    """Fit one tank.  Times in hours on any common origin; volumes in litres; ``sale_nozzle`` is the
    0-based nozzle index of each sale; ``temp_c`` the gauge's temperature per reading (smoothed over
    ± ``temp_smooth_h`` within each segment; 0 uses it raw).  A sale counts from the first reading at or
    after it; sales before the first or after the last usable reading are not used.  Changes are looked
    for at ``last reading − k × drift_step_h`` (k ≥ 1) within ``drift_window_h`` (``None``: the whole
    record) and at least ``drift_min_before_h`` after the first reading, unless ``drift_scan`` is false;
    ``drift_noise_cut`` is the REML margin of the drift test's noise model; ``drift_noise`` — the gauge's
    noise when it is known (white variance L², slow variance L², the slow part's correlation after one
    hour), e.g. from a long record of the same gauge — replaces that estimate.  The residual variogram that
    scales the intervals spans ``lags_h`` hours of readings.  ``series`` adds the balance
    and per-period errors an alert charts (:class:`TankSeries`, periods of ``period_h`` from time 0).
    Returns NaN estimates when there are too few readings for the unknowns; raises ``ValueError`` on
    malformed input."""
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
    if temp_smooth_h < 0 or drift_noise_cut < 0:
        raise ValueError("temp_smooth_h and drift_noise_cut must not be negative")
    if lags_h <= 0:
        raise ValueError("lags_h must be positive")
    if drift_noise is not None and not (len(drift_noise) == 3 and drift_noise[0] >= 0 and drift_noise[1] >= 0
                                        and drift_noise[0] + drift_noise[1] > 0 and 0 <= drift_noise[2] < 1):
        raise ValueError("drift_noise must be (white variance ≥ 0, slow variance ≥ 0, 0 ≤ φ < 1), not both zero")
    order = np.argsort(t, kind="stable")
    t, g = t[order], g[order]
    if temp is not None:
        temp = temp[order]
    if (np.diff(t) <= 0).any():
        raise ValueError("two gauge readings at the same time")

    # segments between deliveries; readings still settling after a delivery are left out
    seg_all = np.searchsorted(d, t, side="right")
    if temp is not None and temp_smooth_h > 0:
        temp = _smooth_temperature(t, temp, seg_all, temp_smooth_h)
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
    level = gk + cum.sum(axis=1)
    xy = demean(np.column_stack([*cols, level]))
    x, y = xy[:, :-1], xy[:, -1]
    leak_col = active.size
    n_seg = int(starts.size)
    lags = max(2, round(lags_h / _interval_h(tk)))
    fit = _fit(x, y, beta_col, beta_prior, lags, n_seg)
    if fit is None:
        return _empty(n_nozzles, sales, int(n_k), n_seg)

    drift = np.full(n_nozzles, np.nan)
    drift_se = np.full(n_nozzles, np.nan)
    drift_from = np.full(n_nozzles, np.nan)
    flagged = np.zeros(n_nozzles, dtype=np.bool_)
    drift_p = np.full(n_nozzles, np.nan)
    score = np.nan
    changes: dict[int, tuple[int, float]] = {}  # nozzle -> (column of x, start)
    gls_change: dict[int, tuple[float, float, float, float]] = {}  # nozzle -> error, se, change, se (GLS)
    if drift_scan and active.size:
        span = tk[-1] - tk[0] if drift_window_h is None else min(drift_window_h, tk[-1] - tk[0])
        cuts = tk[-1] - drift_step_h * np.arange(1, int(span // drift_step_h) + 1)
        cuts = cuts[(cuts >= tk[0] + drift_min_before_h) & (cuts > tk[0])]
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
        if pairs:
            keys = np.array([n for n, _c, _v in pairs], dtype=np.int64)
            cut_t = np.array([c for _n, c, _v in pairs])
            shown_before = np.array([v for _n, _c, v in pairs])
            first_k = np.searchsorted(tk, cut_t, side="left")
            cand = np.where(tk[:, None] >= cut_t[None, :], cum[:, keys] - shown_before[None, :], 0.0)

            def scan(noise: tuple[float, float, float]) -> _Scan:
                w = _Whitener(tk, noise)
                return _gls_scan(w, xg, level, w.steps(cum, keys, first_k, shown_before), beta_col, beta_prior)

            local = np.searchsorted(active, keys)  # column of each candidate's nozzle error
            dummies = (seg[:, None] == seg[starts][None, :]).astype(np.float64)
            xg = np.column_stack([*cols, dummies])  # the level form with a column per segment, for GLS
            noise = fit.noise if drift_noise is None else (drift_noise[0], drift_noise[1],
                                                            drift_noise[2] ** _interval_h(tk))
            first = True
            while True:
                live = ~np.isin(keys, list(changes))
                sc = scan(noise)
                best = _strongest(sc, local, live, drift_threshold_pct)
                if drift_noise is None and best is not None and abs(sc.z[best]) >= DRIFT_PRESCREEN * drift_z:
                    # the noise re-estimated with the change in the model (without it the model is misfit)
                    noise = _reml_noise(tk, np.column_stack([xg, cand[:, best]]), level, drift_noise_cut)
                    sc = scan(noise)
                    best = _strongest(sc, local, live, drift_threshold_pct)
                g_n = sc.coef[local]
                with np.errstate(divide="ignore", invalid="ignore"):
                    size = sc.change / (1 - g_n) ** 2 * 100  # the change in percent of error
                    size_se = size / sc.z
                for n in np.unique(keys[live & ~flagged[keys]]):  # each nozzle's strongest candidate, for the
                    j = np.flatnonzero(live & (keys == n))            # report (a suspect's: its alarm's scan)
                    j = j[np.argmax(np.nan_to_num(np.abs(sc.z[j]), nan=-1.0))]
                    drift[n], drift_se[n], drift_from[n] = size[j], abs(size_se[j]), cut_t[j]
                if best is None:
                    break
                if first:
                    score = float(abs(sc.z[best]))
                    first = False
                if abs(sc.z[best]) < drift_z:
                    break
                # which nozzle: the likelihood ratio of each candidate against the best, summed over start days
                z2 = np.where(live, np.nan_to_num(sc.z**2, nan=0.0), 0.0)
                weight = np.bincount(keys, weights=np.where(live, np.exp((z2 - z2[best]) / 2), 0.0),
                                     minlength=n_nozzles)
                post = weight / weight.sum()
                ranked = np.argsort(-post, kind="stable")
                need = int(np.searchsorted(np.cumsum(post[ranked]), drift_credibility - 1e-12)) + 1
                flagged[ranked[:need]] = True
                drift_p = np.fmax(np.where(np.isnan(drift_p), 0.0, drift_p), post)
                n_best = int(keys[best])
                xg = np.column_stack([xg, cand[:, best]])
                x = np.column_stack([x, demean(cand[:, [best]])])
                changes[n_best] = (x.shape[1] - 1, float(cut_t[best]))
                if not live.sum() - int((keys == n_best).sum()):
                    break
            if changes:
                # the errors since and the changes from the GLS fit that tested them …
                sc = _gls_scan(_Whitener(tk, noise), xg, level, np.zeros((n_k, 0)), beta_col, beta_prior)
                for i, nozzle in enumerate(changes):
                    col_g = xg.shape[1] - len(changes) + i
                    gls_change[nozzle] = _change(sc.coef, sc.cov, int(np.searchsorted(active, nozzle)), col_g)
                # … the other nozzles, the leak and the balance from the least squares fit with the changes
                refit = _fit(x, y, beta_col, beta_prior, lags, n_seg)
                if refit is not None:
                    fit = refit

    err = np.full(n_nozzles, np.nan)
    err_se = np.full(n_nozzles, np.nan)
    cov = fit.m * fit.var_eff
    for i, n in enumerate(active):
        if int(n) in changes:
            err[n], err_se[n], drift[n], drift_se[n] = gls_change[int(n)]
            drift_from[n] = changes[int(n)][1]
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
                        n_seg, np.arange(n_nozzles, dtype=np.int64), out_series, _interval_h(tk))


def _strongest(sc: _Scan, local: IntArray, live: BoolArray, threshold_pct: float) -> int | None:
    """The candidate with the largest |z| among the live ones whose change is at least ``threshold_pct``: a
    nozzle selling a small share of the tank needs a large change to explain what a busy neighbour explains
    with a small one."""
    g_n = sc.coef[local]
    with np.errstate(divide="ignore", invalid="ignore"):
        big = live & (np.abs(sc.change / (1 - g_n) ** 2 * 100) >= threshold_pct) & np.isfinite(sc.z)
    if not big.any():
        return None
    return int(np.argmax(np.where(big, np.abs(sc.z), -1.0)))


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
