"""The kernel's TCP connection tracker: state table, tcp_in_window and tcp_packet, in Python.

Follows net/netfilter/nf_conntrack_proto_tcp.c of Linux 6.x: ``tcp_conntracks[2][6][10]``,
``tcp_error`` (valid flag combinations), ``tcp_new`` (pickup with ``nf_conntrack_tcp_loose``),
``tcp_in_window`` (td_end/td_maxend/td_maxwin bookkeeping, RFC 1323 window scaling) and the
timeout choice at the end of ``nf_conntrack_tcp_packet``. Sequence arithmetic is modulo 2**32.

Simplifications (documented, checked by tests): SACK blocks are not read (``sack == ack``;
the kernel reads the highest SACK edge when SACK_PERM was negotiated); NAT sequence offsets
(seqadj) are zero; synproxy and ``tcp_no_window_check`` are not modelled; TCP options are
taken from ``PacketKey.wscale``/``sack_perm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tracer.conntrack.reasons import REASON_CODE
from tracer.conntrack.tuples import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, PacketKey

# enum tcp_conntrack
(NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
 SYN_SENT2) = range(10)
S_INVALID = 10   # sIV == TCP_CONNTRACK_MAX
S_IGNORE = 11    # sIG
T_RETRANS, T_UNACK = 10, 11   # extra slots of the timeouts[] array
STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
               "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")

# enum tcp_bit_set
SYN_SET, SYNACK_SET, FIN_SET, ACK_SET, RST_SET, NONE_SET = range(6)

# struct ip_ct_tcp_state.flags / last_flags bits
F_WINDOW_SCALE, F_SACK_PERM, F_CLOSE_INIT, F_BE_LIBERAL = 0x01, 0x02, 0x04, 0x08
F_DATA_UNACKNOWLEDGED, F_MAXACK_SET, F_EXP_CHALLENGE_ACK, F_SIMULTANEOUS_OPEN = 0x10, 0x20, 0x40, 0x80

# Verdicts of tcp_in_window (enum nf_ct_tcp_action) and of tcp_packet.
A_IGNORE, A_INVALID, A_ACCEPT, A_REPEAT = 0, 1, 2, 3

_sNO, _sSS, _sSR, _sES, _sFW, _sCW, _sLA, _sTW, _sCL, _sS2 = range(10)
_sIV, _sIG = S_INVALID, S_IGNORE
# tcp_conntracks[dir][index][old_state], copied row by row from the kernel table.
TCP_CONNTRACKS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (  # ORIGINAL     sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
        (_sSS, _sSS, _sIG, _sIG, _sIG, _sIG, _sIG, _sSS, _sSS, _sS2),  # syn
        (_sIV, _sIV, _sSR, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sSR),  # synack
        (_sIV, _sIV, _sFW, _sFW, _sLA, _sLA, _sLA, _sTW, _sCL, _sIV),  # fin
        (_sES, _sIV, _sES, _sES, _sCW, _sCW, _sTW, _sTW, _sCL, _sIV),  # ack
        (_sIV, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL),  # rst
        (_sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV),  # none
    ),
    (  # REPLY
        (_sIV, _sS2, _sIV, _sIV, _sIV, _sIV, _sIV, _sSS, _sIV, _sS2),  # syn
        (_sIV, _sSR, _sIG, _sIG, _sIG, _sIG, _sIG, _sIG, _sIG, _sSR),  # synack
        (_sIV, _sIV, _sFW, _sFW, _sLA, _sLA, _sLA, _sTW, _sCL, _sIV),  # fin
        (_sIV, _sIG, _sSR, _sES, _sCW, _sCW, _sTW, _sTW, _sCL, _sIG),  # ack
        (_sIV, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL, _sCL),  # rst
        (_sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV, _sIV),  # none
    ),
)

# tcp_valid_flags[]: PSH, ECE and CWR are masked off before the lookup.
VALID_FLAGS = frozenset({SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK,
                         FIN | ACK | URG, ACK, ACK | URG})

MAXACKWINCONST = 66000
TCP_MAX_WSCALE = 14
TCP_MAX_RETRANS = 3   # nf_conntrack_tcp_max_retrans
MASK32 = 0xFFFFFFFF


def before(seq1: int, seq2: int) -> bool:
    """``before()`` from include/net/tcp.h: (s32)(seq1 - seq2) < 0."""
    return ((seq1 - seq2) & MASK32) >= 0x80000000


def after(seq1: int, seq2: int) -> bool:
    return before(seq2, seq1)


def conntrack_index(flags: int) -> int:
    """get_conntrack_index(): which row of the state table a segment uses."""
    if flags & RST:
        return RST_SET
    if flags & SYN:
        return SYNACK_SET if flags & ACK else SYN_SET
    if flags & FIN:
        return FIN_SET
    if flags & ACK:
        return ACK_SET
    return NONE_SET


def segment_end(key: PacketKey) -> int:
    """segment_seq_plus_len(): seq + payload + SYN + FIN."""
    flags = key.tcp_flags or 0
    return (key.seq + key.payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK32


@dataclass(slots=True)
class TcpSide:
    """struct ip_ct_tcp_state: what we know of one direction's sequence space."""

    td_end: int = 0
    td_maxend: int = 0
    td_maxwin: int = 0
    td_maxack: int = 0
    td_scale: int = 0
    flags: int = 0


