"""What the long-running services share: the runner, the ops endpoint, the OpenFaaS client."""
