"""The keypad table: Q.23 frequencies, Graph tone names and RFC 4733 event codes."""

import pytest

from dtmfgraph.tones import (
    ALL_KEYS,
    FLASH,
    KEYS,
    UnknownKeyError,
    by_event,
    by_tone,
    key_info,
    parse_keys,
)
from dtmfgraph.tones.keypad import HIGH_HZ, LOW_HZ

Q23 = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
GRAPH_TONES = [f"tone{i}" for i in range(10)] + ["star", "pound", "a", "b", "c", "d", "flash"]


def test_q23_frequencies_are_pinned() -> None:
    assert LOW_HZ == (697, 770, 852, 941)
    assert HIGH_HZ == (1209, 1336, 1477, 1633)  # not 1447 (an old pjmedia bug)
    assert {k: (e.low_hz, e.high_hz) for k, e in KEYS.items()} == Q23


def test_sixteen_keys_in_event_order_and_flash_separate() -> None:
    assert "".join(KEYS) == "0123456789*#ABCD"
    assert [e.event for e in KEYS.values()] == list(range(16))
    assert FLASH.event == 16 and FLASH.tone == "flash" and not FLASH.has_tones
    assert len(ALL_KEYS) == 17


@pytest.mark.parametrize("event", range(17))
def test_graph_tone_name_and_event_code_agree(event: int) -> None:
    entry = by_event(event)
    assert entry.tone == GRAPH_TONES[event]
    assert by_tone(entry.tone) is entry
    assert key_info(entry.key) is entry


def test_lookups_are_case_insensitive_for_letters() -> None:
    assert key_info("a").key == "A"
    assert key_info("f") is FLASH
    assert [k.key for k in parse_keys("1a#*d")] == ["1", "A", "#", "*", "D"]


@pytest.mark.parametrize("bad", ["x", "E", "", " ", "tone1"])
def test_unknown_keys_raise_a_clear_error(bad: str) -> None:
    with pytest.raises(UnknownKeyError, match=r"unknown DTMF key|empty"):
        parse_keys(bad) if len(bad) != 1 else key_info(bad)


def test_unknown_tone_and_event() -> None:
    with pytest.raises(UnknownKeyError, match="Graph tone"):
        by_tone("tone10")
    with pytest.raises(UnknownKeyError, match=r"0\.\.16"):
        by_event(17)
