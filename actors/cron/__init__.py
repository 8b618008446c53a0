"""The ``iii-cron`` actor (WORKERS.md §8): the ``cron`` trigger type, its expressions and its
scheduler."""
