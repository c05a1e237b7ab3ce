"""The benchmark harness (``python -m infra.tools.bench``): limits, baseline, pipeline, memory."""
