"""Archived footage: ``safewatch audit`` (what happened) and ``safewatch backtest`` (what a rule
change would have changed), on the shared frame path of :mod:`safewatch.pipeline`.

The dashboard's audit and "Test this change" jobs call these modules too, which is why they live
outside the live runtime: the API depends on them, the runtime depends on the API.
"""
