"""Ingest: discover sources, follow each through one streaming pass (source.py, stream.py,
clips.py) and record it in the manifest (run.py). ``ingest(dry_run=True)`` is the plan."""
