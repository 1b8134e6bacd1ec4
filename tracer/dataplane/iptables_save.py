"""``iptables-save`` text <-> :class:`~tracer.dataplane.ir.Ruleset`.

The parser reads what a real node prints (felix, kube-proxy, Docker chains), what felix feeds
``iptables-restore`` (``--jump``, ``--set-mark``, ``--in-interface``) and the rule text of the
kernel's trace (``-4 -t filter -A FORWARD ...``). The writer prints rules the way
``iptables-save`` (1.8.x, checked against the nf_tables backend) prints them back: ``-s -d -i
-o -p`` first, then the match modules in order, then the target; ``/32`` always written;
``--set-mark`` as ``--set-xmark``; ``--dport`` inside an explicit ``-m tcp``; defaults dropped
(``--log-level 4``, ``--limit-burst 5``). Parsing normalises to that same form, so parsing a
fixture and parsing the kernel's dump of it give equal rules.

This module only tokenizes, dispatches and orders: what each match module and target means
(its options, its IR, its spelling) is declared once in :mod:`tracer.dataplane.codecs`.

Input forms a node's operator holds (``parse_ruleset``): ``iptables-save`` with or without
``-c`` counters, ``iptables -S`` / ``--list-rules`` (``-P``/``-N``/``-A`` lines, one table,
no headers), the iptables-nft warning comments, CRLF line ends, and fragments (``grep cali``):
built-in chains need no declaration, and with ``partial=True`` a chain that is used but absent
becomes an empty placeholder the interpreter flags when a trace reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tracer.dataplane.codecs import (COMMENT_CODEC, HEADER_BY_FLAG, L4_CODEC, MATCH_BY_MODULE,
                                     TARGET_BY_NAME, UNMODELLED_TARGETS, CodecError,
                                     match_codec, target_codec)
from tracer.dataplane.codecs.base import quote_word
from tracer.dataplane.codecs.header import HEADER_CODECS
from tracer.dataplane.codecs.l4 import ICMP_NAMES, PROTOCOL_MODULES, TCP_FLAGS
from tracer.dataplane.codecs.matches import ADDR_TYPES, CT_STATES, CT_STATUSES
from tracer.dataplane.codecs.targets import REJECT_WITH
from tracer.dataplane.ir import (BUILTIN_CHAINS, AddressMatch, Chain, Goto, InterfaceMatch,
                                 Jump, Match,
                                 ProtocolMatch, ProtocolModuleMatch, Rule, Ruleset, SetMatch,
                                 Table, Target)
from tracer.dataplane.interpreter import MAX_DEPTH as MAX_JUMP_DEPTH
from tracer.errors import InputError, quote, shorten

# Re-exported: the vocabularies other modules and tests read.
__all__ = ["ADDR_TYPES", "CT_STATES", "CT_STATUSES", "ICMP_NAMES", "REJECT_WITH", "TCP_FLAGS",
           "format_rule", "format_ruleset", "merge_rulesets", "normalise_rule", "parse_rule",
           "parse_ruleset", "quote_word", "split_words", "with_gap_warnings"]

_RANK = {codec.kind: codec.rank for codec in HEADER_CODECS}
_STRUCTURAL = {"-m": "match", "--match": "match", "-j": "jump", "--jump": "jump",
               "-g": "goto", "--goto": "goto", "-c": "counters", "--set-counters": "counters",
               "-f": "fragment", "--fragment": "fragment"}
_TOP_LEVEL = {**{flag: "header" for flag in HEADER_BY_FLAG}, **_STRUCTURAL}


# ----------------------------------------------------------------------------- tokenizing


def split_words(line: str) -> list[str]:
    """Split a rule line the way iptables-restore does: whitespace separates, double quotes
    group, and inside quotes a backslash escapes the next character."""
    words: list[str] = []
    current: list[str] = []
    in_word = quoted = escaped = False
    for ch in line:
        if quoted:
            if escaped:
                current.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted = in_word = True
        elif ch in " \t\r\n":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if quoted:
        raise ValueError("unterminated quote")
    if in_word:
        words.append("".join(current))
    return words


# ----------------------------------------------------------------------------- rule parsing


@dataclass
class _Cursor:
    words: list[str]
    pos: int = 0

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.words[i] if i < len(self.words) else None

    def take(self, what: str) -> str:
        word = self.peek()
        if word is None:
            raise CodecError(f"missing {what}")
        self.pos += 1
        return word


@dataclass
class _Draft:
    header: list[Match] = field(default_factory=list)
    body: list[Match] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    comment_at: int | None = None
    target: Target | None = None
    protocol: int | None = None
    proto_modules: list[str] = field(default_factory=list)
    header_seen: set[str] = field(default_factory=set)


def parse_rule(line: str, *, filename: str = "<input>", lineno: int = 1) -> tuple[str, Rule]:
    """Parse one ``-A CHAIN ...`` line (also felix's long spellings and the kernel trace's
    ``-4 -t TABLE -A CHAIN ...``) into (chain, Rule)."""
    _table, chain, rule = _parse_line(line, filename, lineno)
    return chain, rule


def _parse_line(line: str, filename: str, lineno: int) -> tuple[str | None, str, Rule]:
    try:
        cur = _Cursor(split_words(line))
        table = None
        if cur.peek() and cur.peek().startswith("[") and cur.peek().endswith("]"):
            cur.pos += 1                       # "[packets:bytes]" from iptables-save -c
        while cur.peek() in ("-4", "-6", "-t", "--table"):
            word = cur.take("option")
            if word == "-6":
                raise CodecError("IPv6 rules are not supported")
            if word in ("-t", "--table"):
                table = cur.take("table name")
        command = cur.take("command")
        if command not in ("-A", "--append"):
            raise CodecError(f"unsupported command {command!r} (only -A)")
        chain = cur.take("chain name")
        return table, chain, _parse_body(cur)
    except (CodecError, ValueError) as err:
        raise InputError(f"line {lineno}: {err} in: {shorten(line.strip(), 120)}",
                         file=filename) from None


def _parse_body(cur: _Cursor) -> Rule:
    draft = _Draft()
    while cur.peek() is not None:
        negated = cur.peek() == "!"
        if negated:
            cur.pos += 1
        word = cur.take("option")
        header = HEADER_BY_FLAG.get(word)
        kind = _STRUCTURAL.get(word)
        if header is None and kind is None:
            if word.startswith("--") and draft.protocol in PROTOCOL_MODULES:
                # iptables loads the protocol's own module for an unknown option (-p tcp --dport).
                cur.pos -= 2 if negated else 1
                _implicit_module(cur, PROTOCOL_MODULES[draft.protocol], draft)
                continue
            raise CodecError(f"unsupported option {word!r}")
        if header is not None:
            if header.kind in draft.header_seen:
                raise CodecError(f"more than one {header.kind} option")
            draft.header_seen.add(header.kind)
            match = header.parse(cur.take(word), negated)
            if header.kind == "protocol":
                draft.protocol = None if negated else match.protocol if match else 0
            if match is not None:
                draft.header.append(match)
            continue
        if negated:
            raise CodecError(f"'!' cannot negate {word}")
        if kind == "match":
            _parse_module(cur, cur.take("match name"), draft)
        elif kind in ("jump", "goto"):
            if draft.target is not None:
                raise CodecError("more than one target")
            name = cur.take("target")
            draft.target = Goto(name) if kind == "goto" else _parse_target(name, cur)
        elif kind == "counters":
            cur.take("packet count"), cur.take("byte count")
        else:
            raise CodecError("unsupported option '-f'")
    return _finish_rule(draft)


def _implicit_module(cur: _Cursor, module: str, draft: _Draft) -> None:
    loaded = ProtocolModuleMatch(module)
    at = draft.body.index(loaded) if loaded in draft.body else None
    start = len(draft.body)
    _parse_module(cur, module, draft)
    if at is not None:
        # "-m tcp -p tcp --dport 80": the options extend the module already loaded.
        added = draft.body[start:]
        del draft.body[start:]
        draft.body[at:at + 1] = added
        draft.proto_modules.pop()


def _parse_module(cur: _Cursor, module: str, draft: _Draft) -> None:
    codec = MATCH_BY_MODULE.get(module)
    if codec is None:
        raise CodecError(f"unsupported match '-m {module}'")
    options: list[tuple[str, bool, list[str]]] = []
    while cur.peek() is not None:
        negated = cur.peek() == "!"
        word = cur.peek(1 if negated else 0)
        if word is None or not word.startswith("--") or word in _TOP_LEVEL:
            break
        option = codec.option(word[2:])
        if option is None:
            raise CodecError(f"unsupported option {word!r} for '-m {module}'")
        if negated and not option.invertible:
            raise CodecError(f"'!' cannot negate {word}")
        cur.pos += 2 if negated else 1
        options.append((option.name, negated,
                        [cur.take(f"argument of {word}") for _ in range(option.arity)]))
    if codec is COMMENT_CODEC:
        if draft.comment_at is None:
            draft.comment_at = len(draft.body)
        draft.comments.extend(codec.parse(module, options))
        return
    if module in PROTOCOL_MODULES.values():
        draft.proto_modules.append(module)
    draft.body.extend(codec.parse(module, options))


def _parse_target(name: str, cur: _Cursor) -> Target:
    codec = TARGET_BY_NAME.get(name)
    if codec is None:
        if name in UNMODELLED_TARGETS:
            raise CodecError(f"unsupported target '-j {name}'")
        return Jump(name)
    options: dict[str, str | None] = {}
    while cur.peek() is not None and cur.peek().startswith("--") and cur.peek() not in _TOP_LEVEL:
        word = cur.take("option")
        option = codec.option(word[2:])
        if option is None:
            raise CodecError(f"unsupported option {word!r} for '-j {name}'")
        options[option.name] = cur.take(f"argument of {word}") if option.arity else None
    return codec.parse(name, options)


# -- normal form ----------------------------------------------------------------------------


def _finish_rule(draft: _Draft) -> Rule:
    for module in draft.proto_modules:
        wanted = next(n for n, m in PROTOCOL_MODULES.items() if m == module)
        if draft.protocol != wanted:
            raise CodecError(f"'-m {module}' needs '-p {module}'")
    header = sorted(draft.header, key=_header_rank)
    body = _sort_l4_runs(draft.body)
    comment_at = len(header) + (draft.comment_at if draft.comment_at is not None else 0)
    return Rule(matches=tuple(header + body), target=draft.target,
                comments=tuple(draft.comments), comment_at=comment_at)


def _header_rank(match: Match) -> int:
    return _RANK["protocol" if isinstance(match, ProtocolMatch) else match.direction]


def _is_header(match: Match) -> bool:
    return any(codec.owns(match) for codec in HEADER_CODECS)


def _is_stored_as_nothing(match: Match) -> bool:
    """``-s 0.0.0.0/0`` and ``-p all`` match everything: iptables keeps no match for them, so
    they never come back (felix does write ``--source 0.0.0.0/0`` for ``nets: [0.0.0.0/0]``)."""
    if isinstance(match, AddressMatch):
        return match.cidr.prefix_len == 0 and not match.negated
    return isinstance(match, ProtocolMatch) and match.protocol == 0 and not match.negated


def _sort_l4_runs(body: list[Match]) -> list[Match]:
    """Adjacent single-port/TCP-flag options print as one block in ``L4_CODEC.rank`` order."""
    out: list[Match] = []
    run: list[Match] = []
    for match in body + [None]:  # type: ignore[list-item]
        if match is not None and L4_CODEC.rank(match) is not None:
            run.append(match)
            continue
        out.extend(sorted(run, key=L4_CODEC.rank))
        run = []
        if match is not None:
            out.append(match)
    return out


def normalise_rule(rule: Rule) -> Rule:
    """The rule as ``iptables-save`` would hand it back: header matches first in kernel order,
    tcp/udp options in print order, comments after the header. ``parse_rule(format_rule(r))``
    equals ``normalise_rule(r)``."""
    header = sorted((m for m in rule.matches if _is_header(m) and not _is_stored_as_nothing(m)),
                    key=_header_rank)
    body = _sort_l4_runs([m for m in rule.matches if not _is_header(m)])
    before = sum(1 for m in rule.matches[:rule.comment_at] if not _is_header(m))
    return replace(rule, matches=tuple(header + body), comment_at=len(header) + before)


# ----------------------------------------------------------------------------- rule writing


def format_rule(chain: str, rule: Rule) -> str:
    """``-A CHAIN <matches> -j TARGET`` in iptables-save's spelling."""
    listing = getattr(rule, "listing", None)
    if listing is not None:          # an nftables rule (tracer.nft) shows as nft lists it
        return f"rule {chain} {listing}"
    norm = normalise_rule(rule)
    protocol = next((m.protocol for m in norm.matches
                     if isinstance(m, ProtocolMatch) and not m.negated), None)
    parts = ["-A", chain]
    comments = [COMMENT_CODEC.format(c) for c in norm.comments]
    block: list[Match] = []

    def flush() -> None:
        if block:
            parts.append(L4_CODEC.format_block(block, protocol))
            block.clear()

    for index, match in enumerate(norm.matches):
        if index == norm.comment_at and comments:
            flush()
            parts.extend(comments)
            comments = []
        rank = L4_CODEC.rank(match)
        if rank is not None:
            if block and L4_CODEC.rank(block[-1]) >= rank:
                flush()
            block.append(match)
            continue
        flush()
        parts.append(match_codec(match).format(match))
    flush()
    parts.extend(comments)
    if norm.target is not None:
        parts.append(_format_target(norm.target))
    return " ".join(parts)