@dataclass(slots=True)
class TcpTrack:
    """struct ip_ct_tcp: protocol state of one TCP conntrack entry."""

    state: int = NONE
    seen: list[TcpSide] = field(default_factory=lambda: [TcpSide(), TcpSide()])
    last_dir: int = 0
    last_index: int = 0
    last_seq: int = 0
    last_ack: int = 0
    last_end: int = 0
    last_win: int = 0
    last_wscale: int = 0
    last_flags: int = 0
    retrans: int = 0

    def copy(self) -> TcpTrack:
        return TcpTrack(self.state, [replace(side) for side in self.seen], self.last_dir,
                        self.last_index, self.last_seq, self.last_ack, self.last_end,
                        self.last_win, self.last_wscale, self.last_flags, self.retrans)


@dataclass(frozen=True, slots=True)
class TcpOutcome:
    """What tcp_packet decided: verdict, new relative timeout (None: not refreshed), side effects."""

    action: int
    reason: int = 0
    timeout: float | None = None
    kill: bool = False
    assured: bool = False
    shrink_to: float | None = None   # nf_tcp_handle_invalid: lower the timeout to this


def tcp_options(key: PacketKey, side: TcpSide) -> None:
    """tcp_options(): window scale and SACK-permitted from the SYN's options."""
    side.td_scale = 0
    side.flags &= F_BE_LIBERAL
    if key.sack_perm:
        side.flags |= F_SACK_PERM
    if key.wscale is not None:
        side.td_scale = min(key.wscale, TCP_MAX_WSCALE)
        side.flags |= F_WINDOW_SCALE


def tcp_error(key: PacketKey) -> int:
    """tcp_error(): reason code for a malformed header, 0 when fine."""
    if key.tcp_flags is None:
        return REASON_CODE["truncated packet"]
    if (key.tcp_flags & ~(ECE | CWR | PSH) & 0xFF) not in VALID_FLAGS:
        return REASON_CODE["invalid tcp flag combination"]
    return 0


