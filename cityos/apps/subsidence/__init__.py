"""Ground deformation from InSAR (``cityos subsidence``).

A SAR constellation measures how the ground moves, to the millimetre, every few days.
This app ingests what InSAR processors write (MintPy HDF5, European Ground Motion
Service point CSV, GeoTIFF stacks) into an array store of points with a spatial index
(:mod:`.points`), fits every point's motion at once (:mod:`.fit`: velocity,
acceleration, seasonal term, trend change, line-of-sight to vertical) and turns the
points into what a city's customers ask about:

- :mod:`.levelling`: agreement with precise levelling benchmarks (mean difference,
  MAE, RMSE, correlation) with scatter and time-series plots;
- :mod:`.buildings`: rate and differential settlement per building footprint, angular
  distortion and the damage category of Boscardin & Cording (1989) / Burland (1995);
- :mod:`.assets`: chainage profiles of rate and cumulative displacement along railways,
  canals and roads;
- :mod:`.construction`: construction-monitoring settlement markers beside InSAR;
- :mod:`.customers`: one processed product, many customers: each a tenant with its own
  areas of interest and assets, threshold alerts after each new acquisition, API usage
  metered per customer, and points never shown outside a customer's areas.

The HTTP API is :mod:`.api` (``/apps/subsidence``), the dashboard layers and pages
:mod:`.web`, the HTML report :mod:`.report`, the commands :mod:`.cli`
(``cityos subsidence ...``) and the demo city's product :mod:`.demo`.
"""
