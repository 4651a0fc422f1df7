"""``mpim bench``: the project's load tool and its baseline relay.

The tool speaks only the public line protocol (``/work/shared/protocol.md``),
so it measures any server that speaks it — embedded or distributed MPIM, the
original C++ gateway, or the bundled relay. Pure parts (payload stamps,
histograms, range sets, trackers, result merging) live in their own modules so
they can be tested without sockets; the load itself runs in worker processes
(``worker.py``) coordinated by the parent (``runner.py``).
"""
