"""The control API (I/O): the Unix-socket HTTP server that sidecars and the CLI talk to."""
