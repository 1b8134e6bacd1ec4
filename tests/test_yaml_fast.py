"""The fast YAML construction gives what PyYAML's safe loader gives: the same values (types
included) for every bundled manifest and for the corners of YAML 1.1, and the same errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tracer.model.yaml_fast import FastSafeLoader, load_documents

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for base in (ROOT / "scenarios", ROOT / "tests")
               for p in base.rglob("*.y*ml"))

CORNERS = [
    "a: yes\nb: No\nc: on\nd: ~\ne: null\nf: 0o17\ng: 017\nh: 0x1F\ni: 1_000\nj: 1:30\n"
    "k: .inf\nl: -.NaN\nm: 1e3\nn: 2024-01-02\no: 2024-01-02T03:04:05Z\np: '1'\nq: !!str 5\n"
    "r: !!binary aGVsbG8=\ns: \"x\\ty\"\nt: |\n  block\n  text\nu: >\n  folded\n  text\n",
    "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmerged:\n  <<: *b\n  z: 3\n",
    "m:\n  <<: {a: 1}\n  b: 2\n",
    "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!pairs [{a: 1}]\n",
    "=: value-key\n",
    "1: int key\n2.5: float key\ntrue: bool key\nnull: null key\n",
    "---\na: 1\n---\n---\n- b\n- c\n...\n",
    "dup: 1\ndup: 2\nother: 3\n",
    "[" * 70 + "]" * 70 + "\n",
    "".join(" " * i + "k:\n" for i in range(66)) + " " * 66 + "v\n",
    "",
    "# only a comment\n",
]
BROKEN = [
    "? [a, b]\n: c\n",
    "? {a: 1}\n: c\n",
    "a: [1, 2\n",
    "a: !!python/object:os.system x\n",
    "a: !custom x\n",
    "a: b: c\n",
    "a: *nowhere\n",
    "a: !!int notanumber\n",
]


def _reference(text: str):
    return list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def _typed(value):
    """A value with every node's type, so 1 and True and 1.0 differ."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


@pytest.mark.parametrize("text", CORNERS, ids=range(len(CORNERS)))
def test_corners_equal_safe_loader(text):
    docs, _ = load_documents(text, max_depth=64)
    assert _typed(docs) == _typed(_reference(text))


def test_plain_manifest_is_built_fast_and_deep_one_is_not():
    assert load_documents("a: [1, {b: c}]\n", max_depth=64)[1]
    assert not load_documents("a: [1, {b: c}]\n", max_depth=2)[1]
    assert not load_documents("a: &x 1\nb: *x\n", max_depth=64)[1]
    assert not load_documents("a: !!set {b}\n", max_depth=64)[1]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bundled_files_equal_safe_loader(path):
    text = path.read_text(errors="replace")
    try:
        want = _typed(_reference(text))
    except yaml.YAMLError as err:
        with pytest.raises(type(err)) as got:
            load_documents(text, max_depth=64)
        assert str(got.value) == str(err)
        return
    except RecursionError:
        return
    assert _typed(load_documents(text, max_depth=64)[0]) == want


@pytest.mark.parametrize("text", BROKEN, ids=range(len(BROKEN)))
def test_errors_equal_safe_loader(text):
    with pytest.raises(Exception) as want:
        _reference(text)
    with pytest.raises(type(want.value)) as got:
        load_documents(text, max_depth=64)
    assert str(got.value) == str(want.value)


def test_resolver_cache_is_per_loader():
    assert FastSafeLoader("a: 1").get_single_data() == {"a": 1}
