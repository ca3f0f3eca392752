"""The frame path every kind of footage shares, live or archived.

``stages`` builds a camera's detector and tracker from the site file, ``step`` is the per-camera
post-detection step (tracks -> rules -> incidents, and the end-of-footage finish) and ``run``
drives a whole file through it in batches. The live server (``safewatch.runtime``) runs the same
``step`` behind its cross-camera inference worker; ``safewatch.footage`` (audit, backtest) runs
``run``. Nothing here depends on the runtime or the API.
"""
