"""The MPIM client line protocol: framing, commands and message lines. No I/O."""
