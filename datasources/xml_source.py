"""``xml``: XML files and REST/SOAP-style answers; matching elements become items.

Streamed with ``xml.etree.ElementTree.iterparse``: each record element is converted
when it ends and then dropped, so memory holds one record (not the document).

Record path: element names separated by ``/``, compared with the *end* of each
element's path from the root, namespaces ignored: ``channel/item`` matches
``rss/channel/item``; ``Envelope/Body/GetUsersResponse/user`` matches a SOAP answer's
users. A leading ``/`` anchors the path at the root (``/rss/channel/item``); ``*``
matches any one name. Elements inside a record are part of it, never records
themselves.

Element -> JSON (namespaces stripped from element and attribute names; namespace
declarations dropped):

- an attribute ``a`` -> key ``@a`` (a string);
- a child element -> key of its name: text only (no attributes, no children) -> the
  text (an empty element -> ``null``), else an object; a name occurring several times
  -> a list in document order (names in ``list_elements`` are always lists);
- the text of an element with attributes or children -> key ``#text`` (omitted when
  blank); text between children ("mixed content") is dropped;
- a record element is always an object; all values are strings (no typing).

Security: external entities are never fetched (expat does not resolve them here) and
expat limits entity expansion (the "billion laughs" attack).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO, Any

from contracts.datasources import XmlSource
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import ResponseFormatError
from datasources.files import open_binary
from datasources.progress import SourceProgress

__all__ = ["XmlItems", "element_to_dict", "iter_records"]


class _Names(dict[str, str]):
    """Local names of tags (``{uri}name`` -> ``name``), computed once per tag."""

    def __missing__(self, tag: str) -> str:
        local = tag.rpartition("}")[2] if tag.startswith("{") else tag
        self[tag] = local
        return local


def element_to_dict(
    element: ET.Element,
    list_elements: frozenset[str] = frozenset(),
    names: _Names | None = None,
) -> Any:
    """The JSON form of ``element`` (see the module docstring)."""
    names = _Names() if names is None else names
    text = element.text.strip() if element.text else ""
    if not len(element) and not element.attrib:
        return text or None
    out: dict[str, Any] = {f"@{names[k]}": v for k, v in element.attrib.items()}
    if text:
        out["#text"] = text
    groups: dict[str, list[Any]] = {}
    for child in element:
        if isinstance(child.tag, str):
            value = element_to_dict(child, list_elements, names)
            groups.setdefault(names[child.tag], []).append(value)
    for name, values in groups.items():
        out[name] = values if len(values) > 1 or name in list_elements else values[0]
    return out


def _matches(stack: list[str], parts: list[str], anchored: bool) -> bool:
    if len(stack) < len(parts) or (anchored and len(stack) != len(parts)):
        return False
    tail = stack[len(stack) - len(parts) :]
    return all(p == "*" or p == name for p, name in zip(parts, tail, strict=True))


def iter_records(
    stream: IO[bytes], record_path: str, list_elements: frozenset[str] = frozenset()
) -> Iterator[dict[str, Any]]:
    """The records of the XML document in ``stream``, one at a time."""
    anchored = record_path.startswith("/")
    parts = record_path.strip("/").split("/")
    names = _Names()
    path: list[str] = []  # local names from the root to the current element
    elements: list[ET.Element] = []  # the elements on that path
    in_record, inner = False, 0  # inside a record; depth below the record element
    try:
        for event, element in ET.iterparse(stream, events=("start", "end")):
            if in_record:
                if event == "start":
                    inner += 1
                    continue
                if inner:  # a child of the record ended: kept until the record ends
                    inner -= 1
                    continue
                in_record = False
                value = element_to_dict(element, list_elements, names)
                yield value if isinstance(value, dict) else {"#text": value}
            elif event == "start":
                path.append(names[element.tag])
                elements.append(element)
                in_record, inner = _matches(path, parts, anchored), 0
                continue
            path.pop()
            elements.pop()
            if elements:  # drop what was read: records and everything outside them
                elements[-1].remove(element)
            else:
                element.clear()
    except ET.ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        raise ResponseFormatError(
            f"not well-formed XML at line {line}, column {column + 1}: {exc}"
        ) from None


class XmlItems(Source[XmlSource]):
    type = "xml"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        config = self.config
        lists = frozenset(config.list_elements)
        with open_binary(
            config, ctx, self.runtime, method=config.method, body=config.body
        ) as stream:
            yield from iter_records(stream, config.record_path, lists)
