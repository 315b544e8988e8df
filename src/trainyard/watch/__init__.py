"""``trainyard watch DIR``: run every new or changed job config in a folder once, in a child process.

``folder.py`` finds the configs and their content hashes, ``ledger.py`` keeps what became of each
content (the claims that let watchers share a folder), ``launch.py`` runs one job as ``trainyard run``
would in a process of its own, ``runs.py`` finds that job's MLflow run, ``schedule.py`` reads
``--every``, ``watcher.py`` is the loop and its console, ``status.py`` the ``--status`` table.
"""
