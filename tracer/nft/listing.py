"""Read felix's table back from ``nft list ruleset`` (plain or ``-a``): the kernel's listing of
``table ip calico``, as a real node's ``nft -a list ruleset`` shows it.

The listing is the kernel's normal form, not what felix wrote: ``meta mark set meta mark |
0x00010000`` for ``mark or 0x10000``, ``tcp dport 6379`` with its ``meta l4proto tcp`` folded
in, ``icmp type echo-reply``, quoted interface names, ``counter packets N bytes M``. Each
expression felix's backend writes is read back into the same typed matches and targets the
renderer produces (so the walker runs a dump exactly as a rendered table); anything else is
refused with the chain and handle that holds it. Only ``table ip calico`` is read; other
tables (kube-proxy's, iptables-nft's) are reported as not modelled.
"""

from __future__ import annotations

import re
import shlex

from tracer.dataplane import ir
from tracer.errors import InputError
from tracer.nft.model import BaseChain, NftChain, NftMap, NftRule, NftTable, VmapMatch

_ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4,
               "redirect": 5, "echo-request": 8, "router-advertisement": 9,
               "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
               "timestamp-request": 13, "timestamp-reply": 14}
_L4 = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "ipencap": 4, "udplite": 136}
_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
_COMMENT = re.compile(r'\s*comment "((?:[^"\\]|\\.)*)"')


def parse_listing(text: str, filename: str) -> tuple[NftTable, dict[tuple[str, int], int],
                                                       tuple[str, ...]]:
    """``table ip calico`` of a listing, the handle of each rule (chain, index) when the
    listing has them (``-a``), and what was left out."""
    lines = text.splitlines()
    tables, skipped = _split_tables(lines, filename)
    if "calico" not in tables:
        raise InputError("no 'table ip calico' in the listing (is felix in nftables mode?)",
                         file=filename)
    return (*_table(tables["calico"], filename), tuple(skipped))


def _split_tables(lines: list[str], filename: str):
    tables: dict[str, list[str]] = {}
    skipped, current, depth = [], None, 0
    for line in lines:
        stripped = _HANDLE.sub("", line).strip()
        if depth == 0:
            if not stripped:
                continue
            found = re.match(r"table (\S+) (\S+) \{$", stripped)
            if found is None:
                raise InputError(f"expected 'table FAMILY NAME {{', got {stripped[:60]!r}",
                                 file=filename)
            family, name = found.groups()
            if family == "ip" and name == "calico":
                current = name
                tables[name] = []
            else:
                current = None
                skipped.append(f"table {family} {name} is not modelled (only felix's "
                               "'table ip calico' is read)")
            depth = 1
            continue
        depth += stripped.count("{") - stripped.count("}")
        if current is not None and depth > 0:
            tables[current].append(line)
    return tables, skipped


def _table(lines: list[str], filename: str):
    chains: dict[str, NftChain] = {}
    sets, maps, handles = {}, {}, {}
    i = 0
    while i < len(lines):
        head = _HANDLE.sub("", lines[i]).strip()
        i += 1
        if not head:
            continue
        kind, _, rest = head.partition(" ")
        name = rest.rstrip("{ ").strip()
        body: list[str] = []
        depth = 1
        while i < len(lines) and depth > 0:
            line = lines[i]
            i += 1
            depth += line.count("{") - line.count("}")
            if depth > 0:
                body.append(line)
        if kind == "chain":
            chain, chain_handles = _chain(name, body, filename)
            chains[name] = chain
            handles.update({(name, index): h for index, h in chain_handles.items()})
        elif kind == "set":
            sets[name] = _set(name, body, filename)
        elif kind == "map":
            maps[name] = _map(name, body, filename)
        else:
            raise InputError(f"table ip calico: unsupported object {kind!r}", file=filename)
    return NftTable("ip", "calico", chains, sets, maps), handles


