"""Exports of an assessment: a terminal table, JSON, a self-contained HTML report and OSCAL."""

from gpaisec.compliance.reports.render import FORMATS, render_text, write_report

__all__ = ["FORMATS", "render_text", "write_report"]
