"""The label indexes answer exactly what evaluating every selector against every item does."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import calico_selector, label_maps
from tracer.selector.labelindex import LabelIndex, SelectorIndex
from tracer.selector.selector import parse_selector

VOCABULARY = {"app": ("web", "db", "cache"), "tier": ("front", "back"), "env": ("prod", "dev")}
ITEMS = st.lists(label_maps(VOCABULARY), max_size=12)
SELECTORS = st.lists(calico_selector(VOCABULARY), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(ITEMS, SELECTORS)
def test_label_index_matches_brute_force(labels, selectors):
    index = LabelIndex(enumerate(labels))
    for text in selectors:
        selector = parse_selector(text)
        expected = tuple(i for i, item in enumerate(labels) if selector.matcher(item))
        assert index.matching(selector) == expected, text
        assert index.matching(selector) == expected          # the cached answer too


@settings(max_examples=100, deadline=None)
@given(ITEMS, SELECTORS)
def test_selector_index_matches_brute_force(labels, selectors):
    index = SelectorIndex(list(enumerate(selectors)))
    for item in labels:
        expected = [i for i, text in enumerate(selectors) if parse_selector(text).matcher(item)]
        assert index.matching(item) == expected, item
