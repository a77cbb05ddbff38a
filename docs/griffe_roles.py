"""Griffe extension for the API reference: the docstrings' conventions, in Markdown.

* Sphinx cross-reference roles such as ``:class:`~pdeml.pde.PDEProblem``` (they read well in
  ``help()``) become inline code: ``PDEProblem`` for a ``~`` target (last component only),
  the full target otherwise, the text for ``text <target>``.
* ``Example:`` and ``Example (what it shows):`` section headers become griffe's ``Examples:``
  section (so the ``>>>`` lines render as code), the parenthesis as its first line.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref):`(?P<body>[^`]+)`")


def _replace(m: re.Match) -> str:
    body = m["body"].strip()
    label = re.match(r"(?P<text>.+?)\s*<(?P<target>[^>]+)>$", body)
    if label:
        return f"`{label['text']}`"
    if body.startswith("~"):
        return f"`{body[1:].rsplit('.', 1)[-1]}`"
    return f"`{body}`"


EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Examples?(?: \((?P<title>[^)]*)\))?:[ \t]*$", re.M)


def _example(m: re.Match) -> str:
    head = f"{m['indent']}Examples:"
    if m["title"]:
        title = m["title"][0].upper() + m["title"][1:]
        head += f"\n{m['indent']}    {title}:\n"
    return head


def convert(text: str) -> str:
    return EXAMPLE.sub(_example, ROLE.sub(_replace, text))


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:  # noqa: ARG002
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
