"""The numba kernels: one table's traversal for a batch of packets.

:func:`walk_batch` mirrors :func:`tracer.dataplane.interpreter.run_hook` step for step (the
jump stack, ``-g``'s missing push, implicit returns, the policy, the step and depth limits), so
with tracing on it records the same events the reference does. Everything the reference asks
its environment is answered from arrays the node compiled: ipsets (sorted keys per
prefix-length group, binary search), local addresses, interface addresses and pattern hits,
routes for ``rpfilter``; ``-m statistic`` draws come in per run as ``stat_fire``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tracer.engine.decision import first_match
from tracer.engine.codes import (
    CONNMARK_RESTORE, CONNMARK_SAVE, CT_INVALID, CT_UNTRACKED, E_ACCEPT, E_CONTINUE, E_DNAT,
    E_DROP, E_GOTO, E_JUMP, E_MASQUERADE, E_NOTRACK, E_RETURN, E_SNAT, ERR_DEPTH, ERR_NONE,
    ERR_STEPS, ERR_UNDEFINED_CHAIN, K_POLICY, K_RETURN, K_RULE, M_ADDR, M_ADDRTYPE,
    M_CONNMARK, M_CONNTRACK, M_ICMP, M_IFACE, M_MARK, M_PORT, M_PROTO, M_PROTOMOD, M_RPF,
    M_SET, M_STATISTIC, M_TCPFLAGS, M_TRUE, NAT_STATUS_BITS, T_CONNMARK, T_SETMARK,
)

MAX_DEPTH = 64             # tracer.dataplane.interpreter's limits, checked equal by a test
MAX_STEPS = 1_000_000
M32 = 0xFFFFFFFF
ICMP = 1

# ------------------------------------------------------------------ environment answers


@njit(cache=True, inline="always")
def _prefix_mask(width):
    if width <= 0:
        return 0
    return (M32 << (32 - width)) & M32


@njit(cache=True, inline="always")
def _sorted_contains(values, x):
    lo = 0
    hi = values.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < values.shape[0] and values[lo] == x


@njit(cache=True, inline="always")
def _set_port(proto, port, icmp_type, icmp_code):
    """ip_set_get_ip4_port: L4 port, ICMP type<<8|code, else 0 (an absent field is 0)."""
    if proto == 6 or proto == 17 or proto == 132 or proto == 136:
        return port if port > 0 else 0
    if proto == ICMP:
        t = icmp_type if icmp_type > 0 else 0
        c = icmp_code if icmp_code > 0 else 0
        return (t << 8) | c
    return 0


@njit(cache=True, inline="always")
def _addr_type(addr, iface, iface_addr, local_addrs):
    """tracer.dataplane.node.address_type, as bits (LOCAL 1, BROADCAST 2, MULTICAST 4,
    UNICAST 8); with an interface, LOCAL only for that device's own address."""
    if iface >= 0:
        local = iface < iface_addr.shape[0] and iface_addr[iface] == addr
    else:
        local = _sorted_contains(local_addrs, addr)
    if local:
        return 1
    if addr == M32:
        return 2
    if (addr >> 28) == 0xE:
        return 4
    return 8


@njit(cache=True, inline="always")
def route_lookup(routes, local_addrs, wg_mark, addr, mark):
    """RoutingTable.lookup: -2 local, -1 none, else the route row (policy rules: the
    WireGuard table first unless the mark carries its bit; ``throw`` falls through)."""
    if _sorted_contains(local_addrs, addr):
        return -2
    for attempt in range(2):
        if attempt == 0:
            if wg_mark < 0 or (mark & wg_mark) != 0:
                continue
            table = 1
        else:
            table = 254
        best = -1
        best_len = -1
        for r in range(routes.shape[0]):
            if routes[r, 0] == table and (addr & routes[r, 2]) == routes[r, 1]:
                if best < 0 or routes[r, 3] > best_len:
                    best = r
                    best_len = routes[r, 3]
        if best >= 0 and routes[best, 4] != 3:
            return best
    return -1


