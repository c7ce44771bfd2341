"""Strict RTP source check (``SourceGuard``), sans-I/O: addresses and packets in, verdicts out."""

from __future__ import annotations

import pytest

from dtmfgraph.rtp import PROBATION, RtpPacket, SourceGuard, Verdict
from dtmfgraph.rtp.source import MAX_MOVE_JUMP, MOVE_SILENCE_S

FAR = ("192.0.2.10", 40000)  # the address the far end's SDP gives
NAT = ("198.51.100.7", 61000)  # where its packets really come from, behind NAT
STRANGER = ("203.0.113.66", 5004)
OTHER_SSRC = 0x6666  # a stranger does not know the call's SSRC


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return RtpPacket(0, seq & 0xFFFF, 160 * seq, ssrc, b"\xff" * 160).serialize()


def feed(
    guard: SourceGuard, addr: tuple[str, int], seqs: range, ssrc: int = 0x1234
) -> list[Verdict]:
    return [guard.admit(rtp(s, ssrc), addr) for s in seqs]


def test_the_sdp_address_is_taken_at_once_and_then_locks_out_everyone_else() -> None:
    guard = SourceGuard(FAR)
    assert guard.admit(rtp(1), FAR) is Verdict.ACCEPT
    assert guard.source == FAR
    # a stranger cannot take over, however long and well-formed its stream
    assert set(feed(guard, STRANGER, range(100, 120), OTHER_SSRC)) == {Verdict.DROP}
    assert guard.dropped == 20 and guard.learned == 0
    assert guard.admit(rtp(2), FAR) is Verdict.ACCEPT


def test_a_peer_behind_nat_is_learned_after_probation_when_its_sdp_address_is_silent() -> None:
    guard = SourceGuard(FAR)
    verdicts = feed(guard, NAT, range(7, 7 + PROBATION + 2))
    assert verdicts[: PROBATION - 1] == [Verdict.PROBATION] * (PROBATION - 1)
    assert verdicts[PROBATION - 1] is Verdict.LEARNED
    assert verdicts[PROBATION:] == [Verdict.ACCEPT] * 2
    assert guard.source == NAT and guard.learned == 1
    assert guard.on_trial == PROBATION - 1 and guard.dropped == 0
    # locked to the learned address: now the SDP address is a stranger too
    assert guard.admit(rtp(1), FAR) is Verdict.DROP
    assert set(feed(guard, STRANGER, range(50, 60), OTHER_SSRC)) == {Verdict.DROP}


def test_probation_needs_consecutive_sequence_numbers_of_one_ssrc_from_one_address() -> None:
    guard = SourceGuard(FAR)
    # gaps, an SSRC change, or another address in between start the count again
    assert set(feed(guard, NAT, range(0, 20, 2))) == {Verdict.PROBATION}
    for seq in range(10):
        assert guard.admit(rtp(seq, ssrc=seq), NAT) is Verdict.PROBATION
    for seq in range(10):
        assert guard.admit(rtp(seq), NAT if seq % 2 else STRANGER) is Verdict.PROBATION
    assert guard.source is None and guard.on_trial == 30
    # sequence numbers wrap
    assert feed(guard, NAT, range(0xFFFF - 1, 0xFFFF - 1 + PROBATION))[-1] is Verdict.LEARNED


def test_datagrams_that_are_not_rtp_never_earn_trust_nor_break_a_probation() -> None:
    guard = SourceGuard(FAR)
    assert guard.admit(rtp(1), NAT) is Verdict.PROBATION
    assert guard.admit(b"\x00" * 40, NAT) is Verdict.DROP  # version 0: not RTP (STUN, junk)
    assert guard.admit(b"\x80", NAT) is Verdict.DROP  # too short
    assert feed(guard, NAT, range(2, PROBATION + 1))[-1] is Verdict.LEARNED


def test_a_new_sdp_address_starts_over() -> None:
    guard = SourceGuard(FAR)
    guard.admit(rtp(1), FAR)
    moved = ("192.0.2.11", 40002)
    guard.expect(moved)  # re-INVITE
    assert guard.source is None and guard.expected == moved
    assert guard.admit(rtp(2), FAR) is Verdict.PROBATION  # the old address is not trusted...
    assert guard.admit(rtp(3), moved) is Verdict.ACCEPT  # ...the new one is taken at once
    assert guard.source == moved


def test_without_an_sdp_address_the_first_source_through_probation_is_learned() -> None:
    guard = SourceGuard()
    assert feed(guard, NAT, range(PROBATION))[-1] is Verdict.LEARNED
    assert guard.admit(rtp(1), STRANGER) is Verdict.DROP


def test_ipv6_addresses_compare_in_canonical_form_and_recvfrom_extras_are_ignored() -> None:
    guard = SourceGuard(("0:0:0:0:0:0:0:1", 4000))
    assert guard.expected == ("::1", 4000)
    assert guard.admit(rtp(1), ("::1", 4000, 0, 0)) is Verdict.ACCEPT
    assert guard.source == ("::1", 4000)
    assert guard.admit(rtp(2), ("::1", 4000, 0, 0)) is Verdict.ACCEPT
    assert guard.admit(rtp(3, OTHER_SSRC), ("::1", 4001, 0, 0)) is Verdict.DROP


def test_not_strict_takes_everyone_and_latches_the_first_sender_without_an_sdp_address() -> None:
    guard = SourceGuard(FAR, strict=False)
    assert {guard.admit(rtp(s), a) for s, a in enumerate((FAR, STRANGER, NAT))} == {Verdict.ACCEPT}
    latch = SourceGuard(strict=False)
    assert latch.admit(b"anything", STRANGER) is Verdict.LEARNED
    assert latch.admit(rtp(1), NAT) is Verdict.ACCEPT
    assert latch.source == STRANGER and latch.dropped == 0


