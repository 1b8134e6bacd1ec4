"""Fuzzing calico-trace through its real entry point, in-process.

Hypothesis strategies build hostile but fair inputs: structure-aware mutations of the bundled
scenarios' manifests (fields deleted, types swapped, numbers out of range, unicode and control
characters, YAML aliases, truncated and binary files), mutated ``iptables-save``/``ipset`` dumps
of a rendered node, truncated and garbled captures, and random command-line arguments. Each case
is run through :func:`tracer.cli.main` (or the capture reader's ``main``) and judged by
:func:`judge`: exit status 0, 1 or 2, no exception escaping, and on status 2 one bounded,
printable error line on stderr. ``tests/test_fuzz_cli.py`` runs a fixed-seed handful in
``make test``; ``benchmarks/fuzz_campaign.py`` runs thousands (``make fuzz``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml
from hypothesis import strategies as st

import bundled

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
CAPTURES = ROOT / "tests" / "data" / "captures"
ERROR_PREFIX = "calico-trace: error: "
LINE_LIMIT = 1000           # characters of any stderr line (warnings echo input too)
CASE_SECONDS = 20           # a case running longer than this is a hang


# ============================================================================ running a case


@dataclass
class Outcome:
    """What one run of the entry point did."""

    argv: list[str]
    status: int | None = None
    stdout: str = ""
    stderr: str = ""
    crash: str | None = None          # the formatted traceback of an escaped exception
    cause: str | None = None          # exception type and innermost tracer frame

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


class Hang(Exception):
    """A case ran past :data:`CASE_SECONDS`."""


def _alarm(signum, frame):
    raise Hang(f"no answer after {CASE_SECONDS} s")


def run(entry: Callable[[list[str]], Any], argv: list[str]) -> Outcome:
    """Call ``entry(argv)`` as the console script would, catching what escapes it."""
    outcome = Outcome(argv=list(argv))
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                returned = entry(argv)
                outcome.status = returned if isinstance(returned, int) else 0
            except SystemExit as exit_:
                code = exit_.code
                outcome.status = code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:       # noqa: BLE001 - a crash is what we are looking for
        outcome.crash = "".join(traceback.format_exception(exc))
        outcome.cause = cause_of(exc)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    outcome.stdout, outcome.stderr = out.getvalue(), err.getvalue()
    return outcome


def cause_of(exc: BaseException) -> str:
    """``Type at file:function`` of the innermost frame in calico-trace's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/tracer/" in f.filename] or frames
    where = ours[-1] if ours else None
    place = f"{Path(where.filename).name}:{where.name}" if where else "?"
    return f"{type(exc).__name__} at {place}"


def cli_entry(argv: list[str]) -> None:
    import inspect
    import sys
    from tracer.cli import main
    if inspect.signature(main).parameters:
        main(argv)
    else:                       # an older calico-trace (main() read sys.argv): for comparisons
        saved, sys.argv = sys.argv, ["calico-trace", *argv]
        try:
            main()
        finally:
            sys.argv = saved


def capture_entry(argv: list[str]) -> int:
    from tracer.capture.__main__ import main
    return main(argv)


def judge(outcome: Outcome) -> str | None:
    """Why ``outcome`` breaks the promise, or None when it keeps it."""
    if outcome.crash is not None:
        return f"traceback: {outcome.cause}"
    if outcome.status not in (0, 1, 2):
        return f"exit status {outcome.status}"
    for line in outcome.lines:
        if len(line) > LINE_LIMIT:
            return f"stderr line of {len(line)} characters"
        if not line.isprintable():
            return "stderr line with a control character"
    if outcome.status == 2:
        errors = [line for line in outcome.lines if line.startswith(ERROR_PREFIX)]
        others = [line for line in outcome.lines
                  if not line.startswith((ERROR_PREFIX, "warning: ", "# "))]
        if "--verbose" in outcome.argv:        # asked for: the stages' notes before the error
            others = []
        if len(errors) != 1 or others:
            first = (others or errors or [""])[0]
            return f"status 2 without exactly one error line: {len(outcome.lines)} lines, " \
                   f"first {_shape(first)!r}"
    return None


def _shape(line: str) -> str:
    """A stderr line with its case-specific parts (quoted values, names) blanked, so that
    failures of one cause read alike."""
    line = re.sub(r"'[^']*'|\"[^\"]*\"|\(.*?\)", "…", line)
    line = re.sub(r"calico-trace \w+", "calico-trace CMD", line)
    return line[:80]


# ============================================================================ the scenarios


