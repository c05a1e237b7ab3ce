"""Function images: what may be pushed where."""

from __future__ import annotations

from typing import Any

import pytest

from f2lib.errors import ProcessError
from infra.local.images import LOCAL_BASE_REPO, BuiltImage, ImageBuilder, ImageConfig


class RecordingDocker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def run(self, *args: str, **_: Any) -> None:
        self.calls.append(args)


def builder(docker: RecordingDocker) -> ImageBuilder:
    return ImageBuilder(docker, ImageConfig(), work_dir=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tag", ["ghcr.io/acme/f2pipe/decode:1", "registry.example.com:5000/decode:1", "f2pipe/decode:1"]
)
def test_push__refuses_an_image_on_the_local_base_outside_loopback(tag: str) -> None:
    docker = RecordingDocker()
    image = BuiltImage("decode", tag, False, f"{LOCAL_BASE_REPO}:bookworm-abc")
    with pytest.raises(ProcessError, match="extra CA certificates"):
        builder(docker).push(image)
    assert docker.calls == []


@pytest.mark.parametrize(
    ("tag", "base"),
    [
        ("127.0.0.1:5000/f2pipe/decode:1", f"{LOCAL_BASE_REPO}:bookworm-abc"),
        ("localhost:5000/decode:1", f"{LOCAL_BASE_REPO}:bookworm-abc"),
        ("ghcr.io/acme/f2pipe/decode:1", "python:3.11.11-slim-bookworm"),
    ],
)
def test_push__sends_what_may_leave_the_machine(tag: str, base: str) -> None:
    docker = RecordingDocker()
    builder(docker).push(BuiltImage("decode", tag, True, base))
    assert docker.calls == [("push", tag)]
