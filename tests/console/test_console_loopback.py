"""The console in a real browser against ``dtmfgraph serve --media loopback`` run as a user runs
it: log in from the printed link, place a call, press keys on the dev phone and as the far end,
see them live, see the notification in the built-in inbox, stay out of another app's calls,
refuse a POST without its CSRF token; every page passes axe and is kept as a screenshot."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from dtmfgraph.console.media import CHIME_NOTES
from dtmfgraph.tones.wav import encode_wav, parse_wav

from ..api.harness import free_port
from .browser import browser, check_page, fetch_json, ready, wait_for

__all__ = ["browser"]

LOGIN = re.compile(r"(http://\S+/console/login\?token=\S+)")


class Served:
    def __init__(self, base: str, login: str, data_dir: Path, log: Path) -> None:
        self.base, self.login, self.data_dir, self.log = base, login, data_dir, log

    def token(self, app: str) -> str:
        args = ["token", "--app", app, "--data-dir", str(self.data_dir)]
        done = subprocess.run(
            [sys.executable, "-m", "dtmfgraph", *args],
            capture_output=True, text=True, timeout=60, check=True, env=_env(),
        )  # fmt: skip
        return done.stdout.strip()

    def far(self, far: dict[str, Any]) -> str:
        """The loopback far end's own routes (``/play``, ``/played``, ...)."""
        return f"{self.base}/_loopback/calls/{far['index']}"

    def far_ends(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = httpx.get(f"{self.base}/_loopback/calls", timeout=10).json()
        return out


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DTMFGRAPH_")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = tmp / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dtmfgraph", "serve", "--media", "loopback", "--port", str(port),
             "--data-dir", str(tmp), "--loopback-speed", "0.5"],
            stdout=subprocess.DEVNULL, stderr=err, env=_env(),
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        login = wait_for(lambda: LOGIN.search(log.read_text()), 60, "the console link").group(1)
        wait_for(lambda: httpx.get(f"{base}/console/login", timeout=2).status_code == 200, 30)
        yield Served(base, login, tmp, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("serve did not stop within 30 s of SIGTERM") from None


def _keys(driver: WebDriver, kind: str) -> list[tuple[str, float]]:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#keytable tr[data-kind="{kind}"]')
    return [
        (r.find_element(By.CSS_SELECTOR, "td.k").text, float(r.get_attribute("data-at") or 0))
        for r in rows
    ]


def _status(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "phone-result").text


def _done(driver: WebDriver, before: str) -> bool:
    """The dev phone's status line names another operation than ``before``, completed."""
    now = _status(driver)
    return now.split(" ")[:2] != before.split(" ")[:2] and "completed" in now


def _timeline(driver: WebDriver, kind: str) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, f'#timeline tr[data-kind="{kind}"]')