def tcp_new(track: TcpTrack, key: PacketKey, loose: bool) -> int:
    """tcp_new(): set up a fresh entry from its first packet; returns a reason code when refused."""
    new_state = TCP_CONNTRACKS[0][conntrack_index(key.tcp_flags or 0)][NONE]
    if new_state >= S_INVALID:
        return REASON_CODE["invalid new: no state for first packet"]
    end = segment_end(key)
    orig = TcpSide()
    if new_state == SYN_SENT:
        orig.td_end = end
        orig.td_maxwin = key.window or 1
        orig.td_maxend = end
        tcp_options(key, orig)
        track.seen = [orig, TcpSide()]
    elif not loose:
        return REASON_CODE["invalid new: tcp_loose=0, no pickup"]
    else:
        # Mid-stream pickup: history lost, assume SACK and be liberal (window scaling unknown).
        orig.td_end = end
        orig.td_maxwin = key.window or 1
        orig.td_maxend = (end + orig.td_maxwin) & MASK32
        orig.flags = F_SACK_PERM | F_BE_LIBERAL
        track.seen = [orig, TcpSide(flags=F_SACK_PERM | F_BE_LIBERAL)]
    track.state = NONE
    track.last_index = NONE_SET
    return 0


def _init_sender(sender: TcpSide, receiver: TcpSide, key: PacketKey, end: int, win: int,
                 direction: int) -> None:
    """tcp_init_sender(): SYN/ACK answering a SYN, or a SYN from the reply side."""
    sender.td_end = sender.td_maxend = end
    sender.td_maxwin = win or 1
    tcp_options(key, sender)
    # RFC 1323: scaling only when both sides sent the option.
    if direction == 1 and not (sender.flags & F_WINDOW_SCALE and receiver.flags & F_WINDOW_SCALE):
        sender.td_scale = 0
        receiver.td_scale = 0


def tcp_in_window(track: TcpTrack, direction: int, index: int, key: PacketKey,
                  be_liberal: bool) -> tuple[int, int]:
    """tcp_in_window(): (action, reason). Updates the window data only on ACCEPT."""
    sender, receiver = track.seen[direction], track.seen[1 - direction]
    flags = key.tcp_flags or 0
    seq = key.seq & MASK32
    ack = sack = key.ack & MASK32
    win_raw = key.window & 0xFFFF
    win = win_raw
    end = segment_end(key)

    def log_invalid(action: int, reason: str) -> tuple[int, int]:
        if sender.flags & F_BE_LIBERAL or be_liberal:
            return A_ACCEPT, 0
        return action, REASON_CODE[reason]

    if sender.td_maxwin == 0:
        if flags & SYN:
            _init_sender(sender, receiver, key, end, win, direction)
            if not flags & ACK:
                return A_ACCEPT, 0   # simultaneous open
        else:
            # Mid-connection: history lost, use the packet's data.
            sender.td_end = end
            swin = (win << sender.td_scale) & MASK32
            sender.td_maxwin = swin or 1
            sender.td_maxend = (end + sender.td_maxwin) & MASK32
            if receiver.td_maxwin == 0:
                receiver.td_end = receiver.td_maxend = sack
            elif sack == ((receiver.td_end + 1) & MASK32):
                receiver.td_end = (receiver.td_end + 1) & MASK32   # reply to a keepalive
    elif flags & SYN and after(end, sender.td_end) and track.state in (SYN_SENT, SYN_RECV):
        # RFC 793: reinitialised connection with a higher sequence number.
        _init_sender(sender, receiver, key, end, win, direction)
        if direction == 1 and not flags & ACK:
            return A_ACCEPT, 0

    if not flags & ACK:
        ack = sack = receiver.td_end
    elif flags & (ACK | RST) == (ACK | RST) and ack == 0:
        ack = sack = receiver.td_end   # broken stacks: RST+ACK with ack 0

    if flags & RST and seq == 0 and track.state == SYN_SENT:
        seq = end = sender.td_end     # RST answering a SYN

    maxackwin = max(sender.td_maxwin, MAXACKWINCONST)
    if not before(seq, (sender.td_maxend + 1) & MASK32):
        overshot = (end - sender.td_maxend + 1) & MASK32
        ack_ok = after(sack, (receiver.td_end - maxackwin - 1) & MASK32)
        in_recv_win = receiver.td_maxwin != 0 and after(
            end, (sender.td_end - receiver.td_maxwin - 1) & MASK32)
        if (in_recv_win and ack_ok and overshot <= receiver.td_maxwin
                and before(sack, (receiver.td_end + 1) & MASK32)):
            sender.td_end = end
            sender.flags |= F_DATA_UNACKNOWLEDGED
            return log_invalid(A_IGNORE, "bytes more than expected (window overshot)")
        return log_invalid(A_INVALID, "SEQ is over upper bound (over the window of the receiver)")

    if not before(sack, (receiver.td_end + 1) & MASK32):
        return log_invalid(A_INVALID, "ACK is over upper bound (ACKed data not seen yet)")
    if receiver.td_maxwin and not after(end, (sender.td_end - receiver.td_maxwin - 1) & MASK32):
        return log_invalid(A_IGNORE, "SEQ is under lower bound (already ACKed data retransmitted)")
    if not after(sack, (receiver.td_end - maxackwin - 1) & MASK32):
        return log_invalid(A_IGNORE, "ignored ACK under lower bound (possible overly delayed)")

    if not flags & SYN:
        win = (win << sender.td_scale) & MASK32
    swin = (win + (sack - ack)) & MASK32
    sender.td_maxwin = max(sender.td_maxwin, swin)
    if after(end, sender.td_end):
        sender.td_end = end
        sender.flags |= F_DATA_UNACKNOWLEDGED
    if flags & ACK:
        if not sender.flags & F_MAXACK_SET:
            sender.td_maxack = ack
            sender.flags |= F_MAXACK_SET
        elif after(ack, sender.td_maxack):
            sender.td_maxack = ack

    if receiver.td_maxwin != 0 and after(end, sender.td_maxend):
        receiver.td_maxwin = (receiver.td_maxwin + end - sender.td_maxend) & MASK32
    if after((sack + win) & MASK32, (receiver.td_maxend - 1) & MASK32):
        receiver.td_maxend = (sack + win) & MASK32
        if win == 0:
            receiver.td_maxend = (receiver.td_maxend + 1) & MASK32
    if ack == receiver.td_end:
        receiver.flags &= ~F_DATA_UNACKNOWLEDGED

    if index == ACK_SET:   # retransmission counting
        if (track.last_dir == direction and track.last_seq == seq and track.last_ack == ack
                and track.last_end == end and track.last_win == win_raw):
            track.retrans = min(track.retrans + 1, 255)
        else:
            track.last_dir, track.last_seq, track.last_ack = direction, seq, ack
            track.last_end, track.last_win, track.retrans = end, win_raw, 0
    return A_ACCEPT, 0