def test_probation_must_be_at_least_one_packet() -> None:
    with pytest.raises(ValueError, match="probation"):
        SourceGuard(probation=0)
    one = SourceGuard(FAR, probation=1)
    assert one.admit(rtp(1), NAT) is Verdict.LEARNED


def test_the_locked_stream_moving_to_a_new_address_is_followed() -> None:
    """A NAT rebinding mid-call: the far end's packets, same SSRC and sequence, now come from
    another port. After the probation the stream is followed there, and the old address is a
    stranger."""
    guard = SourceGuard(FAR)
    assert set(feed(guard, FAR, range(1, 50))) == {Verdict.ACCEPT}
    rebound = (FAR[0], 40100)
    verdicts = feed(guard, rebound, range(50, 50 + PROBATION + 1))
    assert verdicts == [Verdict.PROBATION] * (PROBATION - 1) + [Verdict.LEARNED, Verdict.ACCEPT]
    assert guard.source == rebound and guard.moved == 1 and guard.learned == 1
    assert guard.dropped == 0 and guard.on_trial == PROBATION - 1
    assert guard.admit(rtp(52), FAR) is Verdict.DROP  # the old address is not heard any more
    assert guard.admit(rtp(60), FAR) is Verdict.PROBATION  # (unless the stream moves back)
    # and again, across a sequence wrap, after packets were lost on the way
    guard2 = SourceGuard(FAR)
    feed(guard2, FAR, range(0xFFF0, 0xFFFA))
    assert feed(guard2, NAT, range(0x10005, 0x10005 + PROBATION))[-1] is Verdict.LEARNED
    assert guard2.source == NAT and guard2.moved == 1


def test_a_move_needs_the_streams_ssrc_a_sequence_ahead_and_the_old_address_gone_quiet() -> None:
    guard = SourceGuard(FAR)
    feed(guard, FAR, range(100, 110))
    # another SSRC: a stranger, however long it goes on
    assert set(feed(guard, NAT, range(110, 130), OTHER_SSRC)) == {Verdict.DROP}
    # the stream's SSRC but sequence numbers behind (a replay of old packets)
    assert set(feed(guard, NAT, range(50, 60))) == {Verdict.DROP}
    # a copy of the stream while the old address still sends (a tap replaying it): never moves
    for seq in range(110, 140):
        assert guard.admit(rtp(seq), NAT) is Verdict.PROBATION
        assert guard.admit(rtp(seq), FAR) is Verdict.ACCEPT
    assert guard.source == FAR and guard.moved == 0
    assert guard.dropped == 30
    # RTCP on the RTP port (rtcp-mux) does not count as the stream
    rtcp = bytes([0x80, 200]) + bytes(26)
    assert guard.admit(rtcp, NAT) is Verdict.DROP
    # not strict: no locking, so nothing to move
    loose = SourceGuard(FAR, strict=False)
    feed(loose, FAR, range(5))
    assert set(feed(loose, NAT, range(5, 20))) == {Verdict.ACCEPT} and loose.moved == 0


def test_a_stranger_knowing_the_ssrc_cannot_jump_far_ahead_even_in_a_silence() -> None:
    """The attack of issue 14: a stranger on the far end's host, which learnt the stream's
    SSRC and highest sequence number, sends in-order packets 32,000 ahead while the far end
    is quiet. Before, 4 of them moved the stream and the real far end was locked out for
    ~400 s; now a move must continue the stream closely (MAX_MOVE_JUMP), so it stays put and
    the far end is heard again when it speaks."""
    guard = SourceGuard(FAR)
    for seq in range(100, 110):
        assert guard.admit(rtp(seq), FAR, seq * 0.02) is Verdict.ACCEPT
    thief = (FAR[0], FAR[1] + 2)
    at = 10.0  # long after the far end's last packet
    verdicts = {guard.admit(rtp(seq), thief, at + seq * 0.02) for seq in range(32110, 32150)}
    assert verdicts == {Verdict.DROP}
    assert guard.source == FAR and guard.moved == 0
    assert guard.admit(rtp(110), FAR, 12.0) is Verdict.ACCEPT


def test_a_move_waits_for_a_real_silence_of_the_old_address() -> None:
    """A rebinding is followed only once the old address has been silent MOVE_SILENCE_S."""
    guard = SourceGuard(FAR)
    for seq in range(1, 11):
        guard.admit(rtp(seq), FAR, seq * 0.02)
    last = 10 * 0.02
    verdicts = [guard.admit(rtp(seq), NAT, last + (seq - 10) * 0.02) for seq in range(11, 21)]
    first = verdicts.index(Verdict.LEARNED)
    assert set(verdicts[:first]) == {Verdict.PROBATION}
    assert first + 1 >= PROBATION and (first + 1) * 0.02 >= MOVE_SILENCE_S - 1e-9
    assert (first + 1) * 0.02 < MOVE_SILENCE_S + 0.02 + 1e-9  # no later than that
    assert guard.source == NAT and guard.moved == 1


def test_a_move_must_start_close_to_the_stream() -> None:
    guard = SourceGuard(FAR)
    feed(guard, FAR, range(1, 11))
    assert set(feed(guard, NAT, range(10 + MAX_MOVE_JUMP + 1, 10 + MAX_MOVE_JUMP + 20))) == {
        Verdict.DROP
    }
    assert feed(guard, NAT, range(10 + MAX_MOVE_JUMP, 10 + MAX_MOVE_JUMP + PROBATION))[-1] is (
        Verdict.LEARNED
    )
