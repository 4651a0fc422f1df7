"""MPIM: a distributed instant-messaging server, embedded or distributed."""

__version__ = "0.1.0"
