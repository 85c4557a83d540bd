"""trioraft: a fault-tolerant key-value store on Raft, in Python on Trio."""

__version__ = "0.1.0"