def _format_target(target: Target) -> str:
    if isinstance(target, Jump):
        return f"-j {target.chain}"
    if isinstance(target, Goto):
        return f"-g {target.chain}"
    return target_codec(target).format(target)


# ----------------------------------------------------------------------------- rulesets


@dataclass
class _TableDraft:
    table: Table
    lineno: int
    chains: dict[str, list[Rule]] = field(default_factory=dict)
    policies: dict[str, str | None] = field(default_factory=dict)
    rule_lines: dict[tuple[str, int], int] = field(default_factory=dict)
    undeclared: dict[str, int] = field(default_factory=dict)   # chain -> first rule's line


@dataclass
class _Reader:
    """One dump being read: its tables and what it had to assume."""

    filename: str
    partial: bool
    tables: dict[Table, _TableDraft] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def fail(self, lineno: int, problem: str, line: str) -> InputError:
        return InputError(f"line {lineno}: {problem} in: {shorten(line.strip(), 120)}",
                          file=self.filename)

    def open_table(self, name: str, lineno: int, line: str) -> _TableDraft:
        try:
            table = Table(name)
        except ValueError:
            raise self.fail(lineno, f"unsupported table {name!r}", line) from None
        if table in self.tables:
            raise self.fail(lineno, f"table {table.value} appears twice", line)
        draft = self.tables[table] = _TableDraft(table, lineno)
        return draft


