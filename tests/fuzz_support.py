"""Hypothesis strategies for f2pipe's inputs: topics near and far from the grammar, payloads,
JSON of every shape. Examples are bounded (tests/conftest.py's profile) so `make test` stays
fast; ``HYPOTHESIS_PROFILE=explore`` looks harder."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from f2lib.contracts.topics import COMPONENT_KINDS, CONNECTOR_MODES, CONNECTORS

MAC = st.text(alphabet="0123456789abcdef", min_size=12, max_size=12)
DEVICE = st.one_of(
    MAC.map(lambda mac: f"f2-{mac}"),
    st.sampled_from(["f2-", "f2-ABCDEF012345", "f2-0123456789abc", "F2-0123456789ab", ""]),
    st.text(max_size=20),
)
COMPONENT = st.one_of(
    st.builds(
        lambda kind, n: kind if not COMPONENT_KINDS[kind] else f"{kind}-{n}",
        st.sampled_from(sorted(COMPONENT_KINDS)),
        st.integers(min_value=0, max_value=99999),
    ),
    st.builds(lambda kind: f"{kind}-1", st.sampled_from(sorted(COMPONENT_KINDS))),
    st.text(max_size=20),
)
LEVEL_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), max_size=12
)


@st.composite
def mqtt_topics(draw: st.DrawFn) -> str:
    """Uplink and reply topics that follow the grammar, break one level of it, or are noise."""
    root = draw(st.sampled_from(["cmnd", "ctrl-resp", "ctrl", "cmnd ", "", "$SYS"]))
    levels = [
        draw(DEVICE),
        draw(st.one_of(st.sampled_from(CONNECTOR_MODES), LEVEL_TEXT)),
        draw(st.one_of(st.sampled_from(CONNECTORS), LEVEL_TEXT)),
        draw(COMPONENT),
    ]
    kept = draw(st.integers(min_value=0, max_value=len(levels) + 1))
    topic = "/".join([root, *levels[:kept]] + (["extra"] if kept > len(levels) else []))
    return draw(st.one_of(st.just(topic), st.text(max_size=60)))


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
EDGE_TIMESTAMPS = (
    "2023-05-26 18:34:04.928538",
    "9999-12-31 23:59:59-01:00",
    "0001-01-01 00:00:00+01:00",
    "2023-02-30 00:00:00",
    "",
    "now",
)
VALID_TIMESTAMPS = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S.%f")),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat(sep=" ")),
)
TIMESTAMPS = st.one_of(VALID_TIMESTAMPS, st.sampled_from(EDGE_TIMESTAMPS), JSON_SCALARS)
HEX = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", max_size=8),
    st.text(alphabet="0123456789abcdef", min_size=300, max_size=600).map(lambda h: "0x" + h),
    st.text(max_size=10),
    JSON_SCALARS,
)
READER_DATA = st.one_of(
    st.sampled_from(["b'\"Hello World\"'", "b'\\x00\\xff'", "rb'a\\n'", "b'", "b'\\x'", "b''"]),
    st.text(max_size=30).map(lambda t: f"b'{t}'"),
    st.text(max_size=30),
    JSON_SCALARS,
)


@st.composite
def payload_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Payload objects shaped like a component's (status, members, data) with broken parts."""
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["timestamp"] = draw(TIMESTAMPS)
    shape = draw(st.sampled_from(["status", "members", "hex", "reader", "any"]))
    if shape == "status":
        body["status"] = draw(st.one_of(st.booleans(), JSON_SCALARS))
    elif shape == "members":
        body.update(draw(st.dictionaries(st.text(max_size=20), JSON_SCALARS, max_size=4)))
    elif shape == "hex":
        body["data"] = draw(HEX)
    elif shape == "reader":
        body["data"] = draw(READER_DATA)
    else:
        body.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4)))
    return body


def nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` deep: small bytes, deep for a recursive parser."""
    return b"[" * depth + b"]" * depth


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


PAYLOADS = st.one_of(
    payload_objects().map(dumps),
    JSON_VALUES.map(dumps),
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.integers(min_value=1, max_value=20_000).map(lambda depth: nested(depth)),
)

SURROGATES = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                     min_size=1, max_size=3)  # fmt: skip
ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="\t\n\r\\\x00 '\"é€𝄞", max_size=20),
    SURROGATES,
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), SURROGATES, st.text(max_size=5)),
)


@st.composite
def measurement_values(draw: st.DrawFn) -> dict[str, Any]:
    """A decoded record's value: every field of a Measurement, each right or wrong."""
    device = draw(st.one_of(MAC.map(lambda mac: f"f2-{mac}"), st.text(max_size=16)))
    value: dict[str, Any] = {
        "time": draw(st.one_of(VALID_TIMESTAMPS, TIMESTAMPS)),
        "device_id": device,
        "connector_mode": draw(st.one_of(st.sampled_from(CONNECTOR_MODES), ANY_TEXT)),
        "connector": draw(st.one_of(st.sampled_from(CONNECTORS), ANY_TEXT)),
        "component_type": draw(st.one_of(st.sampled_from(sorted(COMPONENT_KINDS)), ANY_TEXT)),
        "component_id": draw(st.one_of(st.none(), st.sampled_from(["", "1"]), ANY_TEXT)),
        "value": draw(st.one_of(JSON_SCALARS, st.integers(min_value=10**300, max_value=10**400))),
        "value_text": draw(st.one_of(st.none(), ANY_TEXT)),
        "unit": draw(st.one_of(st.none(), ANY_TEXT)),
        "topic": draw(st.one_of(st.just(f"cmnd/{device}/sensor-mode/J1/sensor-1"), ANY_TEXT)),
    }
    for name in draw(st.lists(st.sampled_from(sorted(value)), max_size=2, unique=True)):
        del value[name]
    return value


BODIES = st.one_of(
    JSON_VALUES.map(dumps),
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6).map(dumps),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=20_000).map(nested),
    st.sampled_from([b"", b"{", b"null", b"\xef\xbb\xbf{}", b'{"a": NaN}', b"1e999"]),
)


PROVISION_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "mac": st.one_of(st.text(max_size=20), st.sampled_from(["a1:b2:c3:d4:e5:f6",
                                                                 "A1B2C3D4E5F6"]), JSON_SCALARS),
        "model": st.one_of(st.sampled_from(["F2-212", "F2-403", "f2-403", ""]), JSON_SCALARS),
        "serial_number": st.one_of(st.text(max_size=70), JSON_SCALARS),
        "csr": st.one_of(
            st.text(max_size=50).map(lambda t: f"-----BEGIN CERTIFICATE REQUEST-----\n{t}"),
            JSON_SCALARS,
        ),
        "extra": JSON_VALUES,
    },
)  # fmt: skip

COMMAND_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "device_id": st.one_of(DEVICE, JSON_SCALARS),
        "connector": st.one_of(st.sampled_from(["J1", "J2", "J9", ""]), JSON_SCALARS),
        "component": st.one_of(COMPONENT, JSON_SCALARS),
        "action": st.one_of(st.sampled_from(["unlock", "lock", "on", "off", "indicator"]),
                            st.text(max_size=10), JSON_SCALARS),
        "params": st.one_of(
            st.fixed_dictionaries({}, optional={
                "duration_s": st.one_of(st.integers(-10, 400), st.floats(), JSON_SCALARS),
                "color": st.one_of(st.sampled_from(["green", "red", "amber"]), JSON_SCALARS),
                "beep": st.one_of(st.booleans(), JSON_SCALARS),
                "other": JSON_VALUES,
            }),
            JSON_VALUES,
        ),
        "wait_s": st.one_of(st.floats(), st.integers(-5, 10**20), JSON_SCALARS),
        "force": st.booleans(),
    },
)  # fmt: skip
