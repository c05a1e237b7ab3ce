"""The command function: downlink commands to strikes, sirens and readers, with an audit trail."""
