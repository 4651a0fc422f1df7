"""Interpreter settings for long-running server processes.

Two CPython defaults cost MPIM most of its throughput under load, both
measured with ``mpim bench c2c`` against embedded MPIM:

- **The cyclic GC.** With a young collection per 700 net container
  allocations the server spent about 40 % of its CPU in the collector: every
  in-flight send allocates futures and buffers, so young collections ran
  thousands of times a second and each full one walked every long-lived
  object (SQLAlchemy metadata, protobuf descriptors, sessions). A higher
  young threshold makes collections rare, and freezing what start-up
  allocated keeps it out of every later full collection. Cyclic garbage is
  still collected, only less often.
- **The GIL switch interval.** The store's writer thread gives the GIL up
  around every SQLite call and then waits for the busy event loop to hand it
  back, up to one switch interval (5 ms by default) each time; a
  1,000-message commit took 80 ms beside a busy loop instead of 7 ms.
  At 0.2 ms the writer keeps pace (c2c 27k -> 34k msg/s), and the loop pays
  only a few microseconds per forced switch.
"""

from __future__ import annotations

import gc
import sys

# Young collections every 50,000 net allocations; older generations keep
# their usual ratios.
SERVER_GC_THRESHOLDS = (50_000, 20, 100)
SERVER_SWITCH_INTERVAL_SECONDS = 0.0002


def tune_for_server() -> None:
    """Call once, before start-up allocates the process's long-lived state."""
    gc.set_threshold(*SERVER_GC_THRESHOLDS)
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_SECONDS)


def freeze_startup_objects() -> None:
    """Call once start-up is done: what exists now lives as long as the process."""
    gc.collect()
    gc.freeze()
