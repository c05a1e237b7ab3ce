-- Downlink commands (owner: the command function, issue 13): the audit trail of every command
-- sent to a device, the components a device can be commanded on, and the one place a device's
-- reply is recorded (by the command function when the reply came in time, by the reply function
-- from iot_command_replies when it came late: both call device_command_record_reply).
-- Idempotent: every statement can run again without changing anything.

-- Every component of every device, named as the topic names it (strike-1, door-sensors), with
-- the device's status: what the command function checks before it publishes anything.
CREATE OR REPLACE VIEW device_components AS
SELECT d.device_id,
       d.status          AS device_status,
       d.model,
       c.name            AS connector,
       c.connector_mode,
       dp.component_type,
       dp.component_id,
       dp.component_type || coalesce('-' || dp.component_id, '') AS component
FROM device d
JOIN connector c ON c.template_id = d.template_id
JOIN data_point dp ON dp.connector_id = c.connector_id;
COMMENT ON VIEW device_components IS
    'Components of every device''s template, named as in the topic (strike-1), with the device status';

CREATE TABLE IF NOT EXISTS device_command (
    command_id      uuid PRIMARY KEY,
    -- No foreign key: a refused attempt at an unknown device is recorded too.
    device_id       text CHECK (length(device_id) <= 64),
    connector       text CHECK (length(connector) <= 64),
    connector_mode  text CHECK (length(connector_mode) <= 64),
    component       text CHECK (length(component) <= 64),
    action          text CHECK (length(action) <= 64),
    params          jsonb NOT NULL DEFAULT '{}'::jsonb,
    requested_by    text NOT NULL CHECK (requested_by ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    requested_at    timestamptz NOT NULL,
    expires_at      timestamptz,
    status          text NOT NULL
                    CHECK (status IN ('pending', 'sent', 'ok', 'rejected', 'expired', 'refused',
                                      'failed')),
    result          jsonb,
    published_at    timestamptz,
    answered_at     timestamptz,
    answered_via    text CHECK (answered_via IN ('command', 'command_reply')),
    CHECK (status = 'refused'
           OR (device_id IS NOT NULL AND connector IS NOT NULL AND connector_mode IS NOT NULL
               AND component IS NOT NULL AND action IS NOT NULL AND expires_at IS NOT NULL)),
    CHECK ((answered_at IS NOT NULL) = (status IN ('ok', 'rejected', 'expired'))),
    CHECK ((answered_via IS NULL) = (answered_at IS NULL))
);
COMMENT ON TABLE device_command IS
    'Audit trail of downlink commands: who asked what of which component, when, and the answer';
COMMENT ON COLUMN device_command.requested_by IS 'Name of the command-token entry the caller used';
COMMENT ON COLUMN device_command.status IS
    'pending (recorded, not yet published), sent, ok|rejected|expired (the device''s answer), '
    'refused (invalid request, with the reason in result) or failed (not published)';
COMMENT ON COLUMN device_command.result IS
    'The device''s reply {result, detail}, or {error, message} for refused and failed commands';
COMMENT ON COLUMN device_command.answered_via IS
    'Who recorded the answer first: command (the request waiting for it) or command_reply '
    '(from Kafka: a late reply, or an in-time one that path recorded first)';

CREATE INDEX IF NOT EXISTS device_command_device_idx
    ON device_command (device_id, requested_at DESC, command_id DESC);

-- Record a device's reply once: the first reply of the command's own device wins, a redelivered
-- or repeated reply changes nothing. Answers recorded, duplicate, unknown_command or wrong_device.
CREATE OR REPLACE FUNCTION device_command_record_reply(
    p_command_id uuid,
    p_device_id text,
    p_result text,
    p_detail text,
    p_answered_at timestamptz,
    p_via text
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    target device_command%ROWTYPE;
BEGIN
    SELECT * INTO target FROM device_command WHERE command_id = p_command_id FOR UPDATE;
    IF NOT FOUND OR target.status = 'refused' THEN
        RETURN 'unknown_command';
    END IF;
    IF target.device_id IS DISTINCT FROM p_device_id THEN
        RETURN 'wrong_device';
    END IF;
    IF target.answered_at IS NOT NULL THEN
        RETURN 'duplicate';
    END IF;
    UPDATE device_command
    SET status = p_result,
        result = jsonb_build_object('result', p_result, 'detail', p_detail),
        answered_at = p_answered_at,
        answered_via = p_via
    WHERE command_id = p_command_id;
    RETURN 'recorded';
END
$$;
COMMENT ON FUNCTION device_command_record_reply(uuid, text, text, text, timestamptz, text) IS
    'Record a device''s reply to a command once: recorded, duplicate, unknown_command or wrong_device';
