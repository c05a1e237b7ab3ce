"""``python -m infra.tools.redrive`` (``make redrive``): dead letters sent back into the stage they
failed at, once the cause is fixed.

``selection``  which letters (stage, reason, device, time window) and the consumer group of that
               selection
``decision``   what to do with one letter: where it goes, the marks it carries, the limit
``ledger``     what earlier runs did: the groups' positions and metadata, and the records a run
               killed before its commit had already sent
``runner``     one run: check, read, decide, send, commit after the acknowledgements
``summary``    the counts per stage, reason and outcome, as text or JSON
"""
