"""Buildings: points per footprint, differential settlement, angular distortion, damage
category (Boscardin & Cording 1989 / Burland 1995) and risk class, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from cityos.apps.subsidence.buildings import (
    AssetFormatError,
    Footprint,
    analyse_buildings,
    damage_category,
    differential_settlement,
    footprints_from_features,
    rate_class,
    risk_class,
)
from tests.apps.subsidence.test_subsidence_levelling import DAYS, make_store, metric_to_lonlat


def square(x0, y0, side):
    xs, ys = metric_to_lonlat([x0, x0 + side, x0 + side, x0, x0], [y0, y0, y0 + side, y0 + side, y0])
    return Polygon(list(zip(xs, ys, strict=True)))


@pytest.fixture
def town(tmp_path):
    """Building A (40 m square at 0..40 m): points at (10,10), (30,10), (10,30), (30,30) m
    settling 0, 10, 40, 5 mm over the period, velocities -1, -3, -8, -2 mm/yr.
    Building B (40 m square at 100..140 m): two points sinking 12 mm/yr, 1 mm apart in
    settlement. One point outside both (at 60, 60 m) settling 100 mm."""
    xy = [(10, 10), (30, 10), (10, 30), (30, 30), (110, 110), (130, 110), (60, 60)]
    lon, lat = metric_to_lonlat([p[0] for p in xy], [p[1] for p in xy])
    settlement = np.array([0.0, -10.0, -40.0, -5.0, -12.0, -13.0, -100.0])
    disp = settlement[:, None] * DAYS[None, :] / DAYS[-1]
    velocity = np.array([-1.0, -3.0, -8.0, -2.0, -12.0, -12.0, -50.0])
    store = make_store(tmp_path / "store", lon, lat, disp, fit={"velocity_mm_yr": velocity})
    return store, [Footprint("A", "Block A", square(0, 0, 40)),
                   Footprint("B", "Block B", square(100, 100, 40))]


def test_building_summaries_by_hand(town):
    store, footprints = town
    a, b = analyse_buildings(store, footprints)
    assert a.n_points == 4
    assert a.mean_rate_mm_yr == pytest.approx(-3.5)
    assert (a.min_rate_mm_yr, a.max_rate_mm_yr) == pytest.approx((-8.0, -1.0))
    assert a.cumulative_mm == pytest.approx(-13.75, abs=1e-4)
    # largest beta: points (10,10) and (10,30): 40 mm over 20 m = 2.0e-3 (1/500)
    assert a.differential_settlement_mm == pytest.approx(40.0, abs=1e-3)
    assert a.pair_distance_m == pytest.approx(20.0, abs=0.01)
    assert a.angular_distortion == pytest.approx(2.0e-3, rel=1e-3)
    assert (a.damage_category, a.damage_name) == (2, "slight")
    assert a.rate_class == "slow" and a.risk_class == "medium"
    assert b.n_points == 2
    assert b.angular_distortion == pytest.approx(1.0e-3 / 20.0, rel=1e-3)  # 1 mm / 20 m
    assert b.damage_category == 0
    assert b.rate_class == "fast" and b.risk_class == "high"


def test_only_the_allowed_points_count(town):
    store, footprints = town
    ids = np.asarray(store.ids)
    allowed = np.flatnonzero(np.isin(ids, [0, 1]))  # the two settling least
    (a,) = analyse_buildings(store, footprints[:1], allowed_rows=allowed)
    assert a.n_points == 2
    assert a.angular_distortion == pytest.approx(0.5e-3, rel=1e-3)  # 10 mm over 20 m


@pytest.mark.parametrize(("beta", "category"), [
    (0.0, 0), (0.5e-3, 0), (1.2e-3, 1), (2.0e-3, 2), (1 / 250, 3), (1 / 120, 4), (0.05, 4)])
def test_boscardin_cording_limits(beta, category):
    assert damage_category(beta) == category
    assert damage_category(-beta) == category


def test_rate_and_risk_classes():
    assert [rate_class(v) for v in (0.5, -2.0, 4.9, -7.0, 10.0, -25.0)] == [
        "stable", "slow", "slow", "moderate", "fast", "fast"]
    assert risk_class(0, "stable") == "negligible"
    assert risk_class(1, "stable") == "low"
    assert risk_class(4, "slow") == "high"
    assert risk_class(0, "moderate") == "medium"


def test_pairs_closer_than_the_minimum_are_left_out():
    beta, diff, distance = differential_settlement([0.0, 3.0], [0.0, 0.0], [0.0, -30.0])
    assert math.isnan(beta) and math.isnan(diff) and math.isnan(distance)
    beta, diff, distance = differential_settlement([0.0, 3.0, 0.0], [0.0, 0.0, 10.0],
                                                   [0.0, -30.0, -5.0])
    # pairs of 10 m (5 mm) and 10.44 m (25 mm): the second wins
    assert diff == pytest.approx(25.0) and distance == pytest.approx(math.hypot(3, 10))


def test_bad_footprints_are_named():
    with pytest.raises(AssetFormatError, match="feature 2 .*geometry: 'Point' is not a Polygon"):
        footprints_from_features([
            {"type": "Feature", "id": "a", "geometry": {"type": "Polygon", "coordinates": [
                [[0, 0], [1, 0], [1, 1], [0, 0]]]}, "properties": {}},
            {"type": "Feature", "id": "b", "geometry": {"type": "Point", "coordinates": [0, 0]}}])
    with pytest.raises(AssetFormatError, match="feature 1: id: missing"):
        footprints_from_features([{"type": "Feature", "geometry": None, "properties": {}}])