def _handle_invalid(track: TcpTrack, direction: int, index: int, assured: bool,
                    remaining: float, timeouts: tuple[float, ...]) -> float | None:
    """nf_tcp_handle_invalid(): shorten an assured entry hit by out-of-window FIN/RST both ways."""
    if not assured or index not in (RST_SET, FIN_SET):
        return None
    if track.last_dir != direction and track.last_index in (FIN_SET, RST_SET):
        if remaining < 120 or remaining <= timeouts[T_UNACK]:
            return None
        return timeouts[T_UNACK]
    track.last_index, track.last_dir = index, direction
    return None


def _ignore(track: TcpTrack, direction: int, index: int, key: PacketKey, old_state: int) -> None:
    """The sIG bookkeeping: annotate the packet so a later SYN/ACK or RST can resync."""
    track.last_index, track.last_dir = index, direction
    track.last_seq = key.seq & MASK32
    track.last_end = segment_end(key)
    track.last_win = key.window & 0xFFFF
    if index == SYN_SET and direction == 0:
        track.last_flags = track.last_wscale = 0
        if key.wscale is not None:
            track.last_flags |= F_WINDOW_SCALE
            track.last_wscale = min(key.wscale, TCP_MAX_WSCALE)
        if key.sack_perm:
            track.last_flags |= F_SACK_PERM
        if old_state == LAST_ACK:   # a challenge ACK may follow (RFC 5961)
            track.last_flags |= F_EXP_CHALLENGE_ACK
    if old_state == SYN_SENT and index == ACK_SET and direction == 1:
        track.last_ack = key.ack & MASK32


