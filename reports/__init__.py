"""Reports over result records: pandas summaries (`tables`) printed as one self-contained HTML page (`html`)
or a compact markdown summary (`markdown`)."""

from tritbench.reports.tables import ReportData, build_data

__all__ = ["ReportData", "build_data"]
