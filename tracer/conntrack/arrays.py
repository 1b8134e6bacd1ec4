"""The conntrack table as fixed-width numpy arrays with numba-jitted kernels.

Same semantics as :mod:`tracer.conntrack.reference` (the truth; a differential test compares
the two on generated packet sequences). Layout:

- ``pool``: one ``ENTRY_DTYPE`` record per entry slot (capacity = ``nf_conntrack_max``, so
  unconfirmed entries need no extra room); free slots sit on a stack.
- ``tcp``: ``int64[capacity, 22]``, the ``struct ip_ct_tcp`` of each slot (columns ``T_*``).
- ``hash``: open addressing with linear probing and tombstones over both tuples of every
  confirmed entry; value = ``slot * 2 + direction``. Rebuilt in place when tombstones pile up.

``ct_process_batch`` runs ``nf_conntrack_in`` over a ``PKT_DTYPE`` batch, then per packet the
pipeline's outcome (``action``: confirm, discard, or leave unconfirmed). ``masquerade`` /
``snat`` search a free source port as the reference does (same ``nat_seed``, same draws).
"""

from __future__ import annotations

import random
from dataclasses import replace

import numba
import numpy as np

from tracer.conntrack import tcp as ref_tcp
from tracer.conntrack.reasons import REASON_CODE, REASONS
from tracer.conntrack.reference import (ASSURED, CONFIRMED, DST_NAT, EXPECTED,
                                        NF_NAT_MAX_ATTEMPTS, SEEN_REPLY, SRC_NAT,
                                        UDP_STREAM_DELAY, status_names)
from tracer.conntrack.timeouts import Timeouts
from tracer.conntrack.tuples import (IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, CtVerdict, Entry,
                                     FlowTuple, NatRewrite, PacketKey)

ENTRY_DTYPE = np.dtype([
    ("used", np.uint8), ("id", np.int64), ("proto", np.uint8),
    ("o_src", np.uint32), ("o_dst", np.uint32), ("o_sport", np.uint16), ("o_dport", np.uint16),
    ("r_src", np.uint32), ("r_dst", np.uint32), ("r_sport", np.uint16), ("r_dport", np.uint16),
    ("status", np.uint32), ("mark", np.uint32), ("expires", np.float64),
    ("timeout", np.float64), ("stream_ts", np.float64),
])
HASH_DTYPE = np.dtype([
    ("state", np.uint8), ("proto", np.uint8), ("src", np.uint32), ("dst", np.uint32),
    ("sport", np.uint16), ("dport", np.uint16), ("val", np.int64),
])
PKT_DTYPE = np.dtype([
    ("src", np.uint32), ("dst", np.uint32), ("proto", np.uint8), ("sport", np.uint16),
    ("dport", np.uint16), ("tcp_flags", np.int16), ("seq", np.uint32), ("ack", np.uint32),
    ("window", np.uint32), ("payload_len", np.uint32), ("icmp_type", np.int16),
    ("icmp_code", np.int16), ("wscale", np.int16), ("sack_perm", np.uint8),
    ("has_inner", np.uint8), ("in_src", np.uint32), ("in_dst", np.uint32), ("in_proto", np.uint8),
    ("in_sport", np.uint16), ("in_dport", np.uint16), ("in_icmp_type", np.int16),
    ("in_icmp_code", np.int16), ("now", np.float64), ("action", np.uint8), ("notrack", np.uint8),
])
OUT_DTYPE = np.dtype([
    ("ctstate", np.uint8), ("direction", np.uint8), ("entry_id", np.int64),
    ("tcp_state", np.int8), ("reason", np.uint8), ("status", np.uint32), ("dropped", np.uint8),
    ("confirm_ok", np.uint8),
])
CTSTATE_NAMES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
CT_NEW, CT_EST, CT_REL, CT_INV, CT_UNTRACKED = range(5)
ACT_CONFIRM, ACT_DISCARD, ACT_LEAVE = 0, 1, 2
FREE, UNCONFIRMED, LIVE = 0, 1, 2
H_EMPTY, H_FULL, H_TOMB = 0, 1, 2

# Columns of the tcp array: two sides of 6, then the ip_ct_tcp scalars.
S_END, S_MAXEND, S_MAXWIN, S_MAXACK, S_SCALE, S_FLAGS = range(6)
T_STATE, T_LDIR, T_LIDX, T_LSEQ, T_LACK, T_LEND, T_LWIN, T_LWSCALE, T_LFLAGS, T_RETRANS = range(12, 22)
TCP_COLS = 22
# meta[]: free stack top, next entry id, hash full slots, hash tombstones
M_FREE, M_NEXT_ID, M_HFULL, M_HTOMB = range(4)
# cfg[]: capacity, tcp_loose, be_liberal
# tmo[]: the 12 TCP timeouts, then udp, udp_stream, icmp, generic
TMO_UDP, TMO_UDP_STREAM, TMO_ICMP, TMO_GENERIC = 12, 13, 14, 15

_TABLE = np.array(ref_tcp.TCP_CONNTRACKS, dtype=np.int64)
_VALID = np.zeros(64, dtype=np.bool_)
for _f in ref_tcp.VALID_FLAGS:
    _VALID[_f] = True
_ICMP_INV = np.full(256, -1, dtype=np.int64)
for _t, _i in ((8, 0), (0, 8), (13, 14), (14, 13), (15, 16), (16, 15), (17, 18), (18, 17)):
    _ICMP_INV[_t] = _i

M32 = 0xFFFFFFFF
A_IGNORE, A_INVALID, A_ACCEPT, A_REPEAT = ref_tcp.A_IGNORE, ref_tcp.A_INVALID, ref_tcp.A_ACCEPT, ref_tcp.A_REPEAT
(sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2, sIV, sIG) = range(12)
SYN_SET, SYNACK_SET, FIN_SET, ACK_SET, RST_SET, NONE_SET = range(6)
F_WSCALE, F_SACK, F_CLOSE_INIT, F_LIBERAL = 0x01, 0x02, 0x04, 0x08
F_UNACK, F_MAXACK, F_CHALLENGE, F_SIMOPEN = 0x10, 0x20, 0x40, 0x80
R_FULL = REASON_CODE["conntrack table full"]
R_TRUNC = REASON_CODE["truncated packet"]
R_FLAGS = REASON_CODE["invalid tcp flag combination"]
R_NEW_IV = REASON_CODE["invalid new: no state for first packet"]
R_NOLOOSE = REASON_CODE["invalid new: tcp_loose=0, no pickup"]
R_STATE_IV = REASON_CODE["invalid: state table rejects packet"]
R_IGNORED = REASON_CODE["packet ignored by state table"]
R_SEQ_OVER = REASON_CODE["SEQ is over upper bound (over the window of the receiver)"]
R_ACK_OVER = REASON_CODE["ACK is over upper bound (ACKed data not seen yet)"]
R_SEQ_UNDER = REASON_CODE["SEQ is under lower bound (already ACKed data retransmitted)"]
R_ACK_UNDER = REASON_CODE["ignored ACK under lower bound (possible overly delayed)"]
R_OVERSHOT = REASON_CODE["bytes more than expected (window overshot)"]
R_RST = REASON_CODE["invalid rst"]
R_CHALLENGE = REASON_CODE["challenge-ack ignored"]
R_ICMP_TYPE = REASON_CODE["invalid icmp type"]
R_ICMP_NOCONN = REASON_CODE["icmp error for no tracked connection"]
R_ICMP_DADDR = REASON_CODE["icmp error: outer daddr != inner"]
R_ICMP_NEW = REASON_CODE["icmp: can't create new conn with this type"]
R_ICMP_NOINV = REASON_CODE["no reply tuple for this icmp type"]
R_REOPEN = REASON_CODE["reopen of closed connection"]