@njit(cache=True, inline="always")
def _rpf_ok(routes, local_addrs, wg_mark, src, iif, mark, validmark, loose):
    r = route_lookup(routes, local_addrs, wg_mark, src, mark if validmark else 0)
    if r < 0:
        return False                   # no route, or RTN_LOCAL (no --accept-local)
    if routes[r, 4] == 1:
        return False                   # blackhole
    return loose != 0 or routes[r, 5] == iif


# ------------------------------------------------------------------ matches


@njit(cache=True)
def environment_match(matches, j, iface_addr, local_addrs, routes, wg_mark, src, dst, iif, oif,
                      mark):
    """The rare matches that ask the node's environment (addrtype, rpfilter), kept out of the
    hot loop: inlined there they cost every other match a third of its speed."""
    kind = matches[j, 0]
    neg = matches[j, 1] != 0
    a = matches[j, 2]
    b = matches[j, 3]
    if kind == M_ADDRTYPE:
        limit = matches[j, 4]
        iface = iif if limit == 1 else (oif if limit == 2 else -1)
        has = matches[j, 7]
        ok = True
        if has & 1:
            t = _addr_type(src, iface, iface_addr, local_addrs)
            if ((t & a) != 0) == (matches[j, 5] != 0):
                ok = False
        if ok and has & 2:
            t = _addr_type(dst, iface, iface_addr, local_addrs)
            if ((t & b) != 0) == (matches[j, 6] != 0):
                ok = False
    elif kind == M_RPF:
        ok = _rpf_ok(routes, local_addrs, wg_mark, src, iif, mark, a, b) != neg
    else:
        ok = False
    return ok


# ------------------------------------------------------------------ the walk


