"""What every CityOS app may use, besides :mod:`cityos.core`, and nothing else.

An app (a package under ``cityos/apps/``, or a third-party package with a
``cityos.apps`` entry point) imports ``cityos.core``, ``cityos.config``,
:mod:`cityos.apps.registry` (to declare its :class:`~cityos.apps.registry.AppSpec`)
and these modules; never ``cityos.cli``, ``cityos.server``, ``cityos.web`` or another
app's modules (``tests/test_architecture.py`` checks it):

:mod:`cityos.appkit.cli`
    Commands: ``settings_options`` (Settings fields as options), ``open_store`` (the
    store of the settings, or a clean exit), ``fail`` (error line and exit status),
    ``Progress`` / ``track`` (progress on stderr that obeys ``cityos --quiet``).
:mod:`cityos.appkit.http`
    Routers: the caller, its role and the store as FastAPI dependencies, and the
    NGSI-LD errors a route raises (answered as ProblemDetails).
:mod:`cityos.appkit.dashboard`
    How an app's entities look on the map (``LayerSpec``, ``ColorSteps``,
    ``ColorCategories``) and its pages in the dashboard's bar (``ViewSpec``).
:mod:`cityos.appkit.publish`
    Readings through the real ingest path, as a device (MQTT, with commands) or a
    gateway (HTTP) sends them; ``demo_publisher`` for a demo simulator.
:mod:`cityos.appkit.reports`
    HTML reports with figures (matplotlib figures inlined as PNG).
:mod:`cityos.appkit.demo`
    The demo city: its centre, name, tenant, clock anchor and what a simulator gets
    (``DemoContext``).
"""
