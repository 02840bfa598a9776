"""Wiring and serving: the configuration loaded whole (settings and policy file), the app
factory, gunicorn's server and worker, and the light healthcheck probe.

Kept free of imports, so that the probe and the worker can be imported alone."""
