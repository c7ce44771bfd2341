"""The sans-I/O delivery state (``dtmfgraph.notify.receivers``): receiver keys, the stable id,
one backoff per receiver (POSTs that fail together count once), reset on an answer."""

from __future__ import annotations

from dtmfgraph.notify.receivers import Receiver, RetryPolicy, delivery_id, receiver_of


def test_receiver_is_the_callback_origin() -> None:
    assert receiver_of("https://Bot.Example.com:8443/cb?x=1") == "https://bot.example.com:8443"
    assert receiver_of("HTTP://bot.example.com/a") == receiver_of("http://bot.example.com/b")
    assert receiver_of("http://bot.example.com/a") != receiver_of("http://bot.example.com:81/a")
    for bad in ("http://[::1/cb", "not a url", "http://:80/x", "http://h:99999/x"):
        assert receiver_of(bad) == bad  # no origin: on its own


def test_delivery_id_is_stable_and_distinct() -> None:
    assert delivery_id("c1", 7) == delivery_id("c1", 7)
    assert len({delivery_id("c1", 7), delivery_id("c1", 8), delivery_id("c2", 7)}) == 3


def test_one_backoff_per_receiver_reset_by_an_answer() -> None:
    policy = RetryPolicy(retry_for_s=100.0, backoff_initial_s=1.0, backoff_max_s=4.0)
    r = Receiver("http://h")
    first = r.failed(began=10.0, now=11.0, error="HTTP 503", policy=policy)
    assert 12.0 <= first <= 12.1 and r.failures == 1
    # a POST that began before that failure was counted fails too: no second step
    assert r.failed(began=10.5, now=11.2, error="HTTP 503", policy=policy) == first
    assert r.failures == 1 and r.backing_off(11.5) and not r.backing_off(12.2)
    for t in (13.0, 20.0, 40.0):  # doubling, capped
        r.failed(began=t, now=t, error="timeout", policy=policy)
    assert r.failures == 4 and 44.0 <= r.retry_at <= 44.4
    assert r.answered() and (r.failures, r.retry_at, r.last_error) == (0, 0.0, "")
    assert not r.answered()  # it was not failing any more
    assert policy.deadline(5.0) == 105.0
