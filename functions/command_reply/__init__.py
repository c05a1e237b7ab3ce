"""The command-reply function: late replies from ``iot_command_replies`` into the audit trail."""
