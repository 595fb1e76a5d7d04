"""HTTP/1.1 and HTTP/2 codecs and the header rules at the proxy boundary: sans-I/O, no event loop."""
