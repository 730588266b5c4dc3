"""Flood risk in money: expected annual damage, the appraisal of measures, premiums.

Expected annual damage (EAD) is the integral of event damage over annual exceedance
probability, ``EAD = int_0^1 D(p) dp`` with ``p = 1/T`` for an event of return period
``T`` years, by the trapezoid rule between the modelled events (damage linear in ``p``
between them), with these tails:

- *Frequent events*: no damage for events more frequent than the protection standard
  (``protection_standard_yr``, when given) or, without one, than the most frequent
  modelled event: ``D(p) = 0`` for ``p > 1/T_min``. Between the protection standard and
  the modelled events the damage is interpolated linearly in ``p``, and held at the
  nearest modelled event's damage outside them.
- *Rare events*: beyond the rarest modelled event (``p < 1/T_max``) the damage is held
  at that event's damage down to ``p = 0`` (``tail="hold"``, the default, which counts
  ``D(T_max) / T_max``), or taken as zero (``tail="truncate"``, a lower bound).

A package's benefit is the EAD it avoids each year; over a lifetime of ``N`` years at a
discount rate ``r`` (end-of-year flows, years 1..N), against its capital cost at year 0
and its annual costs in years 1..N::

    PV(benefits) = dEAD * A(r, N),  PV(costs) = capital + annual * A(r, N),
    A(r, N) = (1 - (1 + r)^-N) / r   (= N when r = 0)
    NPV = PV(benefits) - PV(costs),  BCR = PV(benefits) / PV(costs)

The insurer's view: the pure (risk) premium is the EAD; the gross premium loads it for
expenses, capital and profit, ``EAD x (1 + loading)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

TAILS = ("hold", "truncate")


def _curve(return_periods_yr: Sequence[float], damages: Sequence[float]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exceedance probabilities (descending) and their damages, checked."""
    periods = np.asarray(return_periods_yr, dtype=float)
    damage = np.asarray(damages, dtype=float)
    if periods.ndim != 1 or periods.shape != damage.shape or periods.size == 0:
        raise ValueError(f"return periods ({periods.size}) and damages ({damage.size}) must "
                         "be two equal, non-empty lists")
    if np.any(~np.isfinite(periods)) or np.any(periods <= 1.0):
        raise ValueError(f"return periods must be finite and above 1 year, got "
                         f"{periods.tolist()}")
    if np.any(~np.isfinite(damage)) or np.any(damage < 0):
        raise ValueError(f"damages must be finite and not negative, got {damage.tolist()}")
    if np.unique(periods).size != periods.size:
        raise ValueError(f"return periods repeat: {periods.tolist()}")
    order = np.argsort(periods)
    return 1.0 / periods[order], damage[order]


def expected_annual_damage(return_periods_yr: Sequence[float], damages: Sequence[float], *,
                           protection_standard_yr: float | None = None,
                           tail: str = "hold") -> float:
    """Expected annual damage by the trapezoid rule over exceedance probability.

    Parameters
    ----------
    return_periods_yr : sequence of float
        Return periods of the modelled events (years, > 1), any order.
    damages : sequence of float
        Damage of each event.
    protection_standard_yr : float, optional
        No damage from events more frequent than this return period (defences hold);
        default: the shortest modelled return period.
    tail : str
        ``hold`` (the rarest event's damage down to p = 0) or ``truncate`` (zero beyond).

    Returns
    -------
    float
        EAD in the currency of ``damages`` per year.

    Examples
    --------
    Damage linear in p, zero at T = 2 and 100 at T = 100, truncated:
    ``int_{0.01}^{0.5} 100 (0.5 - p) / 0.49 dp = 24.5``.

    >>> expected_annual_damage([2, 100], [0, 100], tail="truncate")
    24.5
    """
    if tail not in TAILS:
        raise ValueError(f"tail: {tail!r} is not one of {', '.join(TAILS)}")
    p, d = _curve(return_periods_yr, damages)  # p descending (frequent first)
    p_frequent = p[0] if protection_standard_yr is None else 1.0 / float(protection_standard_yr)
    if protection_standard_yr is not None and not protection_standard_yr > 1.0:
        raise ValueError(f"protection_standard_yr: {protection_standard_yr} must exceed 1 year")
    # integrate D(p) over [p_rare_end, p_frequent] on the modelled points plus the limit
    knots = np.unique(np.concatenate([p[p <= p_frequent], [p_frequent]]))  # ascending
    values = np.interp(knots, p[::-1], d[::-1])  # held beyond the modelled range
    knots, values = knots[knots >= p[-1]], values[knots >= p[-1]]
    ead = float(np.trapezoid(values, knots)) if knots.size > 1 else 0.0
    if tail == "hold":
        p_end = float(min(p[-1], p_frequent))
        ead += float(np.interp(p_end, p[::-1], d[::-1])) * p_end
    return float(ead)