_jit = numba.njit(cache=True)


# ------------------------------------------------------------------ sequence arithmetic
@_jit
def _before(a, b):
    return ((a - b) & M32) >= 0x80000000


@_jit
def _after(a, b):
    return ((b - a) & M32) >= 0x80000000


# ------------------------------------------------------------------ hash index
@_jit
def _mix(x):
    x = np.uint64(x)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


@_jit
def _hash(src, dst, proto, sport, dport):
    a = (np.uint64(src) << np.uint64(32)) | np.uint64(dst)
    b = (np.uint64(proto) << np.uint64(32)) | (np.uint64(sport) << np.uint64(16)) | np.uint64(dport)
    return _mix(a ^ _mix(b))


@_jit
def ct_lookup(hsh, src, dst, proto, sport, dport):
    """Find a tuple in the index: ``slot * 2 + direction``, or -1."""
    mask = np.uint64(hsh.shape[0] - 1)
    i = _hash(src, dst, proto, sport, dport) & mask
    while True:
        rec = hsh[i]
        if rec.state == H_EMPTY:
            return -1
        if (rec.state == H_FULL and rec.src == src and rec.dst == dst and rec.proto == proto
                and rec.sport == sport and rec.dport == dport):
            return rec.val
        i = (i + np.uint64(1)) & mask


@_jit
def _h_insert(hsh, meta, src, dst, proto, sport, dport, val):
    mask = np.uint64(hsh.shape[0] - 1)
    i = _hash(src, dst, proto, sport, dport) & mask
    while hsh[i].state == H_FULL:
        i = (i + np.uint64(1)) & mask
    if hsh[i].state == H_TOMB:
        meta[M_HTOMB] -= 1
    rec = hsh[i]
    rec.state = H_FULL
    rec.src = src
    rec.dst = dst
    rec.proto = proto
    rec.sport = sport
    rec.dport = dport
    rec.val = val
    meta[M_HFULL] += 1


@_jit
def _h_delete(hsh, meta, src, dst, proto, sport, dport, val):
    mask = np.uint64(hsh.shape[0] - 1)
    i = _hash(src, dst, proto, sport, dport) & mask
    while hsh[i].state != H_EMPTY:
        rec = hsh[i]
        if (rec.state == H_FULL and rec.val == val and rec.src == src and rec.dst == dst
                and rec.proto == proto and rec.sport == sport and rec.dport == dport):
            rec.state = H_TOMB
            meta[M_HFULL] -= 1
            meta[M_HTOMB] += 1
            return
        i = (i + np.uint64(1)) & mask


@_jit
def _h_rebuild(pool, hsh, meta):
    for i in range(hsh.shape[0]):
        hsh[i].state = H_EMPTY
    meta[M_HFULL] = 0
    meta[M_HTOMB] = 0
    for s in range(pool.shape[0]):
        e = pool[s]
        if e.used == LIVE:
            _h_insert(hsh, meta, e.r_src, e.r_dst, e.proto, e.r_sport, e.r_dport, s * 2 + 1)
            _h_insert(hsh, meta, e.o_src, e.o_dst, e.proto, e.o_sport, e.o_dport, s * 2)


# ------------------------------------------------------------------ entry bookkeeping
@_jit
def _free_entry(pool, hsh, free, meta, s):
    e = pool[s]
    if e.used == LIVE:
        _h_delete(hsh, meta, e.o_src, e.o_dst, e.proto, e.o_sport, e.o_dport, s * 2)
        _h_delete(hsh, meta, e.r_src, e.r_dst, e.proto, e.r_sport, e.r_dport, s * 2 + 1)
    e.used = FREE
    free[meta[M_FREE]] = s
    meta[M_FREE] += 1


@_jit
def _find(pool, hsh, free, meta, src, dst, proto, sport, dport, now):
    """Lookup with lazy expiry (nf_ct_gc_expired on the lookup path)."""
    val = ct_lookup(hsh, src, dst, proto, sport, dport)
    if val < 0:
        return -1
    s = val // 2
    if pool[s].expires <= now:
        _free_entry(pool, hsh, free, meta, s)
        return -1
    return val


@_jit
def ct_expire(pool, hsh, free, meta, now):
    """Free every confirmed entry whose timeout passed; returns how many."""
    n = 0
    for s in range(pool.shape[0]):
        if pool[s].used == LIVE and pool[s].expires <= now:
            _free_entry(pool, hsh, free, meta, s)
            n += 1
    return n


@_jit
def _early_drop(pool, hsh, free, meta):
    best, best_id = -1, np.int64(0)
    for s in range(pool.shape[0]):
        e = pool[s]
        if e.used == LIVE and (e.status & ASSURED) == 0 and (best < 0 or e.id < best_id):
            best, best_id = s, e.id
    if best < 0:
        return False
    _free_entry(pool, hsh, free, meta, best)
    return True


@_jit
def _alloc(pool, hsh, free, meta, cfg, now):
    if pool.shape[0] - meta[M_FREE] >= cfg[0]:
        ct_expire(pool, hsh, free, meta, now)
        if pool.shape[0] - meta[M_FREE] >= cfg[0] and not _early_drop(pool, hsh, free, meta):
            return -1
    meta[M_FREE] -= 1
    s = free[meta[M_FREE]]
    e = pool[s]
    e.used = UNCONFIRMED
    e.id = meta[M_NEXT_ID]
    meta[M_NEXT_ID] += 1
    e.status = 0
    e.mark = 0
    e.expires = 0.0
    e.timeout = 0.0
    e.stream_ts = 0.0
    return s


