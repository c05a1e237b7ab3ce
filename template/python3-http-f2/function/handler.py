"""Example handler for the python3-http-f2 template: echoes the request body."""

from typing import Any


def handle(event: Any, context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event.body, "headers": {"Content-Type": "text/plain"}}
