"""SHaRON benchmarks: a cheap load driver, a bare autobahn baseline, and the scenario runner.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m bench            # the full suite (about 10 minutes)
    .venv/bin/python -m bench --quick    # the quick suite (about 1 minute)

docs/performance.md explains the method and shows the latest results.
"""
