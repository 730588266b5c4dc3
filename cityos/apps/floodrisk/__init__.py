"""Flood risk and the value of adaptation: a study tool for feasibility studies.

``floodrisk`` answers the question a developer, a city, a bank or an insurer asks of a
flood-prone site: how much of it floods, how often, what that costs each year, and what
a package of measures (retention ponds, levees, drainage upgrades, green
infrastructure, raised floors) is worth against its cost.

A study (``study.yaml``) names the inputs in standard formats (a DEM GeoTIFF, land
cover with Manning's n, buildings and roads as GeoJSON, drains, soil losses), design
rainfall from an IDF curve, the return periods and the packages of measures. The
workflow (:mod:`~cityos.apps.floodrisk.study`) runs every return period x package on
a 2D local-inertial solver (:mod:`~cityos.apps.floodrisk.solver`), in a process pool
or on a Dask cluster, caching each run by a hash of what determines it; it writes each
run's GeoTIFFs (max depth, max velocity, first inundation time, duration above a
depth). Impacts (:mod:`~cityos.apps.floodrisk.damage`) use the JRC global depth-damage
functions for Asia; the economics (:mod:`~cityos.apps.floodrisk.economics`) integrate
damage over annual exceedance probability into the expected annual damage (EAD) and
appraise each package (damage avoided, NPV, benefit-cost ratio, premiums). The HTML
report (:mod:`~cityos.apps.floodrisk.report`) states the headline numbers with maps,
tables and the loss-exceedance curve; results show on the dashboard as flood-hazard
areas. Commands: ``cityos floodrisk run|report|demo-catchment``; guide:
``docs/floodrisk.md``.
"""
