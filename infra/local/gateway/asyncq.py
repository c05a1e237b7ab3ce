"""``/async-function/<name>``: calls queued and made later, results POSTed to a callback.

The caller gets 202 and an ``X-Call-Id`` at once; a worker makes the call and, when the caller
gave ``X-Callback-Url``, POSTs the function's answer there with ``X-Call-Id``,
``X-Function-Status``, ``X-Function-Name`` and ``X-Duration-Seconds`` (as OpenFaaS's queue
worker does). A full queue is refused with 429 rather than growing without bound.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import urllib3

from infra.local.gateway.core import Upstream

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AsyncCall:
    """One queued call."""

    call_id: str
    function: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    callback_url: str | None


class AsyncQueue:
    """A bounded queue of calls and the worker threads that make them."""

    def __init__(
        self,
        invoke: Callable[[AsyncCall], Upstream],
        http: urllib3.PoolManager,
        *,
        workers: int = 2,
        capacity: int = 1000,
    ) -> None:
        self._invoke = invoke
        self._http = http
        self._queue: queue.Queue[AsyncCall | None] = queue.Queue(maxsize=capacity)
        self._threads = [
            threading.Thread(target=self._work, name=f"async-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, function: str, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> str | None:
        """Queue a call; its id, or None when the queue is full."""
        call_id = headers.get("X-Call-Id") or os.urandom(8).hex()
        callback = headers.get("X-Callback-Url") or None
        kept = {k: v for k, v in headers.items() if k.lower() != "x-callback-url"}
        kept["X-Call-Id"] = call_id
        call = AsyncCall(call_id, function, method, path, body, kept, callback)
        try:
            self._queue.put_nowait(call)
        except queue.Full:
            return None
        return call_id

    def _work(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            try:
                answer = self._invoke(call)
                logger.info("async %s of %s: %d", call.call_id, call.function, answer.status)
                if call.callback_url:
                    self._callback(call, answer)
            except Exception:  # one bad call never stops the worker
                logger.exception("async call %s of %s failed", call.call_id, call.function)

    def _callback(self, call: AsyncCall, answer: Upstream) -> None:
        headers = {
            "X-Call-Id": call.call_id,
            "X-Function-Status": str(answer.status),
            "X-Function-Name": call.function,
            "X-Duration-Seconds": answer.headers.get("X-Duration-Seconds", "0"),
            "Content-Type": answer.headers.get("Content-Type", "application/octet-stream"),
        }
        try:
            self._http.request(
                "POST",
                call.callback_url or "",
                body=answer.body,
                headers=headers,
                timeout=urllib3.Timeout(connect=5.0, read=30.0),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            logger.warning("callback of %s to %s failed: %s", call.call_id, call.callback_url, exc)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