@_jit
def _confirm(pool, hsh, free, meta, s, now):
    e = pool[s]
    if e.used != UNCONFIRMED:
        return True
    if (_find(pool, hsh, free, meta, e.o_src, e.o_dst, e.proto, e.o_sport, e.o_dport, now) >= 0
            or _find(pool, hsh, free, meta, e.r_src, e.r_dst, e.proto, e.r_sport, e.r_dport,
                     now) >= 0):
        _free_entry(pool, hsh, free, meta, s)
        return False
    if (meta[M_HFULL] + meta[M_HTOMB] + 2) * 10 > hsh.shape[0] * 7:
        _h_rebuild(pool, hsh, meta)   # before this entry turns LIVE: it is inserted below
    e.used = LIVE
    e.status |= CONFIRMED
    e.expires = now + e.timeout
    # Reply first: when both tuples are equal (a self-connect) the kernel's chain has the
    # reply at its head (__nf_conntrack_hash_insert adds it last), so lookups find "reply".
    _h_insert(hsh, meta, e.r_src, e.r_dst, e.proto, e.r_sport, e.r_dport, s * 2 + 1)
    _h_insert(hsh, meta, e.o_src, e.o_dst, e.proto, e.o_sport, e.o_dport, s * 2)
    return True


# ------------------------------------------------------------------ TCP tracker
@_jit
def _index(flags):
    if flags & 0x04:
        return RST_SET
    if flags & 0x02:
        return SYNACK_SET if flags & 0x10 else SYN_SET
    if flags & 0x01:
        return FIN_SET
    if flags & 0x10:
        return ACK_SET
    return NONE_SET


@_jit
def _seg_end(p):
    f = p.tcp_flags
    return (np.int64(p.seq) + np.int64(p.payload_len) + (1 if f & 0x02 else 0)
            + (1 if f & 0x01 else 0)) & M32


@_jit
def _options(T, base, p):
    T[base + S_SCALE] = 0
    T[base + S_FLAGS] &= F_LIBERAL
    if p.sack_perm:
        T[base + S_FLAGS] |= F_SACK
    if p.wscale >= 0:
        T[base + S_SCALE] = min(np.int64(p.wscale), 14)
        T[base + S_FLAGS] |= F_WSCALE


@_jit
def _tcp_new(T, p, loose):
    idx = _index(p.tcp_flags)
    new_state = _TABLE[0, idx, sNO]
    if new_state >= sIV:
        return R_NEW_IV
    if new_state != sSS and not loose:
        return R_NOLOOSE
    for k in range(TCP_COLS):
        T[k] = 0
    end = _seg_end(p)
    win = np.int64(p.window)
    T[S_END] = end
    T[S_MAXWIN] = win if win != 0 else 1
    if new_state == sSS:
        T[S_MAXEND] = end
        _options(T, 0, p)
    else:
        T[S_MAXEND] = (end + T[S_MAXWIN]) & M32
        T[S_FLAGS] = F_SACK | F_LIBERAL
        T[6 + S_FLAGS] = F_SACK | F_LIBERAL
    T[T_LIDX] = NONE_SET
    return 0


@_jit
def _init_sender(T, sb, rb, p, end, win, d):
    T[sb + S_END] = end
    T[sb + S_MAXEND] = end
    T[sb + S_MAXWIN] = win if win != 0 else 1
    _options(T, sb, p)
    if d == 1 and not ((T[sb + S_FLAGS] & F_WSCALE) and (T[rb + S_FLAGS] & F_WSCALE)):
        T[sb + S_SCALE] = 0
        T[rb + S_SCALE] = 0


@_jit
def _log_invalid(T, sb, liberal, action, reason):
    if (T[sb + S_FLAGS] & F_LIBERAL) or liberal:
        return A_ACCEPT, 0
    return action, reason


@_jit
def _in_window(T, d, idx, p, liberal):
    sb, rb = d * 6, (1 - d) * 6
    f = p.tcp_flags
    seq = np.int64(p.seq)
    ack = np.int64(p.ack)
    sack = ack
    win_raw = np.int64(p.window) & 0xFFFF
    win = win_raw
    end = _seg_end(p)
    if T[sb + S_MAXWIN] == 0:
        if f & 0x02:
            _init_sender(T, sb, rb, p, end, win, d)
            if not f & 0x10:
                return A_ACCEPT, 0
        else:
            T[sb + S_END] = end
            swin = (win << T[sb + S_SCALE]) & M32
            T[sb + S_MAXWIN] = swin if swin != 0 else 1
            T[sb + S_MAXEND] = (end + T[sb + S_MAXWIN]) & M32
            if T[rb + S_MAXWIN] == 0:
                T[rb + S_END] = sack
                T[rb + S_MAXEND] = sack
            elif sack == ((T[rb + S_END] + 1) & M32):
                T[rb + S_END] = (T[rb + S_END] + 1) & M32
    elif (f & 0x02) and _after(end, T[sb + S_END]) and (T[T_STATE] == sSS or T[T_STATE] == sSR):
        _init_sender(T, sb, rb, p, end, win, d)
        if d == 1 and not f & 0x10:
            return A_ACCEPT, 0
    if not f & 0x10:
        ack = T[rb + S_END]
        sack = ack
    elif (f & 0x14) == 0x14 and ack == 0:
        ack = T[rb + S_END]
        sack = ack
    if (f & 0x04) and seq == 0 and T[T_STATE] == sSS:
        seq = T[sb + S_END]
        end = seq
    maxackwin = max(T[sb + S_MAXWIN], 66000)
    if not _before(seq, (T[sb + S_MAXEND] + 1) & M32):
        overshot = (end - T[sb + S_MAXEND] + 1) & M32
        ack_ok = _after(sack, (T[rb + S_END] - maxackwin - 1) & M32)
        in_recv = T[rb + S_MAXWIN] != 0 and _after(end, (T[sb + S_END] - T[rb + S_MAXWIN] - 1) & M32)
        if in_recv and ack_ok and overshot <= T[rb + S_MAXWIN] and _before(sack, (T[rb + S_END] + 1) & M32):
            T[sb + S_END] = end
            T[sb + S_FLAGS] |= F_UNACK
            return _log_invalid(T, sb, liberal, A_IGNORE, R_OVERSHOT)
        return _log_invalid(T, sb, liberal, A_INVALID, R_SEQ_OVER)
    if not _before(sack, (T[rb + S_END] + 1) & M32):
        return _log_invalid(T, sb, liberal, A_INVALID, R_ACK_OVER)
    if T[rb + S_MAXWIN] != 0 and not _after(end, (T[sb + S_END] - T[rb + S_MAXWIN] - 1) & M32):
        return _log_invalid(T, sb, liberal, A_IGNORE, R_SEQ_UNDER)
    if not _after(sack, (T[rb + S_END] - maxackwin - 1) & M32):
        return _log_invalid(T, sb, liberal, A_IGNORE, R_ACK_UNDER)
    if not f & 0x02:
        win = (win << T[sb + S_SCALE]) & M32
    swin = (win + (sack - ack)) & M32
    if T[sb + S_MAXWIN] < swin:
        T[sb + S_MAXWIN] = swin
    if _after(end, T[sb + S_END]):
        T[sb + S_END] = end
        T[sb + S_FLAGS] |= F_UNACK
    if f & 0x10:
        if not T[sb + S_FLAGS] & F_MAXACK:
            T[sb + S_MAXACK] = ack
            T[sb + S_FLAGS] |= F_MAXACK
        elif _after(ack, T[sb + S_MAXACK]):
            T[sb + S_MAXACK] = ack
    if T[rb + S_MAXWIN] != 0 and _after(end, T[sb + S_MAXEND]):
        T[rb + S_MAXWIN] = (T[rb + S_MAXWIN] + end - T[sb + S_MAXEND]) & M32
    if _after((sack + win) & M32, (T[rb + S_MAXEND] - 1) & M32):
        T[rb + S_MAXEND] = (sack + win) & M32
        if win == 0:
            T[rb + S_MAXEND] = (T[rb + S_MAXEND] + 1) & M32
    if ack == T[rb + S_END]:
        T[rb + S_FLAGS] &= ~F_UNACK
    if idx == ACK_SET:
        if (T[T_LDIR] == d and T[T_LSEQ] == seq and T[T_LACK] == ack and T[T_LEND] == end
                and T[T_LWIN] == win_raw):
            T[T_RETRANS] = min(T[T_RETRANS] + 1, 255)
        else:
            T[T_LDIR], T[T_LSEQ], T[T_LACK] = d, seq, ack
            T[T_LEND], T[T_LWIN], T[T_RETRANS] = end, win_raw, 0
    return A_ACCEPT, 0