@njit(cache=True)
def walk_batch(chains, rules, matches, ranges, cls_of, cls_meta, cls_bounds, cls_bits,
               cls_wild, start, sets, groups, keys, iface_bits, iface_addr, local_addrs, routes,
               wg_mark, stat_fire, srcs, dsts, protos, sports, dports, icmp_types, icmp_codes,
               tcp_flagss, iifs, oifs, marks, ct_states, ct_statuses, ct_marks, out, events,
               n_events, trace):
    """Every packet of a batch through one table from built-in chain ``start``, as
    :func:`tracer.dataplane.interpreter.run_hook` walks it. ``out`` rows: effect, deciding
    chain, deciding rule number (0: the policy), deciding rule row (-1: the policy), mark,
    ct mark, notrack, error; ``events[i]`` receives packet i's trace when ``trace``. One
    function, no call per packet: a call per packet cost ~400 ns."""
    stack_chain = np.empty(MAX_DEPTH, dtype=np.int64)
    stack_index = np.empty(MAX_DEPTH, dtype=np.int64)
    for i in range(srcs.shape[0]):
        src = np.int64(srcs[i])
        dst = np.int64(dsts[i])
        proto = np.int64(protos[i])
        sport = np.int64(sports[i])
        dport = np.int64(dports[i])
        icmp_type = np.int64(icmp_types[i])
        icmp_code = np.int64(icmp_codes[i])
        tcp_flags = np.int64(tcp_flagss[i])
        iif = np.int64(iifs[i])
        oif = np.int64(oifs[i])
        mark = np.int64(marks[i])
        ct_state = np.int64(ct_states[i])
        ct_status = np.int64(ct_statuses[i])
        ct_mark = np.int64(ct_marks[i])
        current = start
        index = 0
        depth = 0
        recorded = 0
        notrack = 0
        capacity = events.shape[1]
        for _step in range(MAX_STEPS):
            first = chains[current, 0]
            count = chains[current, 1]
            classified = cls_of[current] >= 0 and index < count
            if classified:
                index = first_match(cls_meta, cls_bounds, cls_bits, cls_wild, cls_of[current],
                                    index, src, dst, proto, sport, dport)
            if index >= count:
                if current != start and trace:
                    if recorded < capacity:
                        events[i, recorded, 0] = current
                        events[i, recorded, 1] = K_RETURN
                        events[i, recorded, 2] = E_RETURN
                        events[i, recorded, 3] = 0
                        events[i, recorded, 4] = -1
                        events[i, recorded, 5] = mark
                        events[i, recorded, 6] = mark
                    recorded += 1
            else:
                r = first + index
                index += 1
                # The match loop is written out here, not called: numba inlining a function
                # that takes arrays adds reference counting per rule (twenty times slower).
                matched = True
                tracked = ct_state != CT_INVALID and ct_state != CT_UNTRACKED
                for j in range(rules[r, 0], rules[r, 0] if classified else rules[r, 1]):
                    kind = matches[j, 0]
                    neg = matches[j, 1] != 0
                    a = matches[j, 2]
                    b = matches[j, 3]
                    if kind == M_PROTO:
                        ok = (a == 0 or proto == a) != neg
                    elif kind == M_ADDR:
                        value = dst if a else src
                        ok = ((value & matches[j, 4]) == b) != neg
                    elif kind == M_IFACE:
                        dev = oif if a else iif
                        ok = (dev >= 0 and iface_bits[dev, b] != 0) != neg
                    elif kind == M_PORT:
                        port = dport if a else sport
                        if port < 0:
                            ok = False             # no L4 header: the match fails, ! or not
                        else:
                            hit = False
                            for q in range(b, matches[j, 4]):
                                if ranges[q, 0] <= port <= ranges[q, 1]:
                                    hit = True
                                    break
                            ok = hit != neg
                    elif kind == M_ICMP:
                        if proto != ICMP or icmp_type < 0:
                            ok = False
                        elif a < 0:
                            ok = not neg
                        else:
                            ok = (icmp_type == a and (b < 0 or icmp_code == b)) != neg
                    elif kind == M_MARK:
                        ok = ((mark & b) == a) != neg
                    elif kind == M_CONNMARK:
                        ok = tracked and (((ct_mark & b) == a) != neg)
                    elif kind == M_CONNTRACK:
                        ok = True
                        if a != 0:
                            have = 1 << ct_state
                            if tracked:
                                have |= ct_status & NAT_STATUS_BITS
                            if ((a & have) != 0) == neg:
                                ok = False
                        if ok:
                            if not tracked:
                                ok = a != 0
                            elif matches[j, 4] != 0 and \
                                    ((b & ct_status) != 0) == (matches[j, 5] != 0):
                                ok = False
                    elif kind == M_TRUE:
                        ok = True
                    elif kind == M_TCPFLAGS:
                        ok = tcp_flags >= 0 and (((tcp_flags & a) == b) != neg)
                    elif kind == M_PROTOMOD:
                        ok = proto == a
                    elif kind == M_STATISTIC:
                        ok = stat_fire[a] != neg
                    elif kind == M_SET:
                        # Written out (no call): felix's policies test ipsets on every rule
                        # with a selector, and a call here cost more than the lookup.
                        hit = False
                        for g in range(sets[a, 0], sets[a, 1]):
                            ndims = groups[g, 0]
                            k0 = k1 = k2 = 0
                            for d in range(ndims):
                                side_src = (b >> d) & 1
                                dim_kind = groups[g, 1 + d]
                                if dim_kind == 0:
                                    width = groups[g, 4 + d]
                                    value = ((src if side_src else dst)
                                             & ((M32 << (32 - width)) & M32 if width > 0 else 0))
                                else:
                                    value = _set_port(proto, sport if side_src else dport,
                                                      icmp_type, icmp_code)
                                    if dim_kind == 1:
                                        value = (proto << 16) | value
                                if d == 0:
                                    k0 = value
                                elif d == 1:
                                    k1 = value
                                else:
                                    k2 = value
                            lo = groups[g, 7]
                            hi = groups[g, 8]
                            while lo < hi:
                                mid = (lo + hi) >> 1
                                if keys[mid, 0] < k0 or (keys[mid, 0] == k0 and (
                                        keys[mid, 1] < k1 or (keys[mid, 1] == k1
                                                              and keys[mid, 2] < k2))):
                                    lo = mid + 1
                                else:
                                    hi = mid
                            if lo < groups[g, 8] and keys[lo, 0] == k0 and keys[lo, 1] == k1 \
                                    and keys[lo, 2] == k2:
                                hit = True
                                break
                        ok = hit != neg
                    else:
                        ok = environment_match(matches, j, iface_addr, local_addrs, routes,
                                               wg_mark, src, dst, iif, oif, mark)
                    if not ok:
                        matched = False
                        break
                if not matched:
                    continue
                before = mark
                target = rules[r, 2]
                effect = target
                if target == T_SETMARK:
                    mark = ((mark & ~rules[r, 4]) ^ rules[r, 3]) & M32
                    effect = E_CONTINUE
                elif target == T_CONNMARK:
                    effect = E_CONTINUE
                    if ct_state != CT_INVALID and ct_state != CT_UNTRACKED:
                        mode = rules[r, 3]
                        if mode == CONNMARK_SAVE:
                            ct_mark = ((ct_mark & ~rules[r, 7]) ^ (mark & rules[r, 6])) & M32
                        elif mode == CONNMARK_RESTORE:
                            mark = ((mark & ~rules[r, 6]) ^ (ct_mark & rules[r, 7])) & M32
                        else:
                            ct_mark = ((ct_mark & ~rules[r, 5]) ^ rules[r, 4]) & M32
                if trace:
                    if recorded < capacity:
                        events[i, recorded, 0] = current
                        events[i, recorded, 1] = K_RULE
                        events[i, recorded, 2] = effect
                        events[i, recorded, 3] = index
                        events[i, recorded, 4] = rules[r, 3] if (effect == E_JUMP
                                                              or effect == E_GOTO) else -1
                        events[i, recorded, 5] = before
                        events[i, recorded, 6] = mark
                    recorded += 1
                if effect == E_CONTINUE:
                    continue
                if effect == E_NOTRACK:
                    notrack = 1
                    continue
                if effect == E_JUMP or effect == E_GOTO:
                    chain = rules[r, 3]
                    if chain < 0:
                        out[i, 0] = effect
                        out[i, 1] = current
                        out[i, 2] = index
                        out[i, 3] = r
                        out[i, 4] = mark
                        out[i, 5] = ct_mark
                        out[i, 6] = notrack
                        out[i, 7] = ERR_UNDEFINED_CHAIN
                        n_events[i] = recorded
                        break
                    if effect == E_JUMP:
                        if depth >= MAX_DEPTH:
                            out[i, 0] = effect
                            out[i, 1] = current
                            out[i, 2] = index
                            out[i, 3] = r
                            out[i, 4] = mark
                            out[i, 5] = ct_mark
                            out[i, 6] = notrack
                            out[i, 7] = ERR_DEPTH
                            n_events[i] = recorded
                            break
                        stack_chain[depth] = current
                        stack_index[depth] = index
                        depth += 1
                    current = chain
                    index = 0
                    continue
                if effect != E_RETURN:
                    out[i, 0] = effect
                    out[i, 1] = current
                    out[i, 2] = index
                    out[i, 3] = r
                    out[i, 4] = mark
                    out[i, 5] = ct_mark
                    out[i, 6] = notrack
                    out[i, 7] = ERR_NONE
                    n_events[i] = recorded
                    break
            # RETURN, or the end of a chain: back to the caller, else the hook's policy.
            if depth > 0:
                depth -= 1
                current = stack_chain[depth]
                index = stack_index[depth]
                continue
            policy = E_DROP if chains[start, 2] == 1 else E_ACCEPT
            if trace:
                if recorded < capacity:
                    events[i, recorded, 0] = start
                    events[i, recorded, 1] = K_POLICY
                    events[i, recorded, 2] = policy
                    events[i, recorded, 3] = 0
                    events[i, recorded, 4] = -1
                    events[i, recorded, 5] = mark
                    events[i, recorded, 6] = mark
                recorded += 1
            out[i, 0] = policy
            out[i, 1] = start
            out[i, 2] = 0
            out[i, 3] = -1
            out[i, 4] = mark
            out[i, 5] = ct_mark
            out[i, 6] = notrack
            out[i, 7] = ERR_NONE
            n_events[i] = recorded
            break
        else:
            out[i, 0] = E_DROP
            out[i, 1] = current
            out[i, 2] = index
            out[i, 3] = -1
            out[i, 4] = mark
            out[i, 5] = ct_mark
            out[i, 6] = notrack
            out[i, 7] = ERR_STEPS
            n_events[i] = recorded