def parse_ruleset(text: str, *, filename: str = "<input>", ipsets: dict | None = None,
                  table: str | None = None, partial: bool = False) -> Ruleset:
    """Parse a node's rules: ``iptables-save [-c]`` output (any subset of raw/mangle/nat/
    filter), or ``iptables [-t TABLE] -S`` output and ``grep`` fragments, which carry no table
    header (``table`` names it; ``iptables -S`` prints the filter table by default).

    ``partial``: the text is an excerpt. Chains that rules append to or jump to but that are
    never declared become empty placeholders (``Chain.placeholder``), each said in the
    ruleset's warnings; without it they are errors that suggest ``--partial``."""
    reader = _Reader(filename, partial)
    lines = text.lstrip("\ufeff").splitlines()
    first = next((ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")),
                 "")
    if first.startswith("*"):
        if table is not None:
            raise InputError(f"--table {table} given, but the dump has its own *table headers",
                             file=filename)
        _read_save(lines, reader)
    elif first:
        if table is None:
            table = Table.FILTER.value
            reader.warnings.append(f"{filename}: no *table header: read as the filter table "
                                   "(as iptables -S prints it); give --table to say otherwise")
        _read_list_rules(lines, reader, table)
    tables = {t: _finish_table(d, reader) for t, d in reader.tables.items()}
    ruleset = Ruleset(tables=tables, ipsets=dict(ipsets or {}))
    reader.warnings.extend(_missing_sets(ruleset, filename, ipsets is not None))
    return replace(ruleset, warnings=tuple(dict.fromkeys(reader.warnings)))


def _read_save(lines: list[str], reader: _Reader) -> None:
    current: _TableDraft | None = None
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("*"):
            if current is not None:
                raise reader.fail(lineno, "table started before COMMIT", line)
            current = reader.open_table(stripped[1:], lineno, line)
        elif current is None:
            raise reader.fail(lineno, "line outside a *table ... COMMIT block", line)
        elif stripped == "COMMIT":
            current = None
        elif stripped.startswith(":"):
            _declare_chain(current, stripped[1:].split(), lineno, line, reader)
        else:
            _append_rule(current, stripped, lineno, line, reader)
    if current is not None:
        raise InputError(f"line {current.lineno}: *{current.table.value} has no COMMIT",
                         file=reader.filename)


def _read_list_rules(lines: list[str], reader: _Reader, table: str) -> None:
    """``iptables -S``: ``-P CHAIN POLICY``, ``-N CHAIN``, ``-A CHAIN ...``; also the ``:CHAIN
    POLICY`` lines of a grep'd iptables-save."""
    draft: _TableDraft | None = None
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if draft is None:
            draft = reader.open_table(table, lineno, line)
        words = stripped.split()
        if stripped.startswith("*") or stripped == "COMMIT":
            raise reader.fail(lineno, "a *table header in the middle of iptables -S output", line)
        if words[0] in ("-P", "--policy"):
            if len(words) < 3:
                raise reader.fail(lineno, "-P needs a chain and a policy", line)
            _declare_chain(draft, words[1:3], lineno, line, reader)
        elif words[0] in ("-N", "--new-chain", "--new"):
            if len(words) != 2:
                raise reader.fail(lineno, "-N needs one chain name", line)
            _declare_chain(draft, [words[1], "-"], lineno, line, reader)
        elif stripped.startswith(":"):
            _declare_chain(draft, stripped[1:].split(), lineno, line, reader)
        else:
            _append_rule(draft, stripped, lineno, line, reader)


def _declare_chain(draft: _TableDraft, words: list[str], lineno: int, line: str,
                   reader: _Reader) -> None:
    if len(words) < 2:
        raise reader.fail(lineno, "chain line needs a name and a policy", line)
    name, policy = words[0], words[1]
    builtin = name in BUILTIN_CHAINS[draft.table]
    if name in draft.chains and name not in draft.undeclared:
        raise reader.fail(lineno, f"chain {name!r} declared twice", line)
    if builtin and policy not in ("ACCEPT", "DROP"):
        raise reader.fail(lineno, f"built-in chain {name} needs policy ACCEPT or DROP", line)
    if not builtin and policy != "-":
        raise reader.fail(lineno, f"user chain {name} cannot have a policy", line)
    if len(name) > 28:
        raise reader.fail(lineno, f"chain name {name!r} is longer than 28 characters", line)
    draft.chains.setdefault(name, [])
    draft.undeclared.pop(name, None)
    draft.policies[name] = policy if builtin else None


def _append_rule(draft: _TableDraft, stripped: str, lineno: int, line: str,
                 reader: _Reader) -> None:
    rule_table, chain, rule = _parse_line(stripped, reader.filename, lineno)
    if rule_table is not None and rule_table != draft.table.value:
        raise reader.fail(lineno, f"rule for table {rule_table} inside *{draft.table.value}",
                          line)
    if chain not in draft.chains:
        if chain not in BUILTIN_CHAINS[draft.table] and not reader.partial:
            raise reader.fail(lineno, f"chain {chain!r} was not declared (an excerpt? "
                              "--partial reads it as declared)", line)
        draft.chains[chain] = []
        draft.undeclared[chain] = lineno
    draft.chains[chain].append(rule)
    draft.rule_lines[(chain, len(draft.chains[chain]))] = lineno


def _finish_table(draft: _TableDraft, reader: _Reader) -> dict[str, Chain]:
    """What iptables-restore refuses at COMMIT (jumps to missing or built-in chains, loops),
    and what an excerpt leaves out, declared with a warning."""
    table = draft.table.value
    for name, lineno in draft.undeclared.items():
        if name in BUILTIN_CHAINS[draft.table]:
            draft.policies[name] = "ACCEPT"
            reader.warnings.append(f"{reader.filename}: built-in chain {table} {name} has no "
                                   "policy line: policy ACCEPT assumed")
        else:
            draft.policies[name] = None
            reader.warnings.append(f"{reader.filename}: chain {table} {name} is appended to "
                                   f"(line {lineno}) but never declared: declared by --partial")
    placeholders: set[str] = set()
    edges: dict[str, list[tuple[str, int]]] = {name: [] for name in draft.chains}
    for name, rules in draft.chains.items():
        for number, rule in enumerate(rules, 1):
            if not isinstance(rule.target, (Jump, Goto)):
                continue
            lineno = draft.rule_lines[(name, number)]
            target = rule.target.chain
            if target in BUILTIN_CHAINS[draft.table]:
                raise InputError(f"line {lineno}: {name} rule {number} jumps to built-in chain "
                                 f"{target}", file=reader.filename)
            if target not in draft.chains and target not in placeholders:
                if not reader.partial:
                    raise InputError(
                        f"line {lineno}: {name} rule {number} jumps to undefined chain "
                        f"{target!r} in table {table} (an excerpt? --partial assumes absent "
                        "chains are empty)", file=reader.filename)
                placeholders.add(target)
                reader.warnings.append(
                    f"{reader.filename}: chain {table} {target} is not in the dump (line "
                    f"{lineno} jumps to it): assumed empty, so traces reaching it return")
            edges[name].append((target, lineno))
    _check_loops(edges, draft.table, reader.filename)
    chains = {name: Chain(name, tuple(rules), draft.policies.get(name))  # type: ignore[arg-type]
              for name, rules in draft.chains.items()}
    chains.update({name: Chain(name, (), None, placeholder=True) for name in sorted(placeholders)})
    return chains


def _check_loops(edges: dict[str, list[tuple[str, int]]], table: Table, filename: str) -> None:
    """A jump cycle, found by an iterative depth-first walk (a recursive one would overflow
    Python's stack on a long chain of chains)."""
    state: dict[str, int] = {}                 # 1 = on the DFS path, 2 = done
    for root in edges:
        if root in state:
            continue
        path = [root]
        stack = [iter(edges[root])]
        state[root] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            target, lineno = step
            if state.get(target) == 1:
                cycle = " -> ".join(path[path.index(target):] + [target])
                raise InputError(f"line {lineno}: chain loop in table {table.value}: "
                                 f"{shorten(cycle, 200)}", file=filename)
            if state.get(target) is None and target in edges:
                state[target] = 1
                path.append(target)
                stack.append(iter(edges[target]))
    _check_depth(edges, table, filename)


def _check_depth(edges: dict[str, list[tuple[str, int]]], table: Table, filename: str) -> None:
    """Refuse jumps nested deeper than the interpreter's stack (loops are already refused, so
    depths follow in one pass over the chains in reverse topological order)."""
    order: list[str] = []
    seen: set[str] = set()
    for root in edges:
        stack = [(root, False)]
        while stack:
            chain, done = stack.pop()
            if done:
                order.append(chain)
            elif chain not in seen:
                seen.add(chain)
                stack.append((chain, True))
                stack.extend((target, False) for target, _ in edges[chain] if target in edges)
    depth: dict[str, int] = {}
    for chain in order:                        # callees before callers
        depth[chain] = 1 + max((depth[t] for t, _ in edges[chain] if t in depth), default=0)
        if depth[chain] > MAX_JUMP_DEPTH:
            lineno = edges[chain][0][1]
            raise InputError(f"line {lineno}: jumps from chain {quote(chain)} nest deeper than "
                             f"{MAX_JUMP_DEPTH} chains in table {table.value}", file=filename)


def _missing_sets(ruleset: Ruleset, filename: str, given: bool) -> list[str]:
    """Sets the rules test but the given sets lack: each treated as empty, and said so."""
    used = sorted({m.set_name for chains in ruleset.tables.values() for chain in chains.values()
                   for rule in chain.rules for m in rule.matches
                   if type(m).__name__ == "SetMatch"} - set(ruleset.ipsets))
    if not used:
        return []
    if not given:
        return [f"{filename}: no ipsets given: the {len(used)} sets its rules test "
                f"({', '.join(used[:3])}{', ...' if len(used) > 3 else ''}) are treated as "
                "empty"]
    return [f"{filename}: ipset {name} is tested by rules but not in the given sets: treated "
            "as empty" for name in used]


def merge_rulesets(parts: list[Ruleset], *, filename: str = "<input>") -> Ruleset:
    """Several dumps of one node (``iptables -t nat -S`` and ``iptables -t filter -S``) as one
    ruleset; a table may come from one part only."""
    tables: dict[Table, dict[str, Chain]] = {}
    ipsets: dict = {}
    warnings: list[str] = []
    for part in parts:
        for table, chains in part.tables.items():
            if table in tables:
                raise InputError(f"table {table.value} is given twice", file=filename)
            tables[table] = chains
        ipsets.update(part.ipsets)
        warnings.extend(part.warnings)
    return Ruleset(tables=tables, ipsets=ipsets, warnings=tuple(dict.fromkeys(warnings)))


def with_gap_warnings(ruleset: Ruleset, source: str,
                      interfaces: frozenset[str] | None = None) -> Ruleset:
    """``ruleset`` with warnings for what a dump leaves out that a trace may need: whole
    tables (their hooks then pass packets untouched), and interfaces rules name that the
    node's routes and addresses do not explain (those rules can never match)."""
    said = [f"{source}: table {table.value} is not in the dump: its hooks pass packets "
            "untouched" for table in Table if table not in ruleset.tables]
    if interfaces is not None:
        named = sorted({m.name for chains in ruleset.tables.values()
                        for chain in chains.values() for rule in chain.rules
                        for m in rule.matches if isinstance(m, InterfaceMatch)
                        and not m.name.endswith("+")} - interfaces)
        said += [f"{source}: interface {name} is named by rules but no route or address of "
                 "the node explains it: those rules never match" for name in named]
    if not said:
        return ruleset
    return replace(ruleset, warnings=tuple(dict.fromkeys(ruleset.warnings + tuple(said))))


def format_ruleset(ruleset: Ruleset) -> str:
    """iptables-save text for ``iptables-restore``: tables raw, mangle, nat, filter."""
    lines: list[str] = []
    for table in (Table.RAW, Table.MANGLE, Table.NAT, Table.FILTER):
        chains = ruleset.tables.get(table)
        if chains is None:
            continue
        builtins = [c for c in BUILTIN_CHAINS[table] if c in chains]
        order = builtins + [name for name in chains if name not in BUILTIN_CHAINS[table]]
        lines.append(f"*{table.value}")
        for name in order:
            lines.append(f":{name} {chains[name].policy or 'ACCEPT'} [0:0]" if name in builtins
                         else f":{name} - [0:0]")
        for name in order:
            lines.extend(format_rule(name, rule) for rule in chains[name].rules)
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
