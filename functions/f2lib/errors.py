"""The project's error hierarchy, written once.

F2PipeError                  root of every error f2pipe raises on purpose
├── ConfigError              a setting or secret is missing or invalid
├── RecordError              one input record is bad (carries stage and context); dead-lettered
│   ├── TopicError           the MQTT topic does not follow the F2 contract
│   ├── PayloadError         the payload is not the JSON the component sends
│   │   └── TimestampError   the payload's timestamp is missing or not a valid date and time
│   ├── UnknownDeviceError   no parameters for the device (never guessed)
│   ├── UnknownComponentError  the device has no parameters for this component
│   ├── DecodingError        the value cannot be decoded with its encoding
│   └── ReplyError           a command reply is malformed; dead-lettered
│       ├── UnknownCommandError  the reply names no command of the audit trail
│       └── WrongDeviceError   the reply comes from another device than the command's target
├── BatchError               a whole batch is malformed (HTTP 400)
├── StoreError               a database operation failed (HTTP 503, retried)
├── StreamError              a Kafka operation failed (HTTP 503, retried)
│   └── RecordTooLargeError  Kafka can never take this record (larger than the limits)
├── ProvisioningError        a provisioning request is refused (carries an HTTP status)
├── CertificateError         a certificate, key, CSR or CRL is malformed or cannot be issued
├── RegistryError            the device registry's ACL, CRL or archive cannot be published
├── GatewayError             the OpenFaaS gateway is unreachable or answers unusably (client side)
├── DeliveryAbandoned        a batch was given up uncommitted; it is consumed again
├── StackFileError           stack.yml is missing, malformed, or names what does not exist
├── ComposeMergeError        faasd's compose file cannot take the f2pipe services safely
├── ProcessError             a local runtime process failed to start, died, or never got ready
├── ReplicaError             the local gateway has no replica of a function (none built or ready)
├── SimulatorError           the device simulator cannot provision, connect or publish
├── BenchError               a benchmark phase could not run or complete
├── ChaosError               a fault-matrix scenario could not run (a part not found, not back)
├── MonitoringError          a monitoring endpoint is down or reports a fault
├── CommandError             a command request is refused (carries an HTTP status and a code)
├── BrokerError              the MQTT broker is unreachable or did not take a publish (HTTP 503)
├── ReplayRefusedError       a redrive or reprocess refused to start; nothing was sent
└── ReplayIncompleteError    a reprocess sent its records but the pipeline did not confirm them
"""

from __future__ import annotations

from typing import Any

# What json.loads raises for input it cannot take: a ValueError (JSONDecodeError,
# UnicodeDecodeError), or a RecursionError for arrays or objects nested deeper than the
# interpreter's recursion limit ("[" * 2000 is 2 KB). Input from outside is parsed with both.
JSON_DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, RecursionError)


class F2PipeError(Exception):
    """Root of every error f2pipe raises on purpose."""


class ConfigError(F2PipeError):
    """A setting or secret is missing or invalid."""


class RecordError(F2PipeError):
    """One input record is bad; it goes to the dead-letter topic with this reason."""

    reason = "bad_record"

    def __init__(self, message: str, *, stage: str = "decode", **context: Any) -> None:
        super().__init__(message)
        self.stage = stage
        self.context = context


class TopicError(RecordError):
    """The MQTT topic does not follow the F2 topic contract."""

    reason = "bad_topic"


class PayloadError(RecordError):
    """The payload is not the JSON the component sends."""

    reason = "bad_payload"


class UnknownDeviceError(RecordError):
    """No decoding parameters exist for the device."""

    reason = "unknown_device"


class UnknownComponentError(RecordError):
    """The device has no decoding parameters for this component."""

    reason = "unknown_component"


class DecodingError(RecordError):
    """The value cannot be decoded with its encoding."""

    reason = "decoding_failed"


class BatchError(F2PipeError):
    """A whole batch is malformed and cannot be processed (HTTP 400)."""


class StoreError(F2PipeError):
    """A database operation failed; the caller may retry (HTTP 503)."""


class StreamError(F2PipeError):
    """A Kafka operation failed; the caller may retry (HTTP 503)."""


class RecordTooLargeError(StreamError):
    """Kafka can never take this record: it is larger than the producer's or broker's limit."""


class ProvisioningError(F2PipeError):
    """A provisioning request is refused; carries the HTTP status and a public message."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CommandError(F2PipeError):
    """A command request is refused; carries the HTTP status and a public code and message."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BrokerError(F2PipeError):
    """The MQTT broker is unreachable, or did not acknowledge a publish (HTTP 503, retried)."""


class ReplyError(RecordError):
    """A command reply is not the JSON the contract names; dead-lettered (stage command_reply)."""

    reason = "bad_reply"

    def __init__(self, message: str, *, stage: str = "command_reply", **context: Any) -> None:
        super().__init__(message, stage=stage, **context)


class UnknownCommandError(ReplyError):
    """A reply names a command id the audit trail does not hold."""

    reason = "unknown_command"


class WrongDeviceError(ReplyError):
    """A reply comes from another device than the one its command was sent to."""

    reason = "wrong_device"


class CertificateError(F2PipeError):
    """A certificate, key, CSR or CRL is malformed, mis-signed or cannot be issued."""


class RegistryError(F2PipeError):
    """The device registry's ACL, CRL or archive cannot be rendered, validated or published."""


class TimestampError(PayloadError):
    """The payload's timestamp is missing or not a valid date and time."""

    reason = "bad_timestamp"


class GatewayError(F2PipeError):
    """The OpenFaaS gateway could not be reached or gave an unusable answer (retried).

    ``status`` is the HTTP status when the gateway answered, None when no answer came back.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeliveryAbandoned(F2PipeError):
    """A batch was given up uncommitted (shutdown or partition revoked); it is consumed again."""


class SimulatorError(F2PipeError):
    """The device simulator cannot load its fleet, provision, connect or publish."""


class BenchError(F2PipeError):
    """A benchmark phase could not run or did not complete (stack, workload or measurement)."""


class ChaosError(F2PipeError):
    """A fault-matrix scenario could not run: a part to fault not found, the stack not back."""


class MonitoringError(F2PipeError):
    """A monitoring endpoint (autoscaler health, Prometheus targets) is down or reports a fault."""


class StackFileError(F2PipeError):
    """stack.yml is missing, malformed, or names something that does not exist."""


class ComposeMergeError(F2PipeError):
    """faasd's compose file cannot take the f2pipe services safely."""


class ProcessError(F2PipeError):
    """A process of the local runtime failed to start, died, or did not become ready."""


class ReplicaError(F2PipeError):
    """The local gateway has no replica to serve a function: none can be built, none is ready."""


class ReplayRefusedError(F2PipeError):
    """A redrive or reprocess refused to start; nothing was sent.

    Kafka or a database did not answer, the window aged out of retention, or the options
    contradict an earlier run.
    """


class ReplayIncompleteError(F2PipeError):
    """A reprocess sent its records, but the pipeline did not confirm them in time.

    Carries the run's summary so far.
    """

    def __init__(self, message: str, *, summary: Any = None) -> None:
        super().__init__(message)
        self.summary = summary