@_jit
def _ignore(T, d, idx, p, old_state):
    T[T_LIDX], T[T_LDIR] = idx, d
    T[T_LSEQ] = np.int64(p.seq)
    T[T_LEND] = _seg_end(p)
    T[T_LWIN] = np.int64(p.window) & 0xFFFF
    if idx == SYN_SET and d == 0:
        T[T_LFLAGS] = 0
        T[T_LWSCALE] = 0
        if p.wscale >= 0:
            T[T_LFLAGS] |= F_WSCALE
            T[T_LWSCALE] = min(np.int64(p.wscale), 14)
        if p.sack_perm:
            T[T_LFLAGS] |= F_SACK
        if old_state == sLA:
            T[T_LFLAGS] |= F_CHALLENGE
    if old_state == sSS and idx == ACK_SET and d == 1:
        T[T_LACK] = np.int64(p.ack)


@_jit
def _rst_branch(T, d, p, old_state, new_state, seen_reply, assured):
    """Returns (mode, new_state): 0 run window check, 1 skip it, 2 invalid rst."""
    if old_state == sFW or old_state == sLA or old_state == sTW or old_state == sCL or old_state == sCW:
        return 1, new_state
    pb = (1 - d) * 6
    seq = np.int64(p.seq)
    if (T[pb + S_FLAGS] & F_MAXACK) and T[T_LIDX] != SYN_SET:
        established = T[T_STATE] == sES and assured
        if seq == 0 and not established:
            return 0, new_state
        if _before(seq, T[pb + S_MAXACK]):
            return 2, new_state
        if not established or seq == T[pb + S_MAXACK]:
            return 0, new_state
        if T[T_LIDX] == ACK_SET and T[T_LDIR] == d and seq == T[T_LEND]:
            return 0, new_state
        new_state = old_state
    ack = np.int64(p.ack)
    if (((seen_reply and T[T_LIDX] == SYN_SET) or (not assured and T[T_LIDX] == ACK_SET))
            and ack == T[T_LEND]):
        return 1, new_state
    if old_state == sSS and T[T_LIDX] == ACK_SET and T[T_LDIR] == 1 and seq == T[T_LACK]:
        return 1, new_state
    return 0, new_state


@_jit
def _choose_timeout(T, idx, new_state, tmo):
    if T[T_RETRANS] >= 3 and tmo[new_state] > tmo[10]:
        return tmo[10]
    if idx == RST_SET:
        return tmo[sCL]
    if ((T[S_FLAGS] | T[6 + S_FLAGS]) & F_UNACK) and tmo[new_state] > tmo[11]:
        return tmo[11]
    if T[T_LWIN] == 0 and tmo[new_state] > tmo[10]:
        return tmo[10]
    return tmo[new_state]


