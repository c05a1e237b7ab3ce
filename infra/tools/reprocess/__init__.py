"""``python -m infra.tools.reprocess`` (``make reprocess``): a device's raw records of a time window
decoded again after a parameter fix, and its stored rows overwritten with the new values.

``rows``    the rows the run may change: read before it sends, compared after the sink stored
``runner``  one run: check, find the window's offsets by time, copy the records back to the raw
            topic marked ``f2-reprocess``, follow them through decode and sink, count
"""
