"""The client-facing gateway: transports, sessions, dispatch and push routing."""
