"""Container build helpers: the health check and one-shot bootstrap jobs run in f2pipe images."""