@_jit
def _tcp_packet(T, d, p, confirmed, seen_reply, assured, remaining, tmo, loose, liberal):
    """Returns (action, reason, timeout or -1, kill, set_assured, shrink_to or -1)."""
    f = p.tcp_flags
    if f < 0:
        return A_INVALID, R_TRUNC, -1.0, False, False, -1.0
    if not _VALID[f & 0x37]:
        return A_INVALID, R_FLAGS, -1.0, False, False, -1.0
    if not confirmed:
        r = _tcp_new(T, p, loose)
        if r != 0:
            return A_INVALID, r, -1.0, False, False, -1.0
    old_state = T[T_STATE]
    idx = _index(f)
    new_state = _TABLE[d, idx, old_state]
    skip = False
    if new_state == sSS and old_state >= sTW:
        if ((T[d * 6 + S_FLAGS] | T[(1 - d) * 6 + S_FLAGS]) & F_CLOSE_INIT) or (
                T[T_LDIR] == d and T[T_LIDX] == RST_SET):
            return A_REPEAT, R_REOPEN, -1.0, False, False, -1.0
        new_state = sIG
    if new_state == sIG:
        if (idx == SYNACK_SET and T[T_LIDX] == SYN_SET and T[T_LDIR] != d
                and np.int64(p.ack) == T[T_LEND]):
            old_state, new_state = sSS, sSR
            lb = T[T_LDIR] * 6
            T[lb + S_END] = T[T_LEND]
            T[lb + S_MAXEND] = T[T_LEND]
            T[lb + S_MAXWIN] = T[T_LWIN] if T[T_LWIN] != 0 else 1
            T[lb + S_SCALE] = T[T_LWSCALE]
            T[T_LFLAGS] &= ~F_CHALLENGE
            T[lb + S_FLAGS] = T[T_LFLAGS]
            mb = d * 6
            T[mb + S_END] = 0
            T[mb + S_MAXEND] = 0
            T[mb + S_MAXWIN] = 0
            T[mb + S_MAXACK] = 0
            T[mb + S_SCALE] = 0
            T[mb + S_FLAGS] &= F_LIBERAL
        else:
            _ignore(T, d, idx, p, old_state)
            return A_IGNORE, R_IGNORED, -1.0, False, False, -1.0
    elif new_state == sIV:
        return A_INVALID, R_STATE_IV, -1.0, False, False, -1.0
    elif new_state == sTW:
        if (old_state == sLA and idx == ACK_SET and T[T_LDIR] != d and T[T_LIDX] == SYN_SET
                and (T[T_LFLAGS] & F_CHALLENGE)):
            T[T_LFLAGS] &= ~F_CHALLENGE
            return A_IGNORE, R_CHALLENGE, -1.0, False, False, -1.0
    elif new_state == sS2:
        T[T_LFLAGS] |= F_SIMOPEN
    elif new_state == sSR:
        if d == 1 and idx == ACK_SET and (T[T_LFLAGS] & F_SIMOPEN):
            new_state = sES
    elif new_state == sCL and idx == RST_SET:
        mode, new_state = _rst_branch(T, d, p, old_state, new_state, seen_reply, assured)
        if mode == 2:
            return A_INVALID, R_RST, -1.0, False, False, -1.0
        skip = mode == 1
    if not skip:
        action, reason = _in_window(T, d, idx, p, liberal)
        if action == A_IGNORE:
            return A_IGNORE, reason, -1.0, False, False, -1.0
        if action == A_INVALID:
            shrink = -1.0
            if assured and (idx == RST_SET or idx == FIN_SET):
                if T[T_LDIR] != d and (T[T_LIDX] == FIN_SET or T[T_LIDX] == RST_SET):
                    if not (remaining < 120 or remaining <= tmo[11]):
                        shrink = tmo[11]
                else:
                    T[T_LIDX], T[T_LDIR] = idx, d
            return A_INVALID, reason, -1.0, False, False, shrink
    T[T_LIDX], T[T_LDIR] = idx, d
    T[T_STATE] = new_state
    if old_state != new_state and new_state == sFW:
        T[d * 6 + S_FLAGS] |= F_CLOSE_INIT
    timeout = _choose_timeout(T, idx, new_state, tmo)
    if not seen_reply:
        if f & 0x04:
            return A_ACCEPT, 0, timeout, True, False, -1.0
        if idx == SYN_SET and old_state == sSS:
            return A_ACCEPT, 0, -1.0, False, False, -1.0
        if new_state == sES and timeout > tmo[11]:
            timeout = tmo[11]
        return A_ACCEPT, 0, timeout, False, False, -1.0
    set_assured = (not assured) and (old_state == sSR or old_state == sES) and new_state == sES
    return A_ACCEPT, 0, timeout, False, set_assured, -1.0


# ------------------------------------------------------------------ nf_conntrack_in
@_jit
def _refresh(e, timeout, now):
    if e.status & CONFIRMED:
        e.expires = now + timeout
    else:
        e.timeout = timeout


@_jit
def _icmp_inv(t):
    return _ICMP_INV[t] if 0 <= t < 256 else -1


@_jit
def _set_out(o, ctstate, d, eid, tstate, reason, status, dropped):
    o.ctstate = ctstate
    o.direction = d
    o.entry_id = eid
    o.tcp_state = tstate
    o.reason = reason
    o.status = status
    o.dropped = dropped


@_jit
def _icmp_error(pool, tcpa, hsh, free, meta, p, o):
    """Returns True when the packet was fully handled here (RELATED or INVALID)."""
    if p.icmp_type < 0:
        _set_out(o, CT_INV, 0, -1, -1, R_TRUNC, 0, 0)
        return True
    if p.icmp_type > 18:
        _set_out(o, CT_INV, 0, -1, -1, R_ICMP_TYPE, 0, 0)
        return True
    t = p.icmp_type
    if not (t == 3 or t == 4 or t == 5 or t == 11 or t == 12):
        return False
    if not p.has_inner:
        _set_out(o, CT_INV, 0, -1, -1, R_TRUNC, 0, 0)
        return True
    if p.in_proto == IPPROTO_ICMP:
        it = p.in_icmp_type if p.in_icmp_type >= 0 else 0
        inv = _icmp_inv(it)
        if inv < 0:
            _set_out(o, CT_INV, 0, -1, -1, R_ICMP_NOCONN, 0, 0)
            return True
        code = p.in_icmp_code & 0xFF if p.in_icmp_code >= 0 else 0
        src, dst, sport, dport = p.in_dst, p.in_src, p.in_sport, (inv << 8) | code
    elif p.in_proto == IPPROTO_TCP or p.in_proto == IPPROTO_UDP:
        src, dst, sport, dport = p.in_dst, p.in_src, p.in_dport, p.in_sport
    else:
        src, dst, sport, dport = p.in_dst, p.in_src, 0, 0
    val = _find(pool, hsh, free, meta, src, dst, p.in_proto, sport, dport, p.now)
    if val < 0:
        _set_out(o, CT_INV, 0, -1, -1, R_ICMP_NOCONN, 0, 0)
        return True
    s, d = val // 2, val % 2
    e = pool[s]
    ct_dst = e.o_dst if d == 0 else e.r_dst
    if ct_dst != p.dst:
        _set_out(o, CT_INV, 0, -1, -1, R_ICMP_DADDR, 0, 0)
        return True
    tstate = tcpa[s, T_STATE] if e.proto == IPPROTO_TCP else -1
    _set_out(o, CT_REL, d, e.id, tstate, 0, e.status, 0)
    return True