@dataclass(frozen=True)
class Scenario:
    """A bundled scenario and what commands can be asked about it."""

    path: Path
    pods: tuple[str, ...]
    nodes: tuple[str, ...]
    files: tuple[str, ...]


@lru_cache(maxsize=None)
def scenarios() -> tuple[Scenario, ...]:
    from tracer.model.loader import load_cluster
    found = []
    for path in bundled.SCENARIOS:
        cluster = load_cluster([path])
        found.append(Scenario(path, tuple(sorted(cluster.pods)), tuple(sorted(cluster.nodes)),
                              tuple(sorted(f.name for f in path.glob("*.y*ml")))))
    return tuple(found)


@lru_cache(maxsize=None)
def rendered_node(index: int) -> tuple[str, str, str]:
    """(node, iptables-save text, ipset save text) of a scenario's first node."""
    from tracer.dataplane.ipsets import format_ipsets
    from tracer.dataplane.iptables_save import format_ruleset
    from tracer.model.loader import load_cluster
    from tracer.policy.felix import render_node
    scenario = scenarios()[index]
    node = scenario.nodes[0]
    ruleset = render_node(load_cluster([scenario.path]), node)
    return node, format_ruleset(ruleset), format_ipsets(ruleset.ipsets)


def command_for(scenario: Scenario, draw) -> list[str]:
    """A well-formed command about ``scenario`` (the input, not the arguments, is mutated)."""
    pods = scenario.pods or ("default/none",)
    which = draw(st.sampled_from(("matrix", "packet", "render", "conntrack")))
    src, dst = draw(st.sampled_from(pods)), draw(st.sampled_from(pods))
    if which == "matrix":
        namespace = src.split("/")[0]
        return ["matrix", "--port", "80", *draw(st.sampled_from((
            [], ["-o", "jsonl"], ["-o", "summary"], ["-o", "csv", "--from-namespace", namespace],
            ["-o", "json", "--to-selector", "has(app) || role == 'db'"])))]
    if which == "render":
        return ["render", "--node", scenario.nodes[0] if scenario.nodes else "node-1", "--ipsets"]
    if which == "conntrack":
        return ["conntrack", "--connect", f"{src},{dst},tcp/80"]
    if draw(st.integers(0, 3)) == 0:         # through a Service (the bundled ones are "web")
        dst = f"svc/{dst.split('/')[0]}/web"
    return ["packet", "--from", src, "--to", dst, "--port", "80"]


# ============================================================================ hostile values

CONTROL = "\x00\x01\x07\x08\x1b\r\n\t\x7f\u200b\u202e\ud7ff\ufeff"
UNICODE = "é漢字🙂\u0301\u00a0" + CONTROL


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=st.sampled_from(UNICODE + "abc-_./: "), max_size=20),
        st.sampled_from(["", " ", "300.1.1.1", "10.0.0.0/33", "::1", "1.2.3.4/24", "-1",
                         "0x10", "all()", "has(", "role == 'x", "*", "a" * 3000, "None", "~",
                         "yes", "1e400", "\\", "'", "{{", "${x}"]),
    )


def hostile_value() -> st.SearchStrategy[Any]:
    """A value of any type a YAML/JSON document can hold, biased to the awkward ones."""
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 2**63, -2**63, 2**200, 10**30]),
        st.integers(), st.sampled_from([0.5, -0.0, 1e308, float("inf")]),
        hostile_text())
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(hostile_text(), st.integers(), st.none(), st.booleans()),
                        inner, max_size=3)), max_leaves=6)


# ============================================================================ manifest mutation


