"""Reports of search runs (and the pieces other packages' reports reuse): one self-contained HTML file with
embedded PNG figures, and a markdown twin with the PNGs next to it."""

from nas_core.report.document import Document, Facts, Figure, Note, Table, figure_png, pyplot, write_document
from nas_core.report.run import SearchRun, Trial, read_search_run
from nas_core.report.search import build_search_document, genotype_name, write_search_report

__all__ = [
    "Document",
    "Facts",
    "Figure",
    "Note",
    "SearchRun",
    "Table",
    "Trial",
    "build_search_document",
    "figure_png",
    "genotype_name",
    "pyplot",
    "read_search_run",
    "write_document",
    "write_search_report",
]