@_jit
def _process_one(pool, tcpa, hsh, free, meta, cfg, tmo, p, o):
    now = p.now
    o.confirm_ok = 1
    if p.notrack:
        _set_out(o, CT_UNTRACKED, 0, -1, -1, 0, 0, 0)
        return -1
    if p.proto == IPPROTO_ICMP:
        if _icmp_error(pool, tcpa, hsh, free, meta, p, o):
            return -1
    # nf_ct_get_tuple
    src, dst, proto = p.src, p.dst, p.proto
    if proto == IPPROTO_ICMP:
        sport = p.sport
        itype = p.icmp_type if p.icmp_type >= 0 else 0
        icode = p.icmp_code & 0xFF if p.icmp_code >= 0 else 0
        dport = (itype << 8) | icode
    elif proto == IPPROTO_TCP or proto == IPPROTO_UDP:
        sport, dport = p.sport, p.dport
    else:
        sport, dport = 0, 0
    while True:
        val = _find(pool, hsh, free, meta, src, dst, proto, sport, dport, now)
        if val >= 0:
            s, d = val // 2, val % 2
        else:
            if proto == IPPROTO_ICMP:
                inv = _icmp_inv(dport >> 8)
                if inv < 0:
                    _set_out(o, CT_INV, 0, -1, -1, R_ICMP_NOINV, 0, 0)
                    return -1
                r_sport, r_dport = sport, (inv << 8) | (dport & 0xFF)
            else:
                r_sport, r_dport = dport, sport
            s = _alloc(pool, hsh, free, meta, cfg, now)
            if s < 0:
                _set_out(o, CT_INV, 0, -1, -1, R_FULL, 0, 1)
                return -1
            e = pool[s]
            e.proto = proto
            e.o_src = src
            e.o_dst = dst
            e.o_sport = sport
            e.o_dport = dport
            e.r_src = dst
            e.r_dst = src
            e.r_sport = r_sport
            e.r_dport = r_dport
            d = 0
        e = pool[s]
        if d == 1 or (e.status & SEEN_REPLY):
            ctstate = CT_EST
        elif e.status & EXPECTED:
            ctstate = CT_REL
        else:
            ctstate = CT_NEW
        confirmed = (e.status & CONFIRMED) != 0
        action, reason, kill = A_ACCEPT, 0, False
        if proto == IPPROTO_TCP:
            T = tcpa[s]
            remaining = e.expires - now if confirmed else e.timeout
            action, reason, timeout, kill, set_assured, shrink = _tcp_packet(
                T, d, p, confirmed, (e.status & SEEN_REPLY) != 0, (e.status & ASSURED) != 0,
                remaining, tmo, cfg[1] != 0, cfg[2] != 0)
            if shrink >= 0:
                e.expires = now + shrink
            if timeout >= 0:
                _refresh(e, timeout, now)
            if set_assured:
                e.status |= ASSURED
            if action == A_IGNORE:
                action = A_ACCEPT
        elif proto == IPPROTO_UDP:
            if not confirmed:
                e.stream_ts = now + UDP_STREAM_DELAY
            if e.status & SEEN_REPLY:
                stream = now > e.stream_ts
                _refresh(e, tmo[TMO_UDP_STREAM] if stream else tmo[TMO_UDP], now)
                if stream:
                    e.status |= ASSURED
            else:
                _refresh(e, tmo[TMO_UDP], now)
        elif proto == IPPROTO_ICMP:
            t0 = e.o_dport >> 8
            if not (t0 == 8 or t0 == 13 or t0 == 15 or t0 == 17):
                action, reason = A_INVALID, R_ICMP_NEW
            else:
                _refresh(e, tmo[TMO_ICMP], now)
        else:
            _refresh(e, tmo[TMO_GENERIC], now)
        if action == A_REPEAT:
            _free_entry(pool, hsh, free, meta, s)
            continue
        if action == A_INVALID:
            if not confirmed:
                _free_entry(pool, hsh, free, meta, s)
            _set_out(o, CT_INV, d, -1, -1, reason, 0, 0)
            return -1
        if d == 1:
            e.status |= SEEN_REPLY
        tstate = tcpa[s, T_STATE] if proto == IPPROTO_TCP else -1
        _set_out(o, ctstate, d, e.id, tstate, reason, e.status, 0)
        if kill:
            _free_entry(pool, hsh, free, meta, s)
            return -1
        return s


@_jit
def ct_process_batch(pool, tcpa, hsh, free, meta, cfg, tmo, pkts, out):
    """nf_conntrack_in over a batch, then each packet's confirm/discard outcome."""
    for i in range(pkts.shape[0]):
        p = pkts[i]
        o = out[i]
        s = _process_one(pool, tcpa, hsh, free, meta, cfg, tmo, p, o)
        if s >= 0 and pool[s].used == UNCONFIRMED:
            if p.action == ACT_CONFIRM:
                o.confirm_ok = 1 if _confirm(pool, hsh, free, meta, s, p.now) else 0
            elif p.action == ACT_DISCARD:
                _free_entry(pool, hsh, free, meta, s)


@_jit
def _slot_of(pool, entry_id):
    for s in range(pool.shape[0]):
        if pool[s].used != FREE and pool[s].id == entry_id:
            return s
    return -1


# ------------------------------------------------------------------ Python front end
def pack_packets(keys: list[PacketKey], nows: list[float] | float,
                 actions: list[int] | int = ACT_LEAVE, notrack: list[bool] | None = None) -> np.ndarray:
    """PacketKeys to a ``PKT_DTYPE`` batch (None fields become -1)."""
    arr = np.zeros(len(keys), dtype=PKT_DTYPE)
    for i, k in enumerate(keys):
        rec = arr[i]
        rec["src"], rec["dst"], rec["proto"] = k.src, k.dst, k.protocol
        rec["sport"], rec["dport"] = k.sport & 0xFFFF, k.dport & 0xFFFF
        rec["tcp_flags"] = -1 if k.tcp_flags is None else k.tcp_flags & 0xFF
        rec["seq"], rec["ack"] = k.seq & M32, k.ack & M32
        rec["window"], rec["payload_len"] = k.window & 0xFFFF, k.payload_len & M32
        rec["icmp_type"] = -1 if k.icmp_type is None else min(k.icmp_type, 255)
        rec["icmp_code"] = -1 if k.icmp_code is None else k.icmp_code & 0xFF
        rec["wscale"] = -1 if k.wscale is None else min(k.wscale, 255)
        rec["sack_perm"] = k.sack_perm
        inner = k.icmp_inner
        if inner is not None:
            rec["has_inner"] = 1
            rec["in_src"], rec["in_dst"], rec["in_proto"] = inner.src, inner.dst, inner.protocol
            rec["in_sport"], rec["in_dport"] = inner.sport & 0xFFFF, inner.dport & 0xFFFF
            rec["in_icmp_type"] = -1 if inner.icmp_type is None else inner.icmp_type & 0xFF
            rec["in_icmp_code"] = -1 if inner.icmp_code is None else inner.icmp_code & 0xFF
        rec["now"] = nows[i] if isinstance(nows, list) else nows
        rec["action"] = actions[i] if isinstance(actions, list) else actions
        rec["notrack"] = bool(notrack[i]) if notrack is not None else False
    return arr


