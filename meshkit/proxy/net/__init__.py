"""Network plumbing (I/O): listeners, TLS, keep-alive pools, HTTP/2 connection drivers, socket I/O."""
