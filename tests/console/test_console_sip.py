"""The console on a real SIP call with baresip: the ladder shows the dialog's messages in order,
baresip's in-band keys appear as heard keys, and the keys the spectrogram marks (the detector run
on the audio kept for the picture) sit where the call's own detector heard them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from dtmfgraph.api import create_app
from dtmfgraph.service import ROLE_INITIATE, ROLE_MEDIA, Principal
from dtmfgraph.tones import synthesize
from dtmfgraph.tones.wav import encode_wav

from ..api.harness import APP, TENANT, free_port, make_settings, serve_in_task, stop
from ..judges.baresip import Baresip, require_baresip
from .browser import ROOT, browser, check_page, fetch_json, ready, wait_for

__all__ = ["browser"]

KEYS = "159"


@contextlib.asynccontextmanager
async def sip_service(tmp: Path) -> AsyncIterator[Any]:
    settings = make_settings(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'graph.sqlite3'}",
        free_port(),
        media="sip",
        sip_host="127.0.0.1",
        sip_port=0,
        rtcp_interval_s=0.5,  # our reports often; baresip's first comes after ~5 s
    )
    app = create_app(settings)
    server, task = await serve_in_task(app, settings.port)
    try:
        yield app
    finally:
        app.state.console.journal.hub.close()
        await stop(server, task)


def ladder(driver: WebDriver) -> list[tuple[str, str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#ladder > li")
    return [(r.get_attribute("data-dir") or "", r.get_attribute("data-label") or "") for r in rows]


async def test_a_baresip_call_in_the_console(tmp_path: Path, browser: WebDriver) -> None:
    require_baresip()
    prompt = np.concatenate(
        [np.zeros(8000, np.int16), synthesize(KEYS, tone_ms=120, gap_ms=120, level_dbm0=-12.0),
         np.zeros(8000 * 40, np.int16)]
    )  # fmt: skip
    source = tmp_path / "prompt.wav"
    source.write_bytes(encode_wav(prompt, 8000))
    async with (
        sip_service(tmp_path / "svc") as app,
        Baresip(tmp_path / "bs", source=source) as bs,
    ):
        base = app.state.settings.effective_base_url()
        who = Principal(TENANT, APP, frozenset({ROLE_INITIATE, ROLE_MEDIA}))
        login = f"{base}/console/login?token={app.state.console.auth.login_link(who)}"
        # selenium blocks: drive the browser from a thread while this loop serves the pages
        await asyncio.to_thread(drive, browser, login, bs.uri)


def drive(driver: WebDriver, login: str, uri: str) -> None:
    driver.get(login)
    ready(driver)
    target = driver.find_element(By.ID, "target")
    target.clear()
    target.send_keys(uri)
    driver.find_element(By.CSS_SELECTOR, "#place button[type=submit]").click()
    wait_for(lambda: "/console/calls/" in driver.current_url, what="the call page")
    ready(driver)
    call_id = driver.current_url.rsplit("/", 1)[1]
    wait_for(lambda: driver.find_element(By.ID, "state").text == "established", 20)

    # baresip's in-band keys are heard, live, with their level
    def heard() -> list[list[str]] | None:
        rows = driver.find_elements(By.CSS_SELECTOR, '#keytable tr[data-kind="key-heard"]')
        cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        return cells if len(cells) >= len(KEYS) else None

    rows = wait_for(heard, 20, "baresip's keys")
    assert [r[2] for r in rows] == list(KEYS)
    assert {r[3] for r in rows} == {"inband"}
    levels = [float(r[4].split()[0]) for r in rows]
    assert all(-16.0 < lv < -8.0 for lv in levels), levels  # sent at -12 dBm0 per tone

    # the spectrogram's data: the detector on the audio kept marks the same keys where the
    # call's detector heard them (within two frames)
    driver.execute_script("window.dtmfgraphSpectrogram = null")  # the one drawn at page load
    driver.find_element(By.ID, "spec-load").click()
    spec = wait_for(
        lambda: driver.execute_script("return window.dtmfgraphSpectrogram"), what="spectrogram"
    )
    assert "".join(k["key"] for k in spec["keys"]) == KEYS
    detail = fetch_json(driver, f"/console/api/calls/{call_id}")
    assert detail["status"] == 200
    entries = json.loads(detail["body"])["entries"]
    heard_at = [e["at"] for e in entries if e["kind"] == "key-heard"]
    for mark, at in zip(spec["keys"], heard_at, strict=True):
        assert abs(mark["start"] - at) < 0.045, (mark, at)
        assert (mark["low"], mark["high"]) in ((697.0, 1209.0), (770.0, 1336.0), (852.0, 1477.0))
    assert spec["columns"] > 100 and spec["bins"] == 160

    # our side: an in-band 7 from the dev phone is in the audio we sent, where it left
    Select(driver.find_element(By.ID, "method")).select_by_value("inband")
    driver.find_element(By.CSS_SELECTOR, 'button.key[data-key="7"]').click()
    sent = wait_for(
        lambda: [r.get_attribute("data-at") for r in driver.find_elements(
            By.CSS_SELECTOR, '#keytable tr[data-kind="key-sent"]')],
        what="7 sent",
    )  # fmt: skip
    time.sleep(0.3)  # the tone lasts 100 ms
    driver.execute_script("window.dtmfgraphSpectrogram = null")
    Select(driver.find_element(By.ID, "spec-side")).select_by_value("ours")
    ours = wait_for(
        lambda: driver.execute_script("return window.dtmfgraphSpectrogram"), what="our side"
    )
    [mark] = ours["keys"]
    assert (mark["key"], mark["low"], mark["high"]) == ("7", 852.0, 1209.0)
    # on the media clock (RTP timestamps) vs when the pacer sent it: apart by its lateness
    assert abs(mark["start"] - float(sent[0] or 0)) < 0.1, (mark, sent)
    driver.execute_script("window.dtmfgraphSpectrogram = null")
    Select(driver.find_element(By.ID, "spec-side")).select_by_value("far")
    far = wait_for(lambda: driver.execute_script("return window.dtmfgraphSpectrogram"), what="far")
    assert "".join(k["key"] for k in far["keys"]) == KEYS
    check_page(driver, "10-call-baresip")

    # RTCP: baresip's first report (after ~5 s) shows its round trip and losses
    rtcp_rows = '#timeline tr[data-kind="rtcp"]'
    rtcp = wait_for(
        lambda: [r.text for r in driver.find_elements(By.CSS_SELECTOR, rtcp_rows)], 20, "RTCP"
    )
    assert "round trip" in rtcp[0] and "far end lost 0 of ours" in rtcp[0], rtcp

    # hang up from the console: the ladder has the whole dialog, in order
    driver.find_element(By.ID, "hangup").click()
    wait_for(lambda: driver.find_element(By.ID, "state").text == "terminated", 20)
    got = wait_for(
        lambda: (lad := ladder(driver)) and lad[-1][1].startswith("200") and lad, 20, "BYE's 200"
    )
    # each message as "dir method" or "dir status" (baresip answers "200 Answering" and sends
    # no 100 Trying to an INVITE over UDP; its 180 is the provisional response)
    steps = [f"{d} {label.split()[0]}" for d, label in got]
    distinct = [x for i, x in enumerate(steps) if i == 0 or x != steps[i - 1]]  # retransmissions
    assert distinct == ["out INVITE", "in 180", "in 200", "out ACK", "out BYE", "in 200"], steps
    driver.find_element(By.CSS_SELECTOR, "#ladder > li button.arrow").click()
    assert "INVITE sip:" in driver.find_element(By.CSS_SELECTOR, "#ladder .sipdetail").text
    driver.execute_script("window.scrollTo(0, 0)")
    shot = check_page(driver, "11-call-baresip-ended")
    if os.environ.get("DTMFGRAPH_UPDATE_SCREENSHOT"):  # the README's picture
        shutil.copyfile(shot, ROOT / "docs" / "console-call.png")