def _fields(body: list[str]) -> dict[str, str]:
    """``type …``, ``flags …``, ``elements = { … }`` (over several lines) of a set or map."""
    joined = " ".join(_HANDLE.sub("", line).strip() for line in body)
    out = {}
    for key in ("type", "flags"):
        found = re.search(rf"\b{key} ([^;]+?)(?=\s+(?:flags|elements|policy|size|auto-merge)\b|;|$)",
                          joined)
        if found:
            out[key] = found.group(1).strip()
    found = re.search(r"elements = \{(.*)\}", joined)
    if found:
        out["elements"] = found.group(1)
    return out


def _set(name: str, body: list[str], filename: str):
    from tracer.nft.model import NftSet

    fields = _fields(body)
    kind = fields.get("type", "")
    flags = tuple(f.strip() for f in fields.get("flags", "").split(",") if f.strip())
    elements = tuple(e.strip() for e in fields.get("elements", "").split(",") if e.strip())
    if kind == "ipv4_addr":
        ipset_type = "hash:net" if "interval" in flags else "hash:ip"
        members = elements
    elif kind == "ipv4_addr . inet_proto . inet_service":
        ipset_type = "hash:ip,port"
        members = tuple(_ip_port_member(e) for e in elements)
    elif kind == "inet_service":
        ipset_type, members = "bitmap:port", elements
    else:
        raise InputError(f"set {name}: type {kind!r} is not one felix writes", file=filename)
    return NftSet(name, kind, flags, elements, ir.IpSet(name, ipset_type, members))


def _ip_port_member(element: str) -> str:
    addr, proto, port = (part.strip() for part in element.split(" . "))
    return f"{addr},{proto}:{port}"


def _map(name: str, body: list[str], filename: str) -> NftMap:
    fields = _fields(body)
    if fields.get("type") != "ifname : verdict":
        raise InputError(f"map {name}: type {fields.get('type')!r} is not felix's "
                         "'ifname : verdict'", file=filename)
    elements = []
    for item in fields.get("elements", "").split(","):
        if not item.strip():
            continue
        key, _, verdict = item.partition(":")
        words = verdict.split()
        target = _verdict_target(words, name, filename)
        elements.append((key.strip().strip('"'), target))
    return NftMap(name, "ifname : verdict", tuple(elements))


def _verdict_target(words: list[str], where: str, filename: str) -> ir.Target:
    if words[:1] == ["goto"] and len(words) == 2:
        return ir.Goto(words[1])
    if words[:1] == ["jump"] and len(words) == 2:
        return ir.Jump(words[1])
    if words in (["accept"], ["drop"], ["return"]):
        return ir.Verdict(words[0].upper())       # type: ignore[arg-type]
    raise InputError(f"{where}: unsupported verdict {' '.join(words)!r}", file=filename)


def _chain(name: str, body: list[str], filename: str) -> tuple[NftChain, dict[int, int]]:
    base = None
    rules, handles = [], {}
    for line in body:
        text = line.strip()
        if not text:
            continue
        if text.startswith("type "):
            found = re.match(r"type (\S+) hook (\S+) priority (.+?);(?: policy (\S+);)?", text)
            if found is None:
                raise InputError(f"chain {name}: unreadable base chain line {text!r}",
                                 file=filename)
            kind, hook, priority, policy = found.groups()
            base = BaseChain(kind, hook, priority.replace(" ", ""),  # type: ignore[arg-type]
                             (policy or "accept"))                   # type: ignore[arg-type]
            continue
        handle_found = _HANDLE.search(text)
        handle = int(handle_found.group(1)) if handle_found else None
        text = _HANDLE.sub("", text)
        comment_found = _COMMENT.search(text)
        comment = comment_found.group(1) if comment_found else None
        body_text = _COMMENT.sub("", text).strip()
        where = f"chain {name}" + (f" handle {handle}" if handle is not None else "")
        matches, target = _rule(body_text, where, filename)
        if handle is not None:
            handles[len(rules)] = handle
        rules.append(NftRule(matches, target, body_text, comment,
                             provenance=None, origin=None))
    return NftChain(name, tuple(rules), base), handles


