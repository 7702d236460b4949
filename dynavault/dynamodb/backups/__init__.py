"""On-demand backups and restores: records (``records.py``), the copied rows (``snapshot.py``), the worker
thread (``jobs.py``), the operations (``operations.py``) and RestoreTableFromBackup (``restore.py``)."""
