"""Rainfall losses of the inundation solver: Green-Ampt infiltration and the SCS curve
number, both driven by a per-cell cumulative depth so that they stay exact over any
sequence of time steps.

The solver calls :meth:`initial_state` once, then :meth:`loss_m` every step with the
surface water available in each cell. Both models return a loss never larger than the
water available, so the depth stays non-negative and the volume balance exact.

References
----------
Green, W.H. and Ampt, G.A. (1911) Studies on soil physics. J. Agric. Sci. 4, 1-24.
Mein, R.G. and Larson, C.L. (1973) Modeling infiltration during a steady rain.
Water Resour. Res. 9(2), 384-394.
USDA NRCS (2004) National Engineering Handbook, Part 630 Hydrology, Chapter 10:
Estimation of direct runoff from storm rainfall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MM = 1e-3
HOUR = 3600.0

#: Codes the compiled solver kernel uses to pick a loss model.
NO_LOSS, GREEN_AMPT, CURVE_NUMBER = 0, 1, 2


def _field(value: float | np.ndarray, name: str, shape: tuple[int, int], *,
           low: float, high: float = np.inf, low_open: bool = False) -> np.ndarray:
    """``value`` as a float64 array of ``shape``, checked cell by cell."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim not in (0, 2) or (array.ndim == 2 and array.shape != shape):
        raise ValueError(f"{name}: shape {array.shape} does not match the grid {shape}")
    array = np.broadcast_to(array, shape).astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"{name}: {int((~finite).sum())} cells are not finite")
    bad = (array <= low) if low_open else (array < low)
    bad |= array > high
    if bad.any():
        r, c = np.argwhere(bad)[0]
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name}: cell ({r}, {c}) is {array[r, c]:g}; it must be {bound}"
                         + (f" and <= {high}" if np.isfinite(high) else ""))
    return array


