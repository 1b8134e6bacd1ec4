"""The compiled schema validator accepts exactly the documents the schema walk finds no
problem in: bundled manifests, and the same mutated (wrong types, nulls, unknown and missing
fields) so that most have a problem."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from tracer.model import schema
from tracer.model.loader import classify, expand_lists, read_documents

ROOT = Path(__file__).resolve().parent.parent
JUNK = [None, 1, "x", True, [], {}, [None], {"zz": 1}, 3.5, [1, 2], {"a": {"b": 1}}, "80",
        "a b", [{}], [[None]]]


def _documents():
    out = []
    for file in sorted((ROOT / "scenarios").rglob("*.yaml")):
        try:
            for doc in read_documents(str(file)):
                for item, _ in expand_lists(doc, str(file), "doc"):
                    raw = classify(item, str(file), {})
                    if raw is not None:
                        out.append((raw.key, item))
        except Exception:           # files that are not manifests (expectations, labs)
            continue
    return out


def _mutate(doc, rng: random.Random):
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        cur = doc
        for _ in range(rng.randint(0, 7)):
            if isinstance(cur, dict) and cur:
                key = rng.choice(list(cur))
            elif isinstance(cur, list) and cur:
                key = rng.randrange(len(cur))
            else:
                break
            if rng.random() < 0.25 or not isinstance(cur[key], (dict, list)):
                cur[key] = copy.deepcopy(rng.choice(JUNK))
                break
            cur = cur[key]
        if isinstance(cur, dict) and rng.random() < 0.2:
            cur[rng.choice(["foo", "spce", 1])] = 1
        if isinstance(cur, dict) and cur and rng.random() < 0.2:
            del cur[rng.choice(list(cur))]
    return doc


def test_compiled_validator_agrees_with_the_walk():
    rng = random.Random(10)
    documents = _documents()
    assert len(documents) > 50
    found = 0
    for key, doc in documents:
        for attempt in range(40):
            value = _mutate(doc, rng) if attempt else doc
            for sch, part in ((schema.KIND_SCHEMAS[key], value),
                              (schema.OBJECT_META, value.get("metadata"))):
                walked = schema._first_problem(part, sch)
                assert schema._accepts(sch)(part) == (walked is None)
                assert schema.check(part, sch) == walked
                found += walked is not None
    assert found > 1000


@pytest.mark.parametrize("value, text", [
    ({"metadata": {"name": "a", "labels": {"k": 1}}}, "metadata.labels.k: value must be"),
    ({"metadata": {"name": "a"}, "spec": {"podSelector": {}, "ingress": [None, {"form": []}]}},
     "unknown field 'spec.ingress[1].form'"),
])
def test_problems_are_spelled_with_their_path(value, text):
    problem = schema.check(value, schema.KIND_SCHEMAS["NetworkPolicy"])
    assert problem is not None and text in str(problem)
