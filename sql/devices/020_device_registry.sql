-- Device certificates issued by the provisioning function (owner: device security, issue 4).
-- device.certificate_* holds the current certificate; this table keeps every certificate ever
-- issued, so the CRL can list the revoked and superseded ones until they expire.
-- Idempotent: every statement can run again without changing anything.

CREATE TABLE IF NOT EXISTS device_certificate (
    serial             text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]+$'),
    device_id          text NOT NULL REFERENCES device (device_id) ON DELETE CASCADE,
    fingerprint        text NOT NULL UNIQUE CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    issued_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    revocation_reason  text CHECK (revocation_reason IN ('superseded', 'revoked')),
    certificate_pem    text NOT NULL,
    CHECK ((revoked_at IS NULL) = (revocation_reason IS NULL))
);
COMMENT ON TABLE device_certificate IS
    'Every client certificate issued to a device; revoked or superseded ones go into the CRL';

CREATE INDEX IF NOT EXISTS device_certificate_device_idx ON device_certificate (device_id);
CREATE INDEX IF NOT EXISTS device_certificate_revoked_idx
    ON device_certificate (not_after) WHERE revoked_at IS NOT NULL;