@dataclass
class GreenAmpt:
    """Green-Ampt infiltration under ponded or rain-fed conditions.

    The infiltration capacity is ``f = K (1 + psi * dtheta / F)`` with ``F`` the
    cumulative infiltrated depth of the cell; any surface water in the cell (rain,
    run-on, inflow) may infiltrate up to that capacity.

    Parameters
    ----------
    conductivity_mm_h : float or (ny, nx) ndarray
        Saturated hydraulic conductivity ``K``, mm/h, >= 0.
    suction_mm : float or (ny, nx) ndarray
        Wetting-front suction head ``psi``, mm, >= 0.
    moisture_deficit : float or (ny, nx) ndarray
        Soil moisture deficit ``dtheta`` (porosity less initial moisture), 0-1.
    initial_infiltrated_mm : float or (ny, nx) ndarray
        Cumulative infiltration at the start (antecedent wetting), mm, >= 0.
    """

    conductivity_mm_h: float | np.ndarray
    suction_mm: float | np.ndarray
    moisture_deficit: float | np.ndarray
    initial_infiltrated_mm: float | np.ndarray = 0.0

    kind = GREEN_AMPT

    def parameters(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``K`` in m/s and ``psi * dtheta`` in m, each an array of ``shape``."""
        k = _field(self.conductivity_mm_h, "green_ampt.conductivity_mm_h", shape, low=0.0)
        psi = _field(self.suction_mm, "green_ampt.suction_mm", shape, low=0.0)
        deficit = _field(self.moisture_deficit, "green_ampt.moisture_deficit", shape,
                         low=0.0, high=1.0)
        return k * MM / HOUR, psi * MM * deficit

    def initial_state(self, shape: tuple[int, int]) -> np.ndarray:
        """The cumulative infiltrated depth ``F`` of each cell, m."""
        return _field(self.initial_infiltrated_mm, "green_ampt.initial_infiltrated_mm",
                      shape, low=0.0) * MM

    def loss_m(self, state: np.ndarray, water_m: np.ndarray, rain_m: float, dt_s: float,
               params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Infiltration of one step, m per cell; ``state`` (``F``) is updated in place.

        The capacity over the step takes ``F`` at the middle of the step (a second-order
        rule that stays finite at ``F = 0``, where it tends to the exact
        ``sqrt(2 K psi dtheta dt)``), then is limited by the water available.
        """
        k, psi_dtheta = params
        capacity = green_ampt_capacity(state, k, psi_dtheta, dt_s)
        loss = np.minimum(capacity, water_m)
        state += loss
        return loss

    def copy(self) -> GreenAmpt:
        """A deep copy (measures change the parameters of a copy)."""
        return GreenAmpt(*(np.array(v, dtype=np.float64, copy=True) for v in (
            self.conductivity_mm_h, self.suction_mm, self.moisture_deficit,
            self.initial_infiltrated_mm)))


def green_ampt_capacity(infiltrated_m, k_m_s, psi_dtheta_m, dt_s):
    """Green-Ampt infiltration capacity over ``dt_s`` from cumulative depth ``F``.

    Solves ``c = K dt (1 + psi dtheta / (F + c / 2))`` for ``c`` (the capacity with ``F``
    at the middle of the step), the positive root of a quadratic.
    """
    kdt = k_m_s * dt_s
    b = infiltrated_m - 0.5 * kdt
    return -b + np.sqrt(b * b + 2.0 * kdt * (infiltrated_m + psi_dtheta_m))


def green_ampt_ponded_time_s(infiltrated_mm, conductivity_mm_h, suction_mm, moisture_deficit):
    """Time for a ponded soil to take ``F`` mm, the exact Green-Ampt solution.

    ``t = (F - psi dtheta ln(1 + F / (psi dtheta))) / K`` (Green and Ampt 1911).

    Parameters
    ----------
    infiltrated_mm : float or ndarray
        Cumulative infiltration ``F``, mm.
    conductivity_mm_h, suction_mm, moisture_deficit : float
        As :class:`GreenAmpt`.

    Returns
    -------
    float or ndarray
        Seconds from the start of ponding.
    """
    pd = suction_mm * moisture_deficit
    f = np.asarray(infiltrated_mm, dtype=np.float64)
    return (f - pd * np.log1p(f / pd)) / conductivity_mm_h * HOUR


@dataclass
class CurveNumber:
    """SCS (NRCS) curve number losses applied to the rain falling on each cell.

    With ``S = 25400 / CN - 254`` mm and ``Ia = ratio * S``, the cumulative runoff of a
    cumulative rain ``P`` is ``Q = (P - Ia)^2 / (P - Ia + S)`` for ``P > Ia``, else 0;
    each step removes the increase of the cumulative loss ``P - Q``. Water arriving by
    run-on or inflow is not abstracted (the method is defined on rainfall).

    Parameters
    ----------
    cn : float or (ny, nx) ndarray
        Curve number, > 0 and <= 100 (100: impervious).
    initial_abstraction_ratio : float
        ``Ia / S``; 0.2 in the handbook, 0.05 in later practice.
    """

    cn: float | np.ndarray
    initial_abstraction_ratio: float = 0.2

    kind = CURVE_NUMBER

    def parameters(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``S`` and ``Ia`` in m, each an array of ``shape``."""
        cn = _field(self.cn, "curve_number.cn", shape, low=0.0, high=100.0, low_open=True)
        ratio = float(self.initial_abstraction_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"curve_number.initial_abstraction_ratio: {ratio:g} is outside 0-1")
        s = (25400.0 / cn - 254.0) * MM
        return s, ratio * s

    def initial_state(self, shape: tuple[int, int]) -> np.ndarray:
        """The cumulative rain ``P`` of each cell, m (zero at the start)."""
        return np.zeros(shape, dtype=np.float64)

    def loss_m(self, state: np.ndarray, water_m: np.ndarray, rain_m: float, dt_s: float,
               params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Abstraction of one step, m per cell; ``state`` (``P``) is updated in place."""
        s, ia = params
        before = state - curve_number_runoff(state, s, ia)
        state += rain_m
        after = state - curve_number_runoff(state, s, ia)
        return np.minimum(np.maximum(after - before, 0.0), water_m)

    def copy(self) -> CurveNumber:
        """A deep copy (measures change the curve numbers of a copy)."""
        return CurveNumber(np.array(self.cn, dtype=np.float64, copy=True),
                           self.initial_abstraction_ratio)


def curve_number_runoff(rain_m, s_m, ia_m):
    """Cumulative direct runoff ``Q`` of cumulative rain ``P`` (all in the same unit).

    Parameters
    ----------
    rain_m : float or ndarray
        Cumulative rain ``P``.
    s_m, ia_m : float or ndarray
        Potential retention ``S`` and initial abstraction ``Ia``.

    Returns
    -------
    float or ndarray
        ``(P - Ia)^2 / (P - Ia + S)`` where ``P > Ia``, else 0.
    """
    excess = np.maximum(np.asarray(rain_m, dtype=np.float64) - ia_m, 0.0)
    denominator = excess + s_m
    return np.where(denominator > 0.0, excess * excess / np.where(denominator > 0.0,
                                                                  denominator, 1.0), 0.0)
