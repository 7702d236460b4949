"""Exports to and imports from local "buckets" (``--bucket-dir``), in the files AWS's export and import use."""
