"""``certs register``'s endpoint handling before any request is made."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from certs.cli import register
from f2lib.errors import ConfigError


def test_register__a_url_that_is_not_gateway_function_name_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"not <gateway>/function/<name>"):
        register(
            "e4:fd:45:f6:54:be",
            model="F2-403",
            serial_number="SN-1",
            url="http://127.0.0.1:8080/provision",
            token=SecretStr("t"),
            out_dir=tmp_path,
        )
    assert list(tmp_path.iterdir()) == []