def _established(track: TcpTrack, assured: bool) -> bool:
    """nf_conntrack_tcp_established()."""
    return track.state == ESTABLISHED and assured


def tcp_packet(track: TcpTrack, direction: int, key: PacketKey, *, confirmed: bool,
               seen_reply: bool, assured: bool, remaining: float,
               timeouts: tuple[float, ...], loose: bool = True,
               be_liberal: bool = False) -> TcpOutcome:
    """nf_conntrack_tcp_packet(): update the entry's TCP state for one packet."""
    reason = tcp_error(key)
    if reason:
        return TcpOutcome(A_INVALID, reason)
    if not confirmed:
        reason = tcp_new(track, key, loose)
        if reason:
            return TcpOutcome(A_INVALID, reason)
    flags = key.tcp_flags or 0
    old_state = track.state
    index = conntrack_index(flags)
    new_state = TCP_CONNTRACKS[direction][index][old_state]
    skip_window = False

    if new_state == SYN_SENT and old_state >= TIME_WAIT:
        # RFC 1122 reopen from TIME_WAIT/CLOSE: kill and look up again if it was closed by us.
        if ((track.seen[direction].flags | track.seen[1 - direction].flags) & F_CLOSE_INIT
                or (track.last_dir == direction and track.last_index == RST_SET)):
            return TcpOutcome(A_REPEAT, REASON_CODE["reopen of closed connection"])
        new_state = S_IGNORE
    if new_state == S_IGNORE:
        if (index == SYNACK_SET and track.last_index == SYN_SET and track.last_dir != direction
                and (key.ack & MASK32) == track.last_end):
            # SYN/ACK answering a SYN we ignored: resync from the annotated values.
            old_state, new_state = SYN_SENT, SYN_RECV
            last = track.seen[track.last_dir]
            last.td_end = last.td_maxend = track.last_end
            last.td_maxwin = track.last_win or 1
            last.td_scale = track.last_wscale
            track.last_flags &= ~F_EXP_CHALLENGE_ACK
            last.flags = track.last_flags
            mine = track.seen[direction]
            mine.td_end = mine.td_maxend = mine.td_maxwin = mine.td_maxack = mine.td_scale = 0
            mine.flags &= F_BE_LIBERAL
        else:
            _ignore(track, direction, index, key, old_state)
            return TcpOutcome(A_IGNORE, REASON_CODE["packet ignored by state table"])
    elif new_state == S_INVALID:
        return TcpOutcome(A_INVALID, REASON_CODE["invalid: state table rejects packet"])
    elif new_state == TIME_WAIT:
        if (old_state == LAST_ACK and index == ACK_SET and track.last_dir != direction
                and track.last_index == SYN_SET and track.last_flags & F_EXP_CHALLENGE_ACK):
            track.last_flags &= ~F_EXP_CHALLENGE_ACK
            return TcpOutcome(A_IGNORE, REASON_CODE["challenge-ack ignored"])
    elif new_state == SYN_SENT2:
        track.last_flags |= F_SIMULTANEOUS_OPEN
    elif new_state == SYN_RECV:
        if direction == 1 and index == ACK_SET and track.last_flags & F_SIMULTANEOUS_OPEN:
            new_state = ESTABLISHED
    elif new_state == CLOSE and index == RST_SET:
        mode, new_state = _rst_branch(track, direction, key, old_state, new_state,
                                      seen_reply, assured)
        if mode == _RST_INVALID:
            return TcpOutcome(A_INVALID, REASON_CODE["invalid rst"])
        skip_window = mode == _RST_SKIP_WINDOW

    if not skip_window:
        action, reason = tcp_in_window(track, direction, index, key, be_liberal)
        if action == A_IGNORE:
            return TcpOutcome(A_IGNORE, reason)
        if action == A_INVALID:
            shrink = _handle_invalid(track, direction, index, assured, remaining, timeouts)
            return TcpOutcome(A_INVALID, reason, shrink_to=shrink)

    track.last_index, track.last_dir = index, direction
    track.state = new_state
    if old_state != new_state and new_state == FIN_WAIT:
        track.seen[direction].flags |= F_CLOSE_INIT
    timeout = _choose_timeout(track, index, new_state, timeouts)
    if not seen_reply:
        if flags & RST:
            return TcpOutcome(A_ACCEPT, timeout=timeout, kill=True)
        if index == SYN_SET and old_state == SYN_SENT:
            return TcpOutcome(A_ACCEPT)   # SYN retransmit does not renew the timeout
        if new_state == ESTABLISHED and timeout > timeouts[T_UNACK]:
            timeout = timeouts[T_UNACK]   # picked up mid-stream, not answered yet
        return TcpOutcome(A_ACCEPT, timeout=timeout)
    set_assured = (not assured and old_state in (SYN_RECV, ESTABLISHED)
                   and new_state == ESTABLISHED)
    return TcpOutcome(A_ACCEPT, timeout=timeout, assured=set_assured)


