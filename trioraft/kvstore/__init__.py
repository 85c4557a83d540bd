"""The replicated state machine: the key-value commands, the keyspace, glob patterns and
expiry, and trioraft's own log commands beside them."""
