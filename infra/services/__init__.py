"""Product services that run beside the functions: connector, autoscaler, aclsync (the bridge
lives in the top-level ``bridge`` package), and the kit they share."""
