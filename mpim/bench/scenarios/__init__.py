"""One module per scenario; ``messaging.py`` is the send/receive engine c2c and group share.

Each scenario has two halves: a worker (runs in a worker process, owns
connections) and a plan (runs in the parent: splits the work, merges what the
workers report, computes the round's figures).
"""