def _rule(text: str, where: str, filename: str):
    words = _words(text)
    matches: list = []
    target: ir.Target | None = None
    i = 0

    def take(n: int = 1) -> list[str]:
        nonlocal i
        got = words[i:i + n]
        i += n
        return got

    def negation() -> bool:
        if i < len(words) and words[i] == "!=":
            take()
            return True
        return False

    def unsupported() -> InputError:
        return InputError(f"{where}: unsupported nft expression at "
                          f"{' '.join(words[i:i + 6])!r}", file=filename)

    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w == "counter":
            take()
            while i < len(words) and words[i] in ("packets", "bytes"):
                take(2)
        elif w == "continue":
            take()
        elif w == "meta" and nxt == "mark" and words[i + 2:i + 3] == ["set"]:
            take(3)
            target = _mark_set(words, i, where, filename)
            i = len(words)
        elif w == "meta" and nxt == "mark" and words[i + 2:i + 3] == ["&"]:
            take(3)
            mask = int(take()[0], 16)
            negated = take()[0] == "!="
            matches.append(ir.MarkMatch(int(take()[0], 16), mask, negated))
        elif w == "meta" and nxt == "l4proto":
            take(2)
            negated = negation()
            value = take()[0]
            matches.append(ir.ProtocolMatch(_L4.get(value, int(value) if value.isdigit()
                                                    else -1), negated))
            if matches[-1].protocol == -1:
                raise unsupported()
        elif w == "ct" and nxt in ("state", "status"):
            take(2)
            negated = negation()
            values = {v.upper() for v in take()[0].split(",")}
            matches.append(ir.ConntrackMatch(frozenset(values), negated))
        elif w in ("iifname", "oifname"):
            take()
            direction = "in" if w == "iifname" else "out"
            if i < len(words) and words[i] == "vmap":
                take()
                matches.append(VmapMatch(direction, take()[0].lstrip("@")))
                continue
            negated = negation()
            name = take()[0].strip('"')
            name = name[:-1] + "+" if name.endswith("*") else name
            matches.append(ir.InterfaceMatch(direction, name, negated))
        elif w == "ip" and nxt in ("saddr", "daddr"):
            take(2)
            side = "src" if nxt == "saddr" else "dst"
            if words[i:i + 4] in (["."] + ["meta", "l4proto", "."],):
                take(4)
                take(2)                           # "tcp dport" / "th dport"
                negated = negation()
                matches.append(ir.SetMatch(take()[0].lstrip("@"), (side, side), negated))
                continue
            negated = negation()
            value = take()[0]
            if value.startswith("@"):
                matches.append(ir.SetMatch(value[1:], (side,), negated))
            else:
                matches.append(ir.AddressMatch(side, ir.Cidr.parse(value), negated))
        elif w in ("tcp", "udp", "sctp") and nxt in ("sport", "dport"):
            take(2)
            negated = negation()
            ranges = _ports(take_group(words, i))
            i = _after_group(words, i)
            if not any(isinstance(m, ir.ProtocolMatch) and m.protocol == _L4[w]
                       for m in matches):
                matches.append(ir.ProtocolMatch(_L4[w]))   # the listing folds it in
            matches.append(ir.PortMatch("src" if nxt == "sport" else "dst", ranges, negated,
                                        multiport=len(ranges) > 1))
        elif w == "icmp" and nxt == "type":
            take(2)
            negated = negation()
            value = take()[0]
            code = None
            if words[i:i + 1] == ["code"]:
                take()
                negation()
                code = int(take()[0])
            if not any(isinstance(m, ir.ProtocolMatch) and m.protocol == 1 for m in matches):
                matches.append(ir.ProtocolMatch(1))
            matches.append(ir.IcmpMatch(_ICMP_TYPES.get(value, int(value) if value.isdigit()
                                                        else None), code, negated))
        elif w == "fib":
            take()
            key = []
            while i < len(words) and words[i] != "type" and not (
                    words[i] == "oif" and words[i + 1:i + 2] != ["type"]):
                key.append(take()[0])
            if words[i] == "oif":                 # RPFCheckFailed: fib saddr . mark . iif oif 0
                take()
                take()
                matches.append(ir.RpfilterMatch(invert=True, validmark=True))
                continue
            take()
            negated = negation()
            kind = take()[0].upper()
            if key == ["daddr"]:
                matches.append(ir.AddrTypeMatch(dst_type=kind, dst_negated=negated))
            else:
                matches.append(ir.AddrTypeMatch(src_type=kind, src_negated=negated,
                                                limit_iface="out" if "oif" in key else None))
        elif w == "limit":
            take(2)
            rate = take()[0]
            burst = None
            if words[i:i + 1] == ["burst"]:
                take()
                burst = int(take()[0])
                take()
            matches.append(ir.LimitMatch(rate, burst))
        elif w in ("accept", "drop", "return"):
            take()
            target = ir.Verdict(w.upper())        # type: ignore[arg-type]
        elif w in ("jump", "goto"):
            take()
            target = (ir.Jump if w == "jump" else ir.Goto)(take()[0])
        elif w == "reject":
            take()
            target = ir.Reject("tcp-reset" if words[i:i + 3] == ["with", "tcp", "reset"]
                               else "icmp-port-unreachable")
            i = len(words)
        elif w == "notrack":
            take()
            target = ir.NoTrack()
        elif w == "masquerade":
            take()
            ports = None
            if words[i:i + 1] == ["to"]:
                take()
                lo, _, hi = take()[0].lstrip(":").partition("-")
                ports = (int(lo), int(hi or lo))
            fully = words[i:i + 1] == ["fully-random"]
            i = len(words)
            target = ir.Masquerade(to_ports=ports, random_fully=fully)
        elif w in ("snat", "dnat"):
            take(2)
            address = take()[0]
            fully = "fully-random" in words[i:]
            i = len(words)
            target = ir.Snat(address, random_fully=fully) if w == "snat" else ir.Dnat(address)
        elif w == "log":
            take()
            options = dict(zip(words[i::2], words[i + 1::2]))
            i = len(words)
            prefix = options.get("prefix", "")
            target = (ir.Nflog(int(options["group"]), prefix,
                               int(options["snaplen"]) if "snaplen" in options else None)
                      if "group" in options else ir.Log(prefix=prefix, level=5))
        else:
            raise unsupported()
    return tuple(matches), target


