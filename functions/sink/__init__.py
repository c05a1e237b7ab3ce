"""The sink function: decoded measurements in, rows in the timeseries hypertable out."""
