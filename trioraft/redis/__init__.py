"""The Redis face of a node: RESP parsing and encoding, reply values, the connection
handshake, the client server and INFO."""
