"""``serve --workers``: how the work is split (ports, RTP slices, node ids), what is refused
(SQLite, a bad count), and where the options show in ``serve --help``. The supervisor itself
runs for real in tests/e2e/test_workers.py."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from dtmfgraph.cli import app
from dtmfgraph.cli.panels import panel_of
from dtmfgraph.cli.preflight import bind_http
from dtmfgraph.cli.workers import (
    SQLITE_REFUSAL,
    WorkersError,
    count_for,
    count_of,
    cpus,
    reserve_port,
    rtp_slices,
    worker_settings,
)
from dtmfgraph.settings import Settings

PG = "postgresql+asyncpg://u@127.0.0.1/db"


@pytest.fixture(autouse=True)
def _no_dtmfgraph_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("DTMFGRAPH_"):
            monkeypatch.delenv(key)


def test_rtp_range_is_split_in_even_slices() -> None:
    assert rtp_slices("20000-29999", 2) == ["20000-24999", "25000-29999"]
    assert rtp_slices("20001-20010", 2) == ["20002-20005", "20006-20010"]
    slices = rtp_slices("20000-29999", 3)
    assert slices[0].startswith("20000-") and slices[-1].endswith("-29999")
    with pytest.raises(WorkersError, match="wider range"):
        rtp_slices("20000-20002", 3)


def test_each_worker_has_its_node_id_sip_port_and_rtp_slice() -> None:
    base = Settings(database_url=PG, node_id="box", sip_port=5060, rtp_ports="20000-20999")
    w0, w1 = worker_settings(base, 2, 8000)
    assert (w0.node_id, w0.sip_port, w0.rtp_ports) == ("box/w0", 5060, "20000-20499")
    assert (w1.node_id, w1.sip_port, w1.rtp_ports) == ("box/w1", 5061, "20500-20999")
    assert w0.port == w1.port == 8000 and not w0.console_enabled
    any_port = worker_settings(base.model_copy(update={"sip_port": 0}), 2, 8000)
    assert [w.sip_port for w in any_port] == [0, 0]
    default_id = worker_settings(Settings(database_url=PG, port=0), 2, 8123)
    assert default_id[1].node_id.endswith(":8123/w1")


def test_tls_ports_that_overlap_the_sip_ports_are_refused(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    tls = Settings(database_url=PG, sip_port=5060, sip_tls_port=5061, sip_tls_cert_file=cert)
    with pytest.raises(WorkersError, match="--sip-tls-port at least 5062"):
        worker_settings(tls, 2, 8000)
    ok = worker_settings(tls.model_copy(update={"sip_tls_port": 5071}), 2, 8000)
    assert [w.sip_tls_port for w in ok] == [5071, 5072]


def test_count_and_sqlite() -> None:
    assert count_of("2") == 2 and count_of("auto") == cpus()
    for bad in ("0", "two"):
        with pytest.raises(WorkersError):
            count_of(bad)
    assert count_for(Settings(database_url=PG, workers=3)) == 3
    with pytest.raises(WorkersError, match="needs PostgreSQL"):
        count_for(Settings(workers=2))  # the default store: SQLite
    assert count_for(Settings(workers="auto")) == 1


def test_serve_refuses_workers_on_sqlite_in_one_line(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["serve", "--workers", "2", "--data-dir", str(tmp_path)])
    assert done.exit_code == 2
    assert done.output.strip() == f"error: {SQLITE_REFUSAL}"


def test_the_http_port_is_held_shareable() -> None:
    hold = reserve_port("127.0.0.1", 0)
    try:
        port = hold.getsockname()[1]
        worker = bind_http("127.0.0.1", port, reuse_port=True)  # a worker binds beside it
        worker.close()
    finally:
        hold.close()


def test_the_options_show_in_the_nodes_panel() -> None:
    assert panel_of("workers") == panel_of("workers_private_port") == panel_of("node_id")


_PORT = st.integers(min_value=-5, max_value=70000)


@given(
    st.one_of(st.text(max_size=40), st.builds("{}-{}".format, _PORT, _PORT), _PORT.map(str)),
    st.integers(min_value=1, max_value=64),
)
def test_any_workers_value_or_port_range_is_a_count_or_a_clear_error(text: str, n: int) -> None:
    """``--workers`` and ``--rtp-ports`` as typed by anyone: a count >= 1 and n disjoint
    slices, or a WorkersError naming the option (never another exception)."""
    try:
        assert count_of(text) >= 1
    except WorkersError as exc:
        assert "--workers" in str(exc)
    try:
        slices = rtp_slices(text, n)
    except WorkersError as exc:
        assert "--rtp-ports" in str(exc)
    else:
        assert len(slices) == n
        bounds = [tuple(int(p) for p in s.split("-")) for s in slices]
        assert all(lo <= hi for lo, hi in bounds)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(bounds))
