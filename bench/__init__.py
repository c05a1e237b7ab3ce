"""The benchmark harness (``python -m bench``): raw limits, baseline, pipeline and memory."""