def _peaks(samples: npt.NDArray[Any], rate: int) -> list[int]:
    """The strong frequencies (Hz, rounded) in a sound."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    hz = np.fft.rfftfreq(len(samples), 1 / rate)
    strong = spectrum > spectrum.max() / 4
    tops = strong & (spectrum >= np.roll(spectrum, 1)) & (spectrum >= np.roll(spectrum, -1))
    return sorted({round(float(f)) for f in hz[tops]})


def _voice(seconds: float) -> npt.NDArray[np.int16]:
    """A vowel-like sound (harmonics of 140 Hz, no DTMF pair) for the caller to say."""
    t = np.arange(round(8000 * seconds)) / 8000
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    return np.rint(6000 * x / np.max(np.abs(x))).astype(np.int16)


def test_console_end_to_end(browser: WebDriver, served: Served) -> None:
    driver = browser
    # the link serve printed logs in once, then is spent
    driver.get(served.login)
    ready(driver)
    assert "/console/login" not in driver.current_url
    check_page(driver, "01-calls-empty")
    spent = httpx.get(served.login, timeout=10, follow_redirects=False)
    assert spent.status_code == 401 and "not valid" in spent.text

    # place a loopback call from the console; its callbacks go to the built-in inbox
    callback = driver.find_element(By.ID, "callback")
    assert callback.get_attribute("value") == f"{served.base}/inbox/console"
    driver.find_element(By.CSS_SELECTOR, "#place button[type=submit]").click()
    wait_for(lambda: "/console/calls/" in driver.current_url, what="the call page")
    ready(driver)
    call_id = driver.current_url.rsplit("/", 1)[1]
    wait_for(lambda: driver.find_element(By.ID, "state").text == "established", what="established")
    driver.execute_script("window.loadedOnce = 'yes';")  # gone if the page reloads

    # press 1 2 # on the dev phone: the far end hears them; the page shows each key sent, with
    # the time it left, in order, without a reload
    for key in ("1", "2", "#"):
        driver.find_element(By.CSS_SELECTOR, f'button.key[data-key="{key}"]').click()
    [far] = wait_for(
        lambda: [c for c in served.far_ends() if c["heard"] == "12#"] or None, what="12# heard"
    )
    heard_at = time.monotonic()
    sent = wait_for(lambda: (k := _keys(driver, "key-sent")) and len(k) == 3 and k, what="3 keys")
    shown_after = time.monotonic() - heard_at
    assert [k for k, _ in sent] == ["1", "2", "#"]
    assert sent[0][1] < sent[1][1] < sent[2][1]
    assert driver.execute_script("return window.loadedOnce") == "yes"
    print(f"keys shown {shown_after:.3f} s after the far end had them all")

    # the far end presses 5 as the caller: we hear it, live
    driver.find_element(By.CSS_SELECTOR, 'button.farkey[data-key="5"]').click()
    wait_for(lambda: [k for k, _ in _keys(driver, "key-heard")] == ["5"], what="5 heard")
    assert far["methods"] == ["rfc4733"]

    # the dev phone plays the sample prompt (playPrompt): the far end hears the chime's notes
    uri = driver.find_element(By.ID, "prompt-uri").get_attribute("value")
    assert uri == f"{served.base}/console/prompts/chime.wav"
    before = _status(driver)
    driver.find_element(By.CSS_SELECTOR, "#prompt button[type=submit]").click()
    wait_for(lambda: _done(driver, before), what="the prompt's operation to complete")
    played = parse_wav(httpx.get(f"{served.far(far)}/played", timeout=10).content)
    peaks = _peaks(played.samples[0], played.rate)
    assert len(peaks) == 3, peaks
    assert all(abs(p - n) <= 3 for p, (n, _) in zip(peaks, CHIME_NOTES, strict=True)), peaks
    wait_for(lambda: _timeline(driver, "prompt"), what="the prompt on the timeline")

    # ... and records a response: the caller speaks, then falls silent (the recorder ends it)
    before = _status(driver)
    driver.find_element(By.ID, "record").click()
    wait_for(lambda: _status(driver) != before, what="the recorder to start")
    before = _status(driver)
    assert "running" in before, before
    speech = encode_wav(_voice(1.5), 8000)
    assert httpx.post(f"{served.far(far)}/play", content=speech, timeout=10).status_code == 200
    wait_for(
        lambda: (
            _status(driver) == f"{before.removesuffix(' running')} completed (maxSilenceTimeout)"
        ),
        what="the recording's operation to complete",
    )
    assert "(maxSilenceTimeout)" in _status(driver), _status(driver)
    [row] = wait_for(lambda: _timeline(driver, "recording"), what="the recording on the timeline")
    assert "maxSilenceTimeout" in row.text
    src = row.find_element(By.TAG_NAME, "audio").get_attribute("src") or ""
    got = fetch_json(driver, src.removeprefix(served.base))
    assert got["status"] == 200 and got["body"].startswith("RIFF"), got["status"]

    # the bot mutes itself through the API: the timeline and the notifications say who is on
    token = served.token("dtmfgraph-dev-app")
    muted = httpx.post(
        f"{served.base}/v1.0/communications/calls/{call_id}/mute",
        headers={"Authorization": f"Bearer {token}"}, json={}, timeout=10,
    )  # fmt: skip
    assert muted.status_code == 200, muted.text
    [roster] = wait_for(lambda: _timeline(driver, "roster"), what="the roster change")
    assert "dtmfgraph-dev-app (muted), sendReceive" in roster.text, roster.text
    wait_for(
        lambda: "updated participants" in driver.find_element(By.ID, "notes").text,
        what="the roster's notification",
    )
    check_page(driver, "02-call-loopback")

    # the inbox shows the sendDtmfTonesOperation's deleted notification, its token verified
    driver.get(f"{served.base}/console/inbox")
    ready(driver)

    def deleted_op() -> Any:
        for row in driver.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr"):
            cells = row.find_elements(By.TAG_NAME, "td")
            if "deleted #microsoft.graph.sendDtmfTonesOperation completed" in cells[3].text:
                return cells
        return None

    cells = wait_for(deleted_op, what="the operation's deleted notification")
    assert cells[2].text == "✓ verified"
    assert cells[4].text == call_id[:8]
    cells[0].find_element(By.TAG_NAME, "button").click()
    body = json.loads(driver.find_element(By.ID, "body").text)
    ends = [n["resourceData"].get("completionReason") for n in body["value"]]  # one or more
    assert "completedSuccessfully" in ends, body
    check_page(driver, "03-inbox")

    # a POST without the CSRF token is refused, one with it is taken
    no_csrf = fetch_json(driver, f"/console/api/calls/{call_id}/far/hold", "POST")
    assert no_csrf["status"] == 403 and "CSRF" in no_csrf["body"]
    csrf = driver.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")
    held = fetch_json(
        driver, f"/console/api/calls/{call_id}/far/hold", "POST", {"X-CSRF-Token": csrf or ""}
    )
    assert held["status"] == 204

    # the call page lists each notification's delivery attempts: the inbox said 202
    driver.get(f"{served.base}/console/calls/{call_id}")
    ready(driver)
    attempts = wait_for(
        lambda: [
            [c.text for c in r.find_elements(By.TAG_NAME, "td")]
            for r in driver.find_elements(By.CSS_SELECTOR, "#notes tbody tr")
        ],
        what="delivery attempts",
    )
    assert all(a[3] == "202" and a[4].endswith(" ms") for a in attempts), attempts
    assert any("deleted sendDtmfTonesOperation" in a[1] for a in attempts), attempts

    # hang up from the dev phone
    driver.find_element(By.ID, "hangup").click()
    wait_for(lambda: driver.find_element(By.ID, "state").text == "terminated", what="terminated")

    # the calls list changes live: a simulated incoming call appears, is answered, ends
    driver.get(f"{served.base}/console")
    ready(driver)
    driver.execute_script("window.loadedOnce = 'yes';")
    before = len(driver.find_elements(By.CSS_SELECTOR, "#calls tbody tr"))
    driver.find_element(By.CSS_SELECTOR, "#incoming button[type=submit]").click()
    row = wait_for(
        lambda: (
            (rows := driver.find_elements(By.CSS_SELECTOR, "#calls tbody tr"))
            and len(rows) == before + 1
            and rows[0]
        ),
        what="the incoming call's row",
    )
    assert "incoming" in row.text and "+14255550100" in row.text
    assert driver.execute_script("return window.loadedOnce") == "yes"
    row.find_element(By.TAG_NAME, "a").click()
    ready(driver)
    driver.find_element(By.ID, "answer").click()
    wait_for(lambda: driver.find_element(By.ID, "state").text == "established", what="answered")
    Select(driver.find_element(By.ID, "far-method")).select_by_value("sipinfo")
    driver.find_element(By.CSS_SELECTOR, 'button.farkey[data-key="9"]').click()
    wait_for(lambda: [k for k, _ in _keys(driver, "key-heard")] == ["9"], what="9 heard")
    driver.find_element(By.ID, "far-hangup").click()
    wait_for(lambda: driver.find_element(By.ID, "state").text == "terminated", what="far hangup")
    driver.get(f"{served.base}/console")  # the list names the methods heard too
    ready(driver)
    first = driver.find_elements(By.CSS_SELECTOR, "#calls tbody tr td")
    assert first[3].text == "terminated" and first[5].text == "sipinfo", [c.text for c in first]

    # another app's login: the call is a 404 page, the list does not show it
    driver.get(f"{served.base}/console/login")
    check_page(driver, "04-login")
    driver.find_element(By.ID, "token").send_keys(served.token("another-app"))
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    ready(driver)
    assert driver.find_elements(By.ID, "calls")
    assert call_id not in driver.page_source
    driver.get(f"{served.base}/console/calls/{call_id}")
    assert driver.find_element(By.TAG_NAME, "h1").text == "404 Not found"
    check_page(driver, "05-other-app-404")
    api = fetch_json(driver, f"/console/api/calls/{call_id}")
    assert api["status"] == 404
