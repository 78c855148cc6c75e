"""Configuration precedence and validation: defaults < TOML file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharon_server.config import ConfigError, load_config


def test_defaults_work_out_of_the_box():
    cfg = load_config([], environ={})
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8448)
    assert cfg.data_dir == Path("sharon-data")
    assert cfg.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert cfg.effective_database_url.endswith("sharon-data/sharon.db")


def test_file_then_environment_then_flags(tmp_path):
    conf = tmp_path / "sharon.toml"
    conf.write_text('server_name = "file.example"\nlisten = "127.0.0.1:9000"\nmax_body_chars = 500\n')
    cfg = load_config(["--config", str(conf)], environ={})
    assert (cfg.server_name, cfg.listen_port, cfg.max_body_chars) == ("file.example", 9000, 500)
    cfg = load_config(["--config", str(conf)], environ={"SHARON_LISTEN": "127.0.0.1:9001", "SHARON_PASSWORD": "ignored"})
    assert cfg.listen_port == 9001 and cfg.server_name == "file.example"
    cfg = load_config(["--config", str(conf), "--listen", "127.0.0.1:9002"], environ={"SHARON_LISTEN": "127.0.0.1:9001"})
    assert cfg.listen_port == 9002


def test_data_dir_config_file_is_found(tmp_path):
    (tmp_path / "sharon.toml").write_text('server_name = "found.example"\n')
    cfg = load_config(["--data-dir", str(tmp_path)], environ={})
    assert cfg.server_name == "found.example"


@pytest.mark.parametrize("argv, env, fragment", [
    (["--listen", "nonsense"], {}, "listen"),
    ([], {"SHARON_MAX_BODY_CHARS": "lots"}, "max_body_chars"),
    (["--server-name", "bad name!"], {}, "server_name"),
    ([], {"SHARON_LOG_FORMAT": "xml"}, "log_format"),
])
def test_bad_settings_are_named(argv, env, fragment):
    with pytest.raises(ConfigError) as exc:
        load_config(argv, environ=env)
    assert fragment in str(exc.value)


def test_unknown_key_in_file_is_an_error(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config(["--config", str(conf)], environ={})
