"""The command API's order of work, on an in-memory audit store and an in-memory MQTT link.

What these pin is the core's own logic (what is recorded before what is published, what a
refusal leaves behind, how a reply is answered); the real store and broker are exercised by
tests/integration/test_command.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from command.commander import Commander, CommandLimits, Request
from command.link import HeardReply, ReplyWaiter
from command.store import CommandRow, Target
from command.tokens import CallerTokens
from f2lib.contracts.commands import CommandMessage, CommandReply
from f2lib.errors import BrokerError, CommandError, StoreError
from f2lib.metrics import FunctionMetrics

TOKEN = "t" * 24
DEVICE = "f2-e4fd45f654be"
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@dataclass
class FakeStore:
    targets: dict[tuple[str, str, str], Target] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    fail_insert: bool = False

    def target(self, device_id: str, connector: str, component: str) -> Target | None:
        if not any(d == device_id for d, _, _ in self.targets):
            return None
        return self.targets.get(
            (device_id, connector, component),
            Target(next(t.device_status for (d, _, _), t in self.targets.items()), None),
        )

    def insert(self, row: CommandRow) -> None:
        if self.fail_insert:
            raise StoreError("down")
        self.events.append(f"insert {row.status}")
        self.rows[row.command_id] = dataclasses.asdict(row)

    def mark_sent(self, command_id: str, published_at: dt.datetime) -> None:
        self.events.append("sent")
        if self.rows[command_id]["status"] == "pending":
            self.rows[command_id]["status"] = "sent"

    def mark_failed(self, command_id: str, error: str, message: str) -> None:
        self.events.append("failed")
        self.rows[command_id]["status"] = "failed"

    def record_reply(
        self,
        command_id: str,
        device_id: str,
        result: str,
        detail: str | None,
        answered_at: dt.datetime,
        via: str,
    ) -> str:
        self.events.append(f"reply {result} via {via}")
        self.rows[command_id].update(status=result, answered_at=answered_at, answered_via=via)
        return "recorded"

    def get(self, command_id: str) -> dict[str, Any] | None:
        return self.rows.get(command_id)

    def list_for_device(
        self, device_id: str, *, limit: int, before: str | None = None
    ) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r["device_id"] == device_id][:limit]


@dataclass
class FakeLink:
    """Publishes into a list; ``answer`` makes the device reply as soon as it is published."""

    store: FakeStore
    published: list[tuple[str, CommandMessage, str, str]] = field(default_factory=list)
    answer: str | None = "ok"
    fail: bool = False
    waiters: dict[str, ReplyWaiter] = field(default_factory=dict)

    def expect(self, command_id: str, device_id: str) -> ReplyWaiter:
        self.waiters[command_id] = ReplyWaiter(command_id, device_id)
        return self.waiters[command_id]

    def forget(self, command_id: str) -> None:
        self.waiters.pop(command_id, None)

    def publish(
        self, topic: str, payload: bytes, *, response_topic: str, correlation: str, expiry_s: int
    ) -> None:
        if self.fail:
            raise BrokerError("broker gone")
        self.store.events.append("publish")
        message = CommandMessage.parse(payload)
        self.published.append((topic, message, response_topic, correlation))
        if self.answer is not None:
            reply = CommandReply(command_id=message.command_id, result=self.answer, detail="done")  # type: ignore[arg-type]
            heard = HeardReply(DEVICE, reply, NOW + dt.timedelta(milliseconds=40))
            self.waiters[message.command_id].resolve(heard)


def commander(
    store: FakeStore | None = None, link: FakeLink | None = None
) -> tuple[Commander, FakeStore, FakeLink]:
    store = store or FakeStore(
        targets={
            (DEVICE, "J1", "strike-1"): Target("active", "access-control-mode"),
            (DEVICE, "J1", "reader-1"): Target("active", "access-control-mode"),
        }
    )
    link = link or FakeLink(store)
    ids = iter(str(uuid.UUID(int=n)) for n in range(1, 1000))
    made = Commander(
        tokens=CallerTokens.parse(f"operator:{TOKEN}"),
        store=store,
        link=lambda: link,
        metrics=FunctionMetrics(process_metrics=False),
        limits=CommandLimits(max_body_bytes=512, expiry_s=30),
        clock=lambda: NOW,
        new_id=lambda: next(ids),
    )
    return made, store, link


def post(body: Any, token: str | None = TOKEN, raw: bytes | None = None) -> Request:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    return Request("POST", "/function/command", headers, data)


UNLOCK = {
    "device_id": DEVICE,
    "connector": "J1",
    "component": "strike-1",
    "action": "unlock",
    "params": {"duration_s": 5},
    "wait_s": 1,
}


def test_send__records_then_publishes_then_answers_the_device_reply() -> None:
    api, store, link = commander()
    response = api.dispatch(post(UNLOCK))
    assert response.status == 200
    assert response.body["status"] == "ok" and response.body["detail"] == "done"
    assert store.events == ["insert pending", "publish", "sent", "reply ok via command"]
    ((topic, message, response_topic, correlation),) = link.published
    assert topic == f"ctrl/{DEVICE}/access-control-mode/J1/strike-1"
    assert response_topic == f"ctrl-resp/{DEVICE}"
    assert correlation == message.command_id == response.body["command_id"]
    assert message.params == {"duration_s": 5}
    assert message.expires_at == NOW + dt.timedelta(seconds=30)
    row = store.rows[message.command_id]
    assert row["requested_by"] == "operator" and row["status"] == "ok"
    assert link.waiters == {}


def test_send__answers_202_sent_when_the_device_is_silent() -> None:
    api, store, link = commander()
    link.answer = None
    response = api.dispatch(post(dict(UNLOCK, wait_s=0.05)))
    assert response.status == 202 and response.body["status"] == "sent"
    assert store.rows[response.body["command_id"]]["status"] == "sent"


def test_send__with_wait_zero_does_not_wait_for_a_reply() -> None:
    api, _store, _link = commander()
    response = api.dispatch(post(dict(UNLOCK, wait_s=0)))
    assert response.status == 202


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (post(UNLOCK, raw=b"{not json"), 400, "invalid_json"),
        (post(UNLOCK, raw=b"x" * 600), 413, "body_too_large"),
        (post(dict(UNLOCK, device_id="f2-000000000001")), 404, "unknown_device"),
        (post(dict(UNLOCK, component="strike-2")), 422, "component_not_in_template"),
        (post(dict(UNLOCK, action="open")), 422, "unknown_action"),
        (post(dict(UNLOCK, params={"duration_s": 99})), 422, "invalid_param"),
        (post(dict(UNLOCK, params={})), 422, "missing_param"),
        (post(dict(UNLOCK, wait_s=60)), 400, "invalid_wait"),
    ],
)
def test_send__refusal_by_an_authenticated_caller_is_recorded_and_nothing_published(
    request_: Request, status: int, code: str
) -> None:
    api, store, link = commander()
    with pytest.raises(CommandError) as caught:
        api.dispatch(request_)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert link.published == []
    (row,) = store.rows.values()
    assert row["status"] == "refused" and row["result"]["error"] == code
    assert row["requested_by"] == "operator"


def test_send__refusal_for_a_revoked_device_is_a_409() -> None:
    store = FakeStore(
        targets={(DEVICE, "J1", "strike-1"): Target("revoked", "access-control-mode")}
    )
    api, store, link = commander(store)
    with pytest.raises(CommandError) as caught:
        api.dispatch(post(UNLOCK))
    assert (caught.value.status, caught.value.code) == (409, "device_not_active")
    assert link.published == []


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token"])
def test_send__without_a_valid_token_leaves_no_row(token: str | None) -> None:
    api, store, link = commander()
    with pytest.raises(CommandError) as caught:
        api.dispatch(post(UNLOCK, token=token))
    assert caught.value.status == 401
    assert store.rows == {} and link.published == []


def test_send__a_broker_failure_marks_the_row_failed_and_raises() -> None:
    api, store, link = commander()
    link.fail = True
    with pytest.raises(BrokerError):
        api.dispatch(post(UNLOCK))
    (row,) = store.rows.values()
    assert row["status"] == "failed"


def test_send__a_refusal_is_answered_even_when_it_cannot_be_recorded() -> None:
    api, store, _link = commander()
    store.fail_insert = True
    with pytest.raises(CommandError) as caught:
        api.dispatch(post(dict(UNLOCK, action="open")))
    assert caught.value.code == "unknown_action"


def test_describe_and_list__read_the_rows_back() -> None:
    api, _store, _link = commander()
    sent = api.dispatch(post(UNLOCK)).body["command_id"]
    get = Request("GET", f"/function/command/{sent}", {"Authorization": f"Bearer {TOKEN}"}, b"")
    assert api.dispatch(get).body["status"] == "ok"
    listing = Request(
        "GET", "/", {"Authorization": f"Bearer {TOKEN}"}, b"", {"device_id": DEVICE, "limit": "1"}
    )
    found = api.dispatch(listing).body
    assert [c["command_id"] for c in found["commands"]] == [sent]
    assert found["next_before"] == sent


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        ("/not-a-uuid", {}, "invalid_command_id"),
        (f"/{uuid.UUID(int=999)}", {}, "unknown_command"),
        ("/", {"device_id": "nope"}, "invalid_device_id"),
        ("/", {"device_id": DEVICE, "limit": "0"}, "invalid_limit"),
        ("/", {"device_id": DEVICE, "before": "x"}, "invalid_before"),
        ("/a/b", {}, "not_found"),
    ],
)
def test_reads__refuse_bad_paths_and_queries(path: str, query: dict[str, str], code: str) -> None:
    api, _, _ = commander()
    request = Request("GET", path, {"Authorization": f"Bearer {TOKEN}"}, b"", query)
    with pytest.raises(CommandError) as caught:
        api.dispatch(request)
    assert caught.value.code == code


def test_reply_waiter__keeps_the_first_reply_and_times_out_empty() -> None:
    waiter = ReplyWaiter("c", DEVICE)
    assert waiter.wait(0.01) is None
    first = HeardReply(DEVICE, CommandReply(command_id=str(uuid.uuid4()), result="ok"), NOW)
    second = HeardReply(DEVICE, CommandReply(command_id=str(uuid.uuid4()), result="rejected"), NOW)
    threading.Thread(target=waiter.resolve, args=(first,)).start()
    assert waiter.wait(2) is first
    waiter.resolve(second)
    assert waiter.wait(0) is first
