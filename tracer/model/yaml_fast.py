"""YAML documents built from libyaml's node graph by one tight recursive function.

PyYAML's ``CSafeLoader`` parses and composes in C but builds the Python objects through the
generic pure-Python ``SafeConstructor`` (a generator per collection, a dict of constructed
nodes, a dispatch per node): at 10,000 pods that is most of a cold load. Manifests use a
small part of YAML: mappings, sequences, and scalars of the core tags. Those are built here
directly (scalars other than strings through SafeConstructor's own functions, so ``yes``,
``0o17``, ``1_000``, timestamps come out exactly as before); a document with anything else
(merge keys, ``!!set``/``!!omap``, unknown tags, unhashable keys, anchors, nesting past the
limit) is built by SafeConstructor itself, from the same nodes, with the same errors. Parse
errors come from libyaml's parser before construction, unchanged.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

STR = "tag:yaml.org,2002:str"
MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"
SCALAR_TAGS = ("null", "bool", "int", "float", "binary", "timestamp")

BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Unusual(Exception):
    """The document needs SafeConstructor's general machinery."""


class FastSafeLoader(BaseLoader):  # type: ignore[misc, valid-type]
    """``CSafeLoader`` (or ``SafeLoader`` without libyaml) with the fast construction above.

    ``max_depth``: deeper documents go the general way (the caller checks their depth);
    ``shallow`` says whether every document so far was built fast (so is no deeper)."""

    max_depth = 64
    aliases_possible = True             # set False when the text has no anchor ("&")

    def __init__(self, stream):
        super().__init__(stream)
        self.shallow = True
        self._resolved: dict[tuple, str] = {}
        tags = [f"tag:yaml.org,2002:{tag}" for tag in SCALAR_TAGS]
        self._scalar = {tag: self.yaml_constructors[tag] for tag in tags}

    def resolve(self, kind, value, implicit):
        # A pure function of its arguments for the safe resolver (no path resolvers):
        # manifests repeat the same keys and values thousands of times.
        if self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        key = (kind, value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = self._resolved[key] = super().resolve(kind, value, implicit)
        return tag

    def construct_document(self, node):
        if not self.aliases_possible:
            try:
                return self._build(node, 1)
            except _Unusual:
                pass
        self.shallow = False
        return super().construct_document(node)

    def _build(self, node, depth: int) -> Any:
        if depth > self.max_depth:
            raise _Unusual
        kind = type(node)
        if kind is ScalarNode:
            if node.tag == STR:
                return node.value
            make = self._scalar.get(node.tag)
            if make is None:
                raise _Unusual
            return make(self, node)
        depth += 1
        if kind is MappingNode and node.tag == MAP:
            out = {}
            for key_node, value_node in node.value:
                if type(key_node) is not ScalarNode:
                    raise _Unusual          # a collection key: unhashable, or a merge key
                key = self._build(key_node, depth)
                out[key] = self._build(value_node, depth)
            return out
        if kind is SequenceNode and node.tag == SEQ:
            return [self._build(item, depth) for item in node.value]
        raise _Unusual


def load_documents(text: str, *, max_depth: int) -> tuple[list[Any], bool]:
    """Every document of ``text`` (as ``yaml.load_all`` with the safe loader), and whether all
    were built fast, hence nest no deeper than ``max_depth``."""
    loader = FastSafeLoader(text)
    loader.max_depth = max_depth
    loader.aliases_possible = "&" in text         # no anchor, no alias
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs, loader.shallow
    finally:
        loader.dispose()