def unpack_verdict(rec: np.void) -> CtVerdict:
    state = int(rec["tcp_state"])
    return CtVerdict(CTSTATE_NAMES[rec["ctstate"]], ("original", "reply")[rec["direction"]],
                     None if rec["entry_id"] < 0 else int(rec["entry_id"]),
                     ref_tcp.STATE_NAMES[state] if state >= 0 else None,
                     REASONS[rec["reason"]] or None, status_names(int(rec["status"])),
                     bool(rec["dropped"]))


INITIAL_SLOTS = 1024


def _hash_size(slots: int) -> int:
    return 1 << max(4, (4 * slots - 1).bit_length())


class ArrayConntrackTable:
    """The array/numba twin of :class:`ConntrackTable`, with the same method names."""

    def __init__(self, capacity: int = 262144, *, tcp_loose: bool = True,
                 timeouts: Timeouts | None = None, be_liberal: bool = False,
                 nat_seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("conntrack capacity must be at least 1")
        # The NAT port search's random offsets, drawn as the reference draws them.
        self._rng = random.Random(nat_seed)
        self.capacity = capacity
        self.timeouts = timeouts or Timeouts()
        # The arrays start small and grow (doubling) up to ``capacity``, the nf_conntrack_max
        # the early-drop logic compares with: a traced packet does not pay for 262,144 slots.
        size = min(capacity, INITIAL_SLOTS)
        self.pool = np.zeros(size, dtype=ENTRY_DTYPE)
        self.tcp = np.zeros((size, TCP_COLS), dtype=np.int64)
        self.hash = np.zeros(_hash_size(size), dtype=HASH_DTYPE)
        self.free = np.arange(size - 1, -1, -1, dtype=np.int64)
        self.meta = np.zeros(4, dtype=np.int64)
        self.meta[M_FREE], self.meta[M_NEXT_ID] = size, 1
        self.cfg = np.array([capacity, int(tcp_loose), int(be_liberal)], dtype=np.int64)
        t = self.timeouts
        self.tmo = np.array(list(t.tcp_table()) + [t.udp, t.udp_stream, t.icmp, t.generic],
                            dtype=np.float64)

    def _room_for(self, packets: int) -> None:
        """Grow so that ``packets`` new entries find free slots (each packet allocates at most
        one), unless the arrays already hold ``capacity`` slots."""
        size = self.pool.shape[0]
        if self.meta[M_FREE] >= packets or size >= self.capacity:
            return
        new_size = min(self.capacity, max(2 * size, size - int(self.meta[M_FREE]) + packets))
        pool = np.zeros(new_size, dtype=ENTRY_DTYPE)
        pool[:size] = self.pool
        tcp = np.zeros((new_size, TCP_COLS), dtype=np.int64)
        tcp[:size] = self.tcp
        n_free = int(self.meta[M_FREE])
        added = np.arange(new_size - 1, size - 1, -1, dtype=np.int64)
        free = np.empty(new_size, dtype=np.int64)
        free[:len(added)] = added                  # below the stack: old free slots go first
        free[len(added):len(added) + n_free] = self.free[:n_free]
        self.meta[M_FREE] = n_free + len(added)
        self.pool, self.tcp, self.free = pool, tcp, free
        self.hash = np.zeros(_hash_size(new_size), dtype=HASH_DTYPE)
        _h_rebuild(self.pool, self.hash, self.meta)

    def process_batch(self, pkts: np.ndarray) -> np.ndarray:
        self._room_for(pkts.shape[0])
        out = np.zeros(pkts.shape[0], dtype=OUT_DTYPE)
        ct_process_batch(self.pool, self.tcp, self.hash, self.free, self.meta, self.cfg,
                         self.tmo, pkts, out)
        return out

    def process(self, key: PacketKey, now: float, *, notrack: bool = False) -> CtVerdict:
        out = self.process_batch(pack_packets([key], now, ACT_LEAVE, [notrack]))
        return unpack_verdict(out[0])

    def replay(self, key: PacketKey, now: float, expect: str):
        """:meth:`ConntrackTable.replay`: ``process`` for a packet expected to find a
        confirmed, live entry in state ``expect``; its effects stay (an undo function is
        returned) or, when the state differs, the entry's row is restored (None)."""
        t = key.tuple()
        val = ct_lookup(self.hash, t.src, t.dst, t.protocol, t.sport, t.dport)
        if val < 0:
            return None
        s = int(val) // 2
        if self.pool[s]["expires"] <= now:
            return None                          # its expiry is process's to make
        row, tcp = self.pool[s].copy(), self.tcp[s].copy()

        def undo() -> None:
            self.pool[s], self.tcp[s] = row, tcp

        verdict = self.process(key, now)
        if verdict.dropped or verdict.ctstate != expect or verdict.entry_id != int(row["id"]):
            undo()
            return None
        return undo

    def confirm(self, entry_id: int, now: float) -> bool:
        s = _slot_of(self.pool, entry_id)
        if s < 0:
            return True
        return bool(_confirm(self.pool, self.hash, self.free, self.meta, s, now))

    def discard(self, entry_id: int) -> None:
        s = _slot_of(self.pool, entry_id)
        if s >= 0 and self.pool[s]["used"] == UNCONFIRMED:
            _free_entry(self.pool, self.hash, self.free, self.meta, s)

    def expire(self, now: float) -> int:
        return int(ct_expire(self.pool, self.hash, self.free, self.meta, now))

    @property
    def count(self) -> int:
        return int(self.pool.shape[0] - self.meta[M_FREE])

    def _entry(self, s: int) -> Entry:
        e = self.pool[s]
        proto = int(e["proto"])
        orig = FlowTuple(int(e["o_src"]), int(e["o_dst"]), proto, int(e["o_sport"]), int(e["o_dport"]))
        reply = FlowTuple(int(e["r_src"]), int(e["r_dst"]), proto, int(e["r_sport"]), int(e["r_dport"]))
        state = ref_tcp.STATE_NAMES[self.tcp[s, T_STATE]] if proto == IPPROTO_TCP else None
        return Entry(int(e["id"]), orig, reply, status_names(int(e["status"])), int(e["mark"]),
                     float(e["expires"]), state)

    def entries(self, now: float) -> list[Entry]:
        live = np.nonzero((self.pool["used"] == LIVE) & (self.pool["expires"] > now))[0]
        order = live[np.argsort(self.pool["id"][live], kind="stable")]
        return [self._entry(int(s)) for s in order]

    def _killed(self, entry_id: int) -> Entry:
        """An entry the packet being processed killed (an RST): its row is freed but not yet
        reused, and the packet still gets its NAT, as nf_ct_kill leaves it its reference."""
        rows = np.nonzero(self.pool["id"] == entry_id)[0]
        if rows.size == 0:
            raise KeyError(entry_id)
        return self._entry(int(rows[0]))

    def get(self, entry_id: int) -> Entry | None:
        s = _slot_of(self.pool, entry_id)
        return self._entry(s) if s >= 0 else None

    def set_mark(self, entry_id: int, mark: int) -> None:
        self.pool[_slot_of(self.pool, entry_id)]["mark"] = mark & M32

    def set_nat(self, entry_id: int, *, reply_src: int | None = None,
                reply_sport: int | None = None, reply_dst: int | None = None,
                reply_dport: int | None = None) -> None:
        s = _slot_of(self.pool, entry_id)
        if s < 0 or self.pool[s]["used"] != UNCONFIRMED:
            raise ValueError(f"conntrack entry {entry_id} is not an unconfirmed entry")
        e = self.pool[s]
        for field, value in (("r_src", reply_src), ("r_sport", reply_sport),
                             ("r_dst", reply_dst), ("r_dport", reply_dport)):
            if value is not None:
                e[field] = value
        icmp = e["proto"] == IPPROTO_ICMP
        dnat = e["r_src"] != e["o_dst"] or (not icmp and e["r_sport"] != e["o_dport"])
        snat = e["r_dst"] != e["o_src"] or e[("r_sport" if icmp else "r_dport")] != e["o_sport"]
        status = int(e["status"]) & ~(SRC_NAT | DST_NAT)
        e["status"] = status | (DST_NAT if dnat else 0) | (SRC_NAT if snat else 0)

    def dnat(self, entry_id: int, to_dst: int, to_port: int | None = None) -> None:
        self.set_nat(entry_id, reply_src=to_dst, reply_sport=to_port)

    # ------------------------------------------------------------------ SNAT / MASQUERADE
    # Once per new connection, so plain Python over the arrays, with the reference's steps
    # (get_unique_tuple): keep the source port if free, reuse another flow's mapping of the
    # same source, else search ports from a random offset (nf_nat_l4proto_unique_tuple).

    def masquerade(self, entry_id: int, to_src: int, now: float, *,
                   port_range: tuple[int, int] | None = None) -> None:
        """SNAT/MASQUERADE to ``to_src``, picking a free source port like get_unique_tuple()."""
        s = _slot_of(self.pool, entry_id)
        if s < 0 or self.pool[s]["used"] != UNCONFIRMED:
            raise ValueError(f"conntrack entry {entry_id} is not an unconfirmed entry")
        entry = self._entry(s)
        curr = entry.reply.invert()
        assert curr is not None
        chosen = self._unique_src(s, entry.original, curr, to_src, port_range, now)
        reply = chosen.invert()
        assert reply is not None
        self.set_nat(entry_id, reply_src=reply.src, reply_sport=reply.sport,
                     reply_dst=reply.dst, reply_dport=reply.dport)

    snat = masquerade

    def _tuple_taken(self, candidate: FlowTuple, s: int, original: FlowTuple,
                     now: float) -> bool:
        """nf_nat_used_tuple(): would the candidate's reply tuple clash with another entry?"""
        reply = candidate.invert()
        if reply is None:
            return False
        val = _find(self.pool, self.hash, self.free, self.meta, reply.src, reply.dst,
                    reply.protocol, reply.sport, reply.dport, now)
        if val < 0 or val // 2 == s:
            return False
        return self._entry(val // 2).original != original

    def _unique_src(self, s: int, original: FlowTuple, curr: FlowTuple, to_src: int,
                    port_range: tuple[int, int] | None, now: float) -> FlowTuple:
        def in_range(flow: FlowTuple) -> bool:
            return flow.src == to_src and (port_range is None or flow.protocol == IPPROTO_ICMP
                                           or port_range[0] <= flow.sport <= port_range[1])
        if in_range(curr):
            if not self._tuple_taken(curr, s, original, now):
                return curr
        else:
            mapped = self._existing_src_map(curr, now)
            if mapped is not None and in_range(mapped) and \
                    not self._tuple_taken(mapped, s, original, now):
                return mapped
        candidate = replace(curr, src=to_src)
        if in_range(candidate) and not self._tuple_taken(candidate, s, original, now):
            return candidate
        return self._search_port(s, original, candidate, port_range, now)

    def _existing_src_map(self, curr: FlowTuple, now: float) -> FlowTuple | None:
        """find_appropriate_src(): the oldest live SNATed flow from the same source:port."""
        p = self.pool
        hits = np.flatnonzero((p["used"] == LIVE) & ((p["status"] & CONFIRMED) != 0)
                              & ((p["status"] & SRC_NAT) != 0) & (p["expires"] > now)
                              & (p["o_src"] == curr.src) & (p["o_sport"] == curr.sport)
                              & (p["proto"] == curr.protocol))
        if not len(hits):
            return None
        other = self._entry(int(hits[np.argmin(p["id"][hits])]))
        return replace(curr, src=other.reply.dst, sport=other.reply.dport
                       if curr.protocol != IPPROTO_ICMP else other.reply.sport)

    def _search_port(self, s: int, original: FlowTuple, candidate: FlowTuple,
                     port_range: tuple[int, int] | None, now: float) -> FlowTuple:
        if candidate.protocol not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP):
            return candidate
        port = candidate.sport
        if candidate.protocol == IPPROTO_ICMP and port_range is None:
            low, size = 0, 65536
        elif port_range is not None:
            low, size = port_range[0], port_range[1] - port_range[0] + 1
        elif port < 1024:
            low, size = (1, 511) if port < 512 else (600, 424)   # low ports stay low
        else:
            low, size = 1024, 65535 - 1024 + 1
        offset = self._rng.getrandbits(16)
        attempts = min(size, NF_NAT_MAX_ATTEMPTS)
        while True:
            for _ in range(attempts):
                trial = replace(candidate, sport=low + offset % size)
                if not self._tuple_taken(trial, s, original, now):
                    return trial
                offset = (offset + 1) & 0xFFFF
            if attempts >= size or attempts < 16:
                return trial   # nothing free: the clash shows up at confirm
            attempts //= 2
            offset = self._rng.getrandbits(16)

    def translate(self, entry_id: int, direction: str) -> NatRewrite:
        entry = self.get(entry_id) or self._killed(entry_id)
        want = (entry.reply if direction == "original" else entry.original).invert()
        assert want is not None
        snat, dnat = "SRC_NAT" in entry.status, "DST_NAT" in entry.status
        if direction == "original":
            return NatRewrite(want.src, want.dst, want.sport, want.dport, snat, dnat)
        return NatRewrite(want.src, want.dst, want.sport, want.dport, dnat, snat)
