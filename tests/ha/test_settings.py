"""The settings of highly available managers: their defaults (the file log, one manager), and a
bad value of each refused in one line with exit status 2, as every setting is."""

from __future__ import annotations

from pathlib import Path

import pytest

from orc import config
from orc.cmd.main import main
from orc.ha import keys


def load(**env: str) -> config.Settings:
    return config.load(env, dotenv=Path("/nonexistent"))


def test_defaults_are_one_manager_with_its_file_log() -> None:
    settings = load()
    assert settings.etcd_endpoints == ()
    assert (settings.cluster, settings.lease_ttl, settings.manager_name) == ("orc", 5, "")
    committed = config.read_dotenv(Path(__file__).resolve().parents[2] / ".env")
    for key in ("ORC_ETCD_ENDPOINTS", "ORC_CLUSTER", "ORC_LEASE_TTL", "ORC_MANAGER_NAME"):
        assert committed[key] == config.DEFAULTS[key], key


def test_endpoints_are_urls_and_host_port_means_http() -> None:
    settings = load(ORC_ETCD_ENDPOINTS="127.0.0.1:2379, https://e2:2379/,")
    assert settings.etcd_endpoints == ("http://127.0.0.1:2379", "https://e2:2379")


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("ORC_ETCD_ENDPOINTS", "ftp://e1:2379", "not an etcd client URL"),
        ("ORC_ETCD_ENDPOINTS", "http://e1", "not an etcd client URL"),
        ("ORC_CLUSTER", "-bad", "ORC_CLUSTER='-bad'"),
        ("ORC_LEASE_TTL", "0", "ORC_LEASE_TTL=0 must be at least 1"),
        ("ORC_LEASE_TTL", "2.5", "ORC_LEASE_TTL='2.5' is not an integer"),
        ("ORC_MANAGER_NAME", "a b", "ORC_MANAGER_NAME='a b'"),
    ],
)
def test_a_bad_setting_is_one_line_and_status_2(
    key: str,
    value: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(config.ConfigError, match=says.replace("(", r"\(")):
        load(**{key: value})
    monkeypatch.setenv(key, value)
    assert main(["manager"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("orc: ") and says in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--etcd", "ftp://e1:2379"], "Invalid value for '--etcd'"),
        (["--name", "no spaces"], "Invalid value for '--name'"),
    ],
)
def test_bad_flags_are_usage_errors(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manager", *args]) == 2
    assert says in capsys.readouterr().err


def test_the_settings_and_etcd_s_keys_take_the_same_cluster_names() -> None:
    assert config.CLUSTER_NAME.pattern == keys._CLUSTER.pattern


def test_replay_from_etcd_needs_a_cluster_name_it_can_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", "--etcd", "http://127.0.0.1:1", "--cluster", "-x"]) == 2
    assert "--cluster '-x'" in capsys.readouterr().err
    assert main(["replay", "--cluster", "x"]) == 2
    assert "give --etcd too" in capsys.readouterr().err
