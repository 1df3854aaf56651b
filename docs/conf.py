"""Sphinx configuration: the Markdown pages in this folder (myst-parser) and the API reference
from the package's numpydoc docstrings (autodoc). ``nox -s docs`` builds it with warnings as
errors."""

from __future__ import annotations

import xpnet

project = "xpnet"
author = "the xpnet developers"
copyright = "the xpnet developers"
version = release = xpnet.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown headings become link targets (``page.md#heading``), as on GitHub.
myst_heading_anchors = 3

autodoc_typehints = "none"  # the signature shows them; numpydoc's sections say the rest
autodoc_member_order = "bysource"

# Classes list their public methods in their own entries, not as an autosummary table.
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"xpnet {release}"