def loss_exceedance(return_periods_yr: Sequence[float], damages: Sequence[float]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The loss-exceedance curve: (annual exceedance probability, damage), rarest first."""
    p, d = _curve(return_periods_yr, damages)
    return p[::-1].copy(), d[::-1].copy()


def annuity_factor(rate: float, years: int) -> float:
    """Present value of 1 a year paid at the end of years 1..``years`` at ``rate``."""
    if years < 0:
        raise ValueError(f"lifetime_years: {years} must not be negative")
    if rate <= -1.0:
        raise ValueError(f"discount_rate: {rate} must exceed -1")
    if rate == 0.0:
        return float(years)
    return float((1.0 - (1.0 + rate) ** -years) / rate)


@dataclass
class Appraisal:
    """A package of measures against the baseline.

    Attributes
    ----------
    package : str
    ead, ead_baseline, ead_reduction : float
        Per year.
    damage_avoided : dict of float to float
        Per return period: baseline damage - package damage.
    capital_cost, annual_cost : float
    pv_benefits, pv_costs, npv : float
    bcr : float
        ``pv_benefits / pv_costs`` (inf when the package costs nothing).
    pure_premium, gross_premium : float
        The insurer's annual premium for the residual risk (EAD, and with loading).
    discount_rate : float
    lifetime_years : int
    """

    package: str
    ead: float
    ead_baseline: float
    ead_reduction: float
    damage_avoided: dict[float, float]
    capital_cost: float
    annual_cost: float
    pv_benefits: float
    pv_costs: float
    npv: float
    bcr: float
    pure_premium: float
    gross_premium: float
    discount_rate: float
    lifetime_years: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["damage_avoided"] = {f"{k:g}": v for k, v in self.damage_avoided.items()}
        if not np.isfinite(self.bcr):
            data["bcr"] = None
        return data


def gross_premium(ead: float, loading: float) -> float:
    """Gross premium: the pure premium (EAD) loaded by ``loading`` (0.3 = 30 %)."""
    if loading < 0:
        raise ValueError(f"loading_factor: {loading} must not be negative")
    return float(ead) * (1.0 + float(loading))


def appraise(package: str, baseline: Mapping[float, float], with_package: Mapping[float, float],
             *, capital_cost: float, annual_cost: float, discount_rate: float,
             lifetime_years: int, loading: float = 0.0,
             protection_standard_yr: float | None = None, tail: str = "hold") -> Appraisal:
    """Appraise a package: EAD reduction, damage avoided per event, NPV, BCR, premiums.

    Parameters
    ----------
    package : str
    baseline, with_package : mapping of float to float
        Damage per return period without and with the package (same return periods).
    capital_cost : float
        Spent at year 0.
    annual_cost : float
        Operation and maintenance, years 1..``lifetime_years``.
    discount_rate : float
        e.g. 0.06.
    lifetime_years : int
    loading : float
        Insurer's loading on the pure premium.
    protection_standard_yr, tail
        As :func:`expected_annual_damage`.
    """
    if set(baseline) != set(with_package):
        raise ValueError(f"package {package!r}: return periods {sorted(with_package)} differ "
                         f"from the baseline's {sorted(baseline)}")
    if capital_cost < 0 or annual_cost < 0:
        raise ValueError(f"package {package!r}: costs must not be negative")
    periods = sorted(baseline)
    ead_base = expected_annual_damage(periods, [baseline[t] for t in periods],
                                      protection_standard_yr=protection_standard_yr, tail=tail)
    ead = expected_annual_damage(periods, [with_package[t] for t in periods],
                                 protection_standard_yr=protection_standard_yr, tail=tail)
    factor = annuity_factor(discount_rate, int(lifetime_years))
    reduction = ead_base - ead
    pv_benefits = reduction * factor
    pv_costs = float(capital_cost) + float(annual_cost) * factor
    return Appraisal(
        package=package, ead=ead, ead_baseline=ead_base, ead_reduction=reduction,
        damage_avoided={float(t): float(baseline[t] - with_package[t]) for t in periods},
        capital_cost=float(capital_cost), annual_cost=float(annual_cost),
        pv_benefits=pv_benefits, pv_costs=pv_costs, npv=pv_benefits - pv_costs,
        bcr=pv_benefits / pv_costs if pv_costs > 0 else float("inf"),
        pure_premium=ead, gross_premium=gross_premium(ead, loading),
        discount_rate=float(discount_rate), lifetime_years=int(lifetime_years))