_RST_WINDOW, _RST_SKIP_WINDOW, _RST_INVALID = 0, 1, 2


def _rst_branch(track: TcpTrack, direction: int, key: PacketKey, old_state: int,
                new_state: int, seen_reply: bool, assured: bool) -> tuple[int, int]:
    """The TCP_CONNTRACK_CLOSE/RST case of tcp_packet: (mode, new_state).

    mode: run tcp_in_window, skip it (``goto in_window``), or INVALID ("invalid rst").
    """
    if old_state in (FIN_WAIT, LAST_ACK, TIME_WAIT, CLOSE, CLOSE_WAIT):   # tcp_can_early_drop
        return _RST_SKIP_WINDOW, new_state
    peer = track.seen[1 - direction]
    seq = key.seq & MASK32
    if peer.flags & F_MAXACK_SET and track.last_index != SYN_SET:
        established = _established(track, assured)
        if seq == 0 and not established:
            return _RST_WINDOW, new_state
        if before(seq, peer.td_maxack):
            return _RST_INVALID, new_state
        if not established or seq == peer.td_maxack:
            return _RST_WINDOW, new_state
        if track.last_index == ACK_SET and track.last_dir == direction and seq == track.last_end:
            return _RST_WINDOW, new_state   # RST ending a data train
        new_state = old_state   # inexact RST: keep state to allow a challenge ACK
    ack = key.ack & MASK32
    if (((seen_reply and track.last_index == SYN_SET)
         or (not assured and track.last_index == ACK_SET)) and ack == track.last_end):
        return _RST_SKIP_WINDOW, new_state   # RST to a SYN/ACK we let through (a, c)
    if (old_state == SYN_SENT and track.last_index == ACK_SET and track.last_dir == 1
            and seq == track.last_ack):
        return _RST_SKIP_WINDOW, new_state   # RST answering a challenge ACK
    return _RST_WINDOW, new_state


def _choose_timeout(track: TcpTrack, index: int, new_state: int,
                    timeouts: tuple[float, ...]) -> float:
    """The timeout ladder at the end of nf_conntrack_tcp_packet()."""
    if track.retrans >= TCP_MAX_RETRANS and timeouts[new_state] > timeouts[T_RETRANS]:
        return timeouts[T_RETRANS]
    if index == RST_SET:
        return timeouts[CLOSE]
    unacked = (track.seen[0].flags | track.seen[1].flags) & F_DATA_UNACKNOWLEDGED
    if unacked and timeouts[new_state] > timeouts[T_UNACK]:
        return timeouts[T_UNACK]
    if track.last_win == 0 and timeouts[new_state] > timeouts[T_RETRANS]:
        return timeouts[T_RETRANS]
    return timeouts[new_state]
