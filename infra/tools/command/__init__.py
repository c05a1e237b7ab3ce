"""The operator's command line for downlink commands (``python -m infra.tools.command``)."""
