"""Fuzzed request bodies into the provisioning and command parsers: a typed 4xx refusal with a
code, or a well-formed request, never another exception (which the template answers 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from command.requests import parse_command, read_body, seen_fields
from f2lib.contracts.commands import MAX_WAIT_S
from f2lib.errors import CommandError, ProvisioningError
from provision.provisioner import parse_provision_body
from tests.fuzz_support import BODIES, COMMAND_FIELDS, PROVISION_FIELDS, dumps


@given(body=st.one_of(BODIES, PROVISION_FIELDS.map(dumps)))
def test_parse_provision_body__refuses_with_a_4xx_code_or_returns_the_fields(body: bytes) -> None:
    try:
        fields = parse_provision_body(body)
    except ProvisioningError as exc:
        assert 400 <= exc.status < 500 and exc.code and str(exc)
    else:
        assert {"mac", "model", "serial_number"} <= set(fields)
        assert len(fields["mac"]) == 12


@given(body=st.one_of(BODIES, COMMAND_FIELDS.map(dumps)))
def test_parse_command__refuses_with_a_4xx_code_or_returns_a_well_formed_command(
    body: bytes,
) -> None:
    try:
        data = read_body(body)
        seen_fields(data)  # what a refusal's audit row keeps: readable from any object
        command = parse_command(data)
    except CommandError as exc:
        assert 400 <= exc.status < 500 and exc.code and str(exc)
    else:
        assert 0 <= command.wait_s <= MAX_WAIT_S
        assert isinstance(command.params, dict)
        check: dict[str, Any] = command.params
        assert all(isinstance(k, str) for k in check)