def _mark_set(words: list[str], i: int, where: str, filename: str) -> ir.SetMark:
    """``meta mark set meta mark & A [| B | ^ B]`` / ``… | B`` as ``(mark & ~mask) ^ value``."""
    rest = words[i:]
    if rest[:2] != ["meta", "mark"]:
        if len(rest) == 1:
            return ir.SetMark(int(rest[0], 16), 0xFFFFFFFF)
        raise InputError(f"{where}: unsupported mark statement {' '.join(rest)!r}",
                         file=filename)
    keep, value = 0xFFFFFFFF, 0
    ops = rest[2:]
    for op, operand in zip(ops[0::2], ops[1::2]):
        number = int(operand, 16)
        if op == "&":
            keep &= number
        elif op in ("|", "^"):
            value |= number
            keep &= ~number & 0xFFFFFFFF
        else:
            raise InputError(f"{where}: unsupported mark operator {op!r}", file=filename)
    return ir.SetMark(value, ~keep & 0xFFFFFFFF)


def _words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=False)
    lexer.whitespace_split = True
    return list(lexer)


def take_group(words: list[str], i: int) -> list[str]:
    """A value or a ``{ a, b }`` group starting at ``i``."""
    if words[i] != "{":
        return [words[i]]
    end = words.index("}", i)
    return [w.rstrip(",") for w in words[i + 1:end] if w.rstrip(",")]


def _after_group(words: list[str], i: int) -> int:
    return words.index("}", i) + 1 if words[i] == "{" else i + 1


def _ports(values: list[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for value in values:
        lo, _, hi = value.partition("-")
        out.append((int(lo), int(hi or lo)))
    return tuple(out)
