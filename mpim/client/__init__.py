"""The MPIM terminal client: protocol connection, input translation, display, app.

Layers, outermost last: ``reply`` / ``commands`` / ``display`` are pure;
``connection`` speaks the wire protocol; ``session`` holds the client's state
(token, seqs, reconnects); ``app`` is the thin terminal loop.
"""
