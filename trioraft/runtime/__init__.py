"""The Raft runtime: drives the sans-I/O core on Trio with storage and a transport, applies
committed entries to the state machine, takes and installs snapshots, forwards writes;
entry time stamps, and work done a slice per event-loop step."""
