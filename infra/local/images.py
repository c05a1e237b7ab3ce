"""Function images as `faas-cli build` makes them, and the bases they need (``make images``).

Each function's build context (``build/<fn>``, the layout of ``faas-cli build --shrinkwrap``) is
built with the template's Dockerfile. Bases come from their registries where reachable
(``python:3.11.11-slim-bookworm``, ``ghcr.io/openfaas/of-watchdog:0.11.6``). Where the Python
base cannot be pulled, one is made here from Debian packages with mmdebstrap; it trusts this
host's extra CA certificates (``/usr/local/share/ca-certificates``), so pip behind a
re-signing proxy works during builds, and is therefore never pushed anywhere. The watchdog
image comes from ``WATCHDOG_IMAGE`` where it cannot be pulled; where none can be had at all,
the images are built ``--target direct`` (the template's server on port 8080, no of-watchdog)
and say so in their ``F2_WATCHDOG`` environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.deploy.stackfile import StackFile
from infra.local.buildctx import build_all
from infra.local.launch.docker import DockerEngine, docker_cli
from infra.local.launch.registry import LocalRegistry
from infra.local.process import ProcessError
from infra.local.settings import ROOT, RuntimeConfig

logger = logging.getLogger(__name__)

PYTHON_IMAGE = "python:3.11.11-slim-bookworm"
WATCHDOG_IMAGE = "ghcr.io/openfaas/of-watchdog:0.11.6"
LOCAL_BASE_REPO = "f2pipe-local/python-base"
BASE_PACKAGES: tuple[str, ...] = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python-is-python3",
    "ca-certificates",
    "adduser",
)
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
WATCHDOG_ENV = "F2_WATCHDOG"


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """Which bases to use: given ones must exist; otherwise pulled, else made or done without."""

    python_image: str | None = None
    watchdog_image: str | None = None
    pull_timeout_s: float = 60.0
    suite: str = "bookworm"

    @classmethod
    def from_runtime(cls, runtime: RuntimeConfig) -> ImageConfig:
        return cls(python_image=runtime.python_image, watchdog_image=runtime.watchdog_image)


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """A function image, whether of-watchdog runs in it, and the base it was built on."""

    function: str
    tag: str
    watchdog: bool
    base: str = ""

    @property
    def local_only(self) -> bool:
        """Built on the base made here, which trusts this machine's extra CA certificates."""
        return self.base.startswith(LOCAL_BASE_REPO)

    @property
    def runs(self) -> str:
        return "under of-watchdog" if self.watchdog else "without of-watchdog"


