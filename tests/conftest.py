"""Shared pytest configuration: fixture modules for the real services."""

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.postgres",
    "tests.fixtures.mosquitto",
    "tests.fixtures.provision",
    "tests.fixtures.kafka",
    "tests.fixtures.databases",
    "tests.fixtures.docker",
]
