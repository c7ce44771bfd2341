"""The settings file and ``dtmfgraph config show``, through the command line (typer's runner;
``serve --config`` itself runs as a subprocess in tests/api/test_cli_serve.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from dtmfgraph.cli import COMMANDS, app, load_command
from dtmfgraph.cli.config import MASK, ConfigError, load
from dtmfgraph.cli.panels import OTHER, panel_of
from dtmfgraph.settings import Settings


@pytest.fixture(autouse=True)
def _no_dtmfgraph_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("DTMFGRAPH_"):
            monkeypatch.delenv(key)


def show(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["config", "show", *args], env=env)
    return done.exit_code, done.output


def shown(config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    code, out = show("--config", str(config), "--json", env=env)
    assert code == 0, out
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def test_show_names_value_and_source_of_every_setting(tmp_path: Path) -> None:
    config = tmp_path / "dtmfgraph.toml"
    config.write_text(
        'port = 8100\nsip_port = 5070\n\n[sip]\nsip_trunk_uri = "192.0.2.10"\n'
        'sip_tls_cert_file = "certs/me.pem"\nsip_allow_from = ["10.0.0.0/8"]\n'
    )
    got = shown(config, env={"DTMFGRAPH_SIP_PORT": "5080"})
    assert set(got) == set(Settings.model_fields)
    assert got["port"] == {"value": 8100, "source": f"file {config}"}
    assert got["sip_port"] == {"value": 5080, "source": "env DTMFGRAPH_SIP_PORT"}
    assert got["sip_trunk_uri"]["value"] == "192.0.2.10"  # from a [table]
    assert got["sip_allow_from"]["value"] == ["10.0.0.0/8"]
    # a relative path in the file is relative to the file
    assert got["sip_tls_cert_file"]["value"] == str(tmp_path / "certs" / "me.pem")
    assert got["host"] == {"value": "127.0.0.1", "source": "default"}
    code, out = show("--config", str(config))
    assert code == 0 and "sip_trunk_uri" in out and "192.0.2.10" in out


def test_show_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "dtmfgraph.toml"
    config.write_text('jwt_hs256_secret = "file-secret-1"\nsip_auth_user = "bot"\n')
    env = {"DTMFGRAPH_SIP_AUTH_PASSWORD": "env-secret-2", "DTMFGRAPH_METRICS_BEARER_TOKEN": "t3"}
    for args in (["--json"], []):
        code, out = show("--config", str(config), *args, env=env)
        assert code == 0, out
        for secret in ("file-secret-1", "env-secret-2", "t3"):
            assert secret not in out
    got = shown(config, env=env)
    assert got["jwt_hs256_secret"]["value"] == MASK
    assert got["sip_auth_password"] == {"value": MASK, "source": "env DTMFGRAPH_SIP_AUTH_PASSWORD"}
    assert got["metrics_bearer_token"]["value"] == MASK
    assert got["callback_signing_secret"]["value"] is None  # unset: nothing to hide
    assert got["sip_auth_user"]["value"] == "bot"


def test_unknown_key_and_bad_values_are_clear_errors(tmp_path: Path) -> None:
    config = tmp_path / "dtmfgraph.toml"
    config.write_text('[sip]\nsip_trunk = "192.0.2.10"\n')
    code, out = show("--config", str(config))
    assert code == 2
    assert f"error: {config}: unknown setting 'sip_trunk' (did you mean sip_trunk_uri?)" in out
    config.write_text("port = [")
    code, out = show("--config", str(config))
    assert code == 2 and f"error: {config}: not TOML" in out
    config.write_text('port = "eighty"\n')
    code, out = show("--config", str(config))
    assert code == 2 and f"error: {config}: port: Input should be a valid integer" in out
    code, out = show("--config", str(config), env={"DTMFGRAPH_PORT": "x"})
    assert code == 2 and "error: DTMFGRAPH_PORT: Input should be a valid integer" in out


def test_precedence_flags_environment_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dtmfgraph.toml"
    config.write_text('port = 1\nhost = "127.0.0.2"\nsip_port = 2\nnode_id = "file"\n')
    monkeypatch.setenv("DTMFGRAPH_SIP_PORT", "3")
    monkeypatch.setenv("DTMFGRAPH_NODE_ID", "env")
    loaded = load({"node_id": "flag"}, config)
    s = loaded.settings
    assert (s.port, s.host, s.sip_port, s.node_id, s.media) == (1, "127.0.0.2", 3, "flag", "sip")
    assert [loaded.source(n) for n in ("port", "sip_port", "node_id", "media")] == [
        f"file {config}",
        "env DTMFGRAPH_SIP_PORT",
        "flag",
        "default",
    ]
    with pytest.raises(ConfigError, match=r"^--the-flag: Input should be a valid integer"):
        load({"port": "x"}, config, lambda name: "--the-flag")


def test_config_file_through_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "dtmfgraph.toml"
    config.write_text("sip_port = 5999\n")
    code, out = show("--json", env={"DTMFGRAPH_CONFIG": str(config)})
    assert code == 0, out
    assert json.loads(out)["sip_port"] == {"value": 5999, "source": f"file {config}"}


def test_serve_help_has_every_option_in_a_panel() -> None:
    command = load_command(COMMANDS["serve"][0], "serve")
    panels = {p.name: getattr(p, "rich_help_panel", None) for p in command.params}
    assert [name for name, panel in panels.items() if panel == OTHER] == []
    assert panels["sip_tls_port"] == panels["srtp"] == "TLS and SRTP"
    assert panels["sip_trunk"] == "SIP"
    assert panels["overload_new_calls"] == panels["overload_media_ops"] == "Media"
    assert panels["data_dir"] == panels["database_url"] == "Storage"
    assert panels["config"] is None  # beside --help
    assert panel_of("something_new") == OTHER
    done = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "120"})
    assert done.exit_code == 0
    for title in ("HTTP API", "Storage", "SIP", "TLS and SRTP", "Media", "Notifications"):
        assert f"─ {title}" in done.output


def test_token_reads_the_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "dtmfgraph.toml"
    config.write_text('jwt_hs256_secret = "file-secret-for-tokens-0123456789"\n')
    done = CliRunner().invoke(app, ["token", "--config", str(config), "--app", "bot"])
    assert done.exit_code == 0, done.output
    claims = jwt.decode(
        done.output.strip(),
        "file-secret-for-tokens-0123456789",
        algorithms=["HS256"],
        audience="dtmfgraph",
    )
    assert claims["appid"] == "bot"
    assert not (tmp_path / "dtmfgraph-data").exists()  # the file's secret, none made


def test_a_variable_like_a_setting_is_named_not_silently_ignored() -> None:
    env = {
        "DTMFGRAPH_NOTIFY_MAX_ATTEMPTS": "3",  # replaced by notify_retry_for_s
        "DTMFGRAPH_SIP_TRUNK_URL": "192.0.2.10",  # a typo of sip_trunk_uri
        "DTMFGRAPH_TEST_PG": "postgresql://x",  # no setting's name: a harness's own
        "DTMFGRAPH_SIP_PORT": "5080",
    }
    done = CliRunner().invoke(app, ["config", "show", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["sip_port"]["value"] == 5080
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: DTMFGRAPH_NOTIFY_MAX_ATTEMPTS is no longer a setting (ignored): "
        "use DTMFGRAPH_NOTIFY_RETRY_FOR_S",
        "warning: DTMFGRAPH_SIP_TRUNK_URL is not a setting (ignored): "
        "did you mean DTMFGRAPH_SIP_TRUNK_URI?",
    ]
