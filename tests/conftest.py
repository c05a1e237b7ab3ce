"""Shared pytest configuration: fixture modules for the real services, the fuzzing profile."""

import os

from hypothesis import settings

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.postgres",
    "tests.fixtures.mosquitto",
    "tests.fixtures.provision",
    "tests.fixtures.kafka",
    "tests.fixtures.databases",
    "tests.fixtures.docker",
]

# `make test`: bounded and reproducible (the same examples every run, no example database);
# HYPOTHESIS_PROFILE=explore searches harder, and differently each time.
settings.register_profile(
    "default", max_examples=200, deadline=None, derandomize=True, database=None
)
settings.register_profile("explore", max_examples=5000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
