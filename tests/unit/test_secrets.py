"""SecretStore: secrets are files in one folder; the environment is never a fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from f2lib.errors import ConfigError
from f2lib.secrets import DEFAULT_SECRETS_DIR, SecretStore, read_secret_file


def test_get__reads_the_file_stripped_and_masked(tmp_path: Path) -> None:
    (tmp_path / "provision-token").write_text("tok-123\n")
    secret = SecretStore(tmp_path, env={}).get("provision-token")
    assert secret.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(secret) and "tok-123" not in str(secret)


def test_get__missing_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="provision-token") as caught:
        SecretStore(tmp_path, env={}).get("provision-token")
    assert str(tmp_path / "provision-token") in str(caught.value)


def test_get__environment_variable_is_no_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISION_TOKEN", "from-env")
    store = SecretStore(tmp_path, env={"PROVISION_TOKEN": "from-env-mapping"})
    with pytest.raises(ConfigError) as caught:
        store.get("provision-token")
    assert "from-env" not in str(caught.value)


def test_get__unreadable_file_is_a_config_error_without_the_value(tmp_path: Path) -> None:
    (tmp_path / "ca-key").mkdir()  # a folder where the file should be: reading it fails
    with pytest.raises(ConfigError, match=r"ca-key.*not readable"):
        SecretStore(tmp_path, env={}).get("ca-key")


def test_directory__argument_then_f2_secrets_dir_then_openfaas_default(tmp_path: Path) -> None:
    env = {"F2_SECRETS_DIR": str(tmp_path / "from-env")}
    assert SecretStore(tmp_path / "given", env=env).directory == tmp_path / "given"
    assert SecretStore(env=env).directory == tmp_path / "from-env"
    assert SecretStore(env={}).directory == DEFAULT_SECRETS_DIR


def test_read_secret_file__names_the_file_not_the_value(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("  value-1 \n")
    assert read_secret_file(tmp_path / "token").get_secret_value() == "value-1"
    with pytest.raises(ConfigError, match=r"no file .*missing"):
        read_secret_file(tmp_path / "missing")