class Docker:
    """The docker client pointed at one engine."""

    def __init__(self, host: str, base_env: Mapping[str, str] | None = None) -> None:
        self.env = {"PATH": "/usr/bin:/bin", **(base_env or {}), "DOCKER_HOST": host}

    def run(
        self, *args: str, timeout: float | None = None, check: bool = True, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "DOCKER_BUILDKIT": "1"}
        try:
            result = subprocess.run(
                [docker_cli(), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(f"docker {args[0]} timed out after {timeout}s") from exc
        if check and result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise ProcessError(f"docker {' '.join(args[:2])} failed:\n{tail}")
        if not quiet and result.returncode == 0:
            logger.debug("docker %s ok", args[0])
        return result

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False, quiet=True).returncode == 0

    def pull(self, ref: str, timeout: float) -> bool:
        try:
            return self.run("pull", "-q", ref, timeout=timeout, check=False).returncode == 0
        except ProcessError:
            return False

    def user_of(self, ref: str) -> tuple[int, int]:
        """The uid and gid the image runs as."""
        ids = [
            self.run("run", "--rm", "--network", "none", "--entrypoint", "id", ref, flag).stdout
            for flag in ("-u", "-g")
        ]
        return int(ids[0].strip()), int(ids[1].strip())

    def image_env(self, ref: str) -> dict[str, str]:
        result = self.run("image", "inspect", ref, "--format", "{{json .Config.Env}}")
        pairs = json.loads(result.stdout or "[]") or []
        return dict(item.split("=", 1) for item in pairs if "=" in item)


class ImageBuilder:
    """Builds the function images of a stack on one engine."""

    def __init__(self, docker: Docker, config: ImageConfig, work_dir: Path) -> None:
        self.docker = docker
        self.config = config
        self.work_dir = work_dir

    def _available(self, ref: str) -> bool:
        return self.docker.has_image(ref) or self.docker.pull(ref, self.config.pull_timeout_s)

    def python_base(self) -> str:
        """The Python base: the given one, the upstream slim image, else one made here."""
        if self.config.python_image:
            if not self._available(self.config.python_image):
                raise ProcessError(f"F2_PYTHON_IMAGE {self.config.python_image} not available")
            return self.config.python_image
        if self._available(PYTHON_IMAGE):
            return PYTHON_IMAGE
        logger.info("%s cannot be pulled; making a Python base from Debian packages", PYTHON_IMAGE)
        return self.local_base()

    def local_base(self) -> str:
        """``f2pipe-local/python-base:<suite>-<digest>``, made once with mmdebstrap."""
        certs = sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []
        digest = hashlib.sha256()
        digest.update(" ".join((self.config.suite, *BASE_PACKAGES)).encode())
        for cert in certs:
            digest.update(cert.read_bytes())
        tag = f"{LOCAL_BASE_REPO}:{self.config.suite}-{digest.hexdigest()[:12]}"
        if self.docker.has_image(tag):
            return tag
        if shutil.which("mmdebstrap") is None:
            raise ProcessError("mmdebstrap not installed (make setup installs it)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as scratch:
            ca_dir = Path(scratch) / "extra-ca"
            ca_dir.mkdir()
            for cert in certs:
                shutil.copy2(cert, ca_dir / cert.name)
            tarball = Path(scratch) / "base.tar"
            trust = (
                'chroot "$1" sh -c "cp /tmp/extra-ca/*.crt /usr/local/share/ca-certificates/ '
                '2>/dev/null; rm -rf /tmp/extra-ca; update-ca-certificates"'
            )
            argv = [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
                f"--customize-hook=copy-in {ca_dir} /tmp",
                f"--customize-hook={trust}",
                self.config.suite,
                str(tarball),
            ]
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ProcessError(f"mmdebstrap failed:\n{result.stderr[-2000:]}")
            self.docker.run(
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["python3"]',
                str(tarball),
                tag,
            )
        logger.info("made %s (trusts this host's extra CA certificates: local use only)", tag)
        return tag

    def watchdog(self) -> str | None:
        """The of-watchdog image: WATCHDOG_IMAGE, the upstream one, or None (none to be had)."""
        if self.config.watchdog_image:
            if not self._available(self.config.watchdog_image):
                raise ProcessError(f"WATCHDOG_IMAGE {self.config.watchdog_image} not available")
            return self.config.watchdog_image
        if self._available(WATCHDOG_IMAGE):
            return WATCHDOG_IMAGE
        logger.warning(
            "no of-watchdog image (%s cannot be pulled, no WATCHDOG_IMAGE)", WATCHDOG_IMAGE
        )
        return None

    def build(
        self, function: str, context: Path, tag: str, python: str, watchdog: str | None
    ) -> BuiltImage:
        # The host's network: pip reaches the package index without NAT on the engine's bridge.
        args = ["build", "--network", "host", "-t", tag, "--build-arg", f"PYTHON_IMAGE={python}"]
        if watchdog is not None:
            args += ["--build-arg", f"WATCHDOG_IMAGE={watchdog}"]
        else:
            args += ["--target", "direct"]
        self.docker.run(*args, str(context), timeout=1800)
        built = BuiltImage(function, tag, watchdog is not None, python)
        logger.info("built %s (%s)", tag, built.runs)
        return built

    def build_stack(
        self, stack: StackFile, build_dir: Path, only: Sequence[str] = ()
    ) -> list[BuiltImage]:
        contexts = build_all(stack, build_dir)
        python, watchdog = self.python_base(), self.watchdog()
        names = [n for n in stack.functions if not only or n in only]
        return [
            self.build(name, contexts[name], stack.functions[name].image, python, watchdog)
            for name in names
        ]

    def push(self, image: BuiltImage) -> None:
        """Push ``image``; one on the locally made base only to a registry on loopback."""
        if image.local_only and not re.match(r"^(127\.0\.0\.1|localhost):\d+/", image.tag):
            raise ProcessError(
                f"{image.tag} is built on {image.base}, which trusts this machine's extra CA "
                "certificates: push it only to the registry on loopback, or build with "
                "F2_PYTHON_IMAGE naming a base meant for elsewhere"
            )
        self.docker.run("push", image.tag, timeout=600)
        logger.info("pushed %s", image.tag)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.local.images``: build (and push) the function images of stack.yml."""
    runtime = RuntimeConfig()
    parser = argparse.ArgumentParser(prog="python -m infra.local.images", description=main.__doc__)
    parser.add_argument("-f", "--stack", type=Path, default=ROOT / "stack.yml")
    parser.add_argument("--build-dir", type=Path, default=runtime.build_dir)
    parser.add_argument("--state-dir", type=Path, default=runtime.state_dir)
    parser.add_argument("--push", action="store_true", help="push each image to its registry")
    parser.add_argument("function", nargs="*", help="only these functions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        engine = DockerEngine(args.state_dir / "docker", runtime.docker_host)
        docker = Docker(engine.start(), runtime.child_env())
        builder = ImageBuilder(docker, ImageConfig.from_runtime(runtime), args.state_dir / "images")
        built = builder.build_stack(StackFile.load(args.stack), args.build_dir, args.function)
        for image in built:
            if args.push:
                local = re.match(r"^127\.0\.0\.1:(\d+)/", image.tag)
                if local:  # the runtime's own registry on loopback: started when not running
                    LocalRegistry(
                        args.state_dir / "registry",
                        int(local.group(1)),
                        pid_path=args.state_dir / "pids" / "registry.pid",
                    ).start()
                builder.push(image)
            print(f"{image.function}: {image.tag} ({image.runs})")
    except ProcessError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
