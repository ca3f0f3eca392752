"""Reports: the filtered incident view and its analytics as a PDF, with charts and evidence stills.

ReportLab (BSD licence, pure Python, maintained since 2000) lays out the PDF and draws the charts
as vector graphics with its own chart library, so reports need neither matplotlib nor a browser.
"""

from safewatch.reports.pdf import ReportData, ReportStill, render_incident_report

__all__ = ["ReportData", "ReportStill", "render_incident_report"]