def _paths(doc: Any) -> list[tuple]:
    """Every path (tuple of keys/indexes) into ``doc``, iteratively (documents can be deep)."""
    found: list[tuple] = []
    stack: list[tuple[tuple, Any]] = [((), doc)]
    while stack:
        path, value = stack.pop()
        found.append(path)
        if isinstance(value, dict):
            stack.extend((path + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((path + (i,), v) for i, v in enumerate(value))
    found.sort(key=repr)
    return found


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_document(draw, doc: Any) -> Any:
    """``doc`` with one to three structure-aware mutations at random places."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(("delete", "replace", "number", "text", "wrap", "rename",
                                   "empty", "duplicate")))
        if not path:
            doc = draw(hostile_value()) if op == "replace" else doc
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        value = parent[key]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(hostile_value())
        elif op == "number":
            parent[key] = draw(st.sampled_from([-1, 0, 65536, 2**32, 2**64, -2**40, 1.5, True]))
        elif op == "text":
            parent[key] = draw(hostile_text())
        elif op == "wrap":
            parent[key] = draw(st.sampled_from(([value], {"x": value}, str(value))))
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(hostile_text(), st.integers(), st.none()))] = parent.pop(key)
        elif op == "empty":
            parent[key] = draw(st.sampled_from(({}, [], "", None)))
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(value)
    return doc


def _dump_yaml(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False, width=1 << 20)


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


@st.composite
def mutated_file_text(draw, text: str) -> str | bytes:
    """Text-level damage to a whole manifest file."""
    op = draw(st.sampled_from(("truncate", "control", "binary", "alias", "bomb", "deep",
                               "tabs", "bom")))
    if op == "truncate":
        return text[:draw(st.integers(0, len(text)))]
    if op == "control":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from(list(CONTROL))) + text[at:]
    if op == "binary":
        return draw(st.binary(min_size=1, max_size=200))
    if op == "alias":
        return "anchors: &a {name: x}\n---\n" + text.replace("name:", "<<: *a\n  name:", 1)
    if op == "bomb":
        return ALIAS_BOMB
    if op == "deep":
        depth = draw(st.integers(100, 5000))
        return "[" * depth + "]" * depth
    if op == "tabs":
        return text.replace("  ", "\t", 3)
    return "\ufeff\ufeff" + text


@dataclass
class Case:
    """One run: the files to lay down in a fresh folder and the arguments (``{dir}``-relative)."""

    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    copy_from: Path | None = None
    removed: list[str] = field(default_factory=list)
    entry: str = "cli"

    def materialise(self, into: Path) -> list[str]:
        if self.copy_from is not None:
            shutil.copytree(self.copy_from, into, dirs_exist_ok=True)
        for name in self.removed:
            (into / name).unlink()
        for name, content in self.files.items():
            target = into / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8", errors="surrogatepass")
        return [arg.replace("{dir}", str(into)) for arg in self.argv]

    def describe(self) -> str:
        return " ".join(self.argv)


def execute(case: Case) -> Outcome:
    """Lay the case's files down in a temporary folder and run it there: relative paths a
    fuzzed argument names (--out, --cache, --write-pcap) land in that folder, not the tree."""
    with tempfile.TemporaryDirectory(prefix="ctfuzz-") as tmp, contextlib.chdir(tmp), \
            _environment(XDG_CACHE_HOME=tmp):
        argv = case.materialise(Path(tmp))
        entry = capture_entry if case.entry == "capture" else cli_entry
        return run(entry, argv)


@contextlib.contextmanager
def _environment(**values: str):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@st.composite
def manifest_cases(draw) -> Case:
    """A scenario with one of its files mutated, structurally or as text."""
    index = draw(st.integers(0, len(scenarios()) - 1))
    scenario = scenarios()[index]
    name = draw(st.sampled_from(scenario.files))
    text = (scenario.path / name).read_text()
    removed: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        content: str | bytes = draw(mutated_file_text(text))
    else:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        at = draw(st.integers(0, len(docs) - 1))
        docs[at] = draw(mutated_document(docs[at]))
        if draw(st.booleans()) and name != "scenario.yaml":
            docs = [{"apiVersion": "v1", "kind": "List", "items": docs}]
        content = _dump_yaml(docs)
        if draw(st.integers(0, 5)) == 0 and name != "scenario.yaml":
            try:        # the same damage, as JSON (one document: a List of them)
                content = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs},
                                     ensure_ascii=False)
                removed, name = [name], name.rsplit(".", 1)[0] + ".json"
            except ValueError:      # not expressible as JSON (a non-string key): keep YAML
                pass
    command = command_for(scenario, draw)
    return Case(command[:1] + ["-f", "{dir}"] + command[1:], files={name: content},
                copy_from=scenario.path, removed=removed)


# ============================================================================ dump mutation

DUMP_TOKENS = ("300.1.1.1", "10.0.0.1:99999", "1.2.3.4-1.2.3", "0x1ffffffff", "0x10/0xzz",
               "-1", "65536", "70000:80", "1:2:3", "", "cali-nowhere", "!", "--", "\"", "'",
               "10.0.0.0/40", "ACCEPT", "RETURN", "MARK", "--set-xmark", "--to-destination",
               "--to-source", "--dport", "-m", "--mark", "nonsense", "é", "\x00")


@st.composite
def mutated_dump(draw, text: str) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("delete", "duplicate", "token", "swap", "truncate",
                                   "chain", "loop")))
        if op == "delete":
            del lines[at]
        elif op == "duplicate":
            lines.insert(at, lines[at])
        elif op == "token":
            words = lines[at].split(" ")
            words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(DUMP_TOKENS))
            lines[at] = " ".join(words)
        elif op == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif op == "truncate":
            lines[at] = lines[at][:draw(st.integers(0, len(lines[at])))]
        elif op in ("chain", "loop"):
            lines = _jump_chain(lines, draw(st.integers(2, 3000)), loop=op == "loop")
    return "\n".join(lines) + "\n"


def _jump_chain(lines: list[str], length: int, *, loop: bool) -> list[str]:
    """A linear chain of ``length`` jumps entered first thing in filter FORWARD (a loop if
    ``loop``): deep enough to break anything that recurses per jump."""
    try:
        start = lines.index("*filter")
        commit = lines.index("COMMIT", start)
    except ValueError:
        return lines
    names = [f"fz-{i}" for i in range(length)]
    rules = [f"-A {a} -j {b}" for a, b in zip(names, names[1:])]
    if loop:
        rules.append(f"-A {names[-1]} -j {names[0]}")
    body = lines[start + 1:commit]
    first = next((i for i, line in enumerate(body) if line.startswith("-A FORWARD ")), len(body))
    body = [f":{name} - [0:0]" for name in names] + body[:first] + \
        [f"-A FORWARD -j {names[0]}"] + body[first:] + rules
    return lines[:start + 1] + body + lines[commit:]


@st.composite
def dump_cases(draw) -> Case:
    index = draw(st.integers(0, len(scenarios()) - 1))
    scenario = scenarios()[index]
    node, tables, sets = rendered_node(index)
    if draw(st.booleans()):
        tables = draw(mutated_dump(tables))
    else:
        sets = draw(mutated_dump(sets))
    pods = [p for p in scenario.pods] or ["default/none"]
    src, dst = draw(st.sampled_from(pods)), draw(st.sampled_from(pods))
    return Case(["packet", "-f", str(scenario.path), "--from", src, "--to", dst, "--port", "80",
                 "--iptables-save", f"{node}={{dir}}/tables", "--ipsets", f"{node}={{dir}}/sets"],
                files={"tables": tables, "sets": sets})


# ============================================================================ captures


@st.composite
def capture_cases(draw) -> Case:
    sources = sorted(CAPTURES.glob("*.pcap*"))
    data = draw(st.sampled_from(sources)).read_bytes()
    op = draw(st.sampled_from(("truncate", "flip", "splice", "random")))
    if op == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif op == "flip":
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 16))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    elif op == "splice":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=64)) + data[at:]
    else:
        data = draw(st.binary(max_size=512))
    return Case(["{dir}/capture.pcap"], files={"capture.pcap": data}, entry="capture")


# ============================================================================ CLI arguments


OPTION_VALUES = ("myns/frontend", "myns/backend", "svc/myns/none", "svc/x", "node-1", "0",
                 "-1", "65536", "tcp", "udp", "icmp", "10.0.0.1", "300.1.1.1", "x=y",
                 "/nonexistent/dir/out.pcap", "/proc/version", "/", "", "a,b,c", "a,b",
                 "myns/frontend,myns/backend,tcp/abc", "myns/frontend,myns/backend,tcp/99999",
                 "3.31", "v9", "nan", "1e9", "-f", "--help")


@st.composite
def argument_cases(draw) -> Case:
    """A well-formed command about a bundled scenario with one to four arguments damaged:
    a value replaced, an option of the command added with a random value, a word dropped."""
    import click
    from tracer.cli import cli
    scenario = draw(st.sampled_from(scenarios()))
    base = command_for(scenario, draw)
    argv = base[:1] + ["-f", str(scenario.path)] + base[1:]
    command = cli.get_command(click.Context(cli), argv[0])
    options = [opt for param in command.params for opt in getattr(param, "opts", ())]
    known = [*scenario.pods, *scenario.nodes, *(f"svc/{pod.split('/')[0]}/web:80"
                                                for pod in scenario.pods[:1])]
    values = st.one_of(st.sampled_from(OPTION_VALUES), st.sampled_from(known or ["x"]),
                       hostile_text())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("replace", "add", "drop")))
        at = draw(st.integers(1, len(argv) - 1)) if len(argv) > 1 else 0
        if op == "replace" and len(argv) > 1:
            argv[at] = draw(values)
        elif op == "drop" and len(argv) > 1:
            del argv[at]
        else:
            argv += [draw(st.sampled_from(options + ["--bogus", "-x"]))] + \
                ([draw(values)] if draw(st.integers(0, 4)) else [])
    return Case([a.replace("\x00", "") for a in argv])


def any_case() -> st.SearchStrategy[Case]:
    return st.one_of(manifest_cases(), dump_cases(), capture_cases(), argument_cases())
