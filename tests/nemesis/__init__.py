"""Jepsen-style fault runs of real trioraft clusters, judged by a linearizability checker.

A run starts `trioraft serve` processes, each in its own network namespace where the
machine allows (else on loopback, without partitions), lets concurrent clients work on
a small set of keys over real sockets while a seeded schedule injects faults (kill -9,
SIGSTOP, iptables partitions, kill of every node, a follower that needs a snapshot, a
wiped data dir, forced snapshots, members removed, wiped and added), then heals, reads
everything back and judges the recorded history. The modules, in the order a run uses them:

- `hosts`: namespaces, bridge, veths and iptables partitions, or loopback; the cluster
  configs for them.
- `schedule`: the fault kinds and the seeded plan of faults.
- `client`: a small Trio RESP2 client and what each reply means for the checker.
- `workload`: the clients, the keys they use and the history they record.
- `faults`: the nemesis, which applies each plan and heals it.
- `analysis`: lost writes, unavailability per fault, the history file.
- `run`: one run from start to verdict, its folder, and the command line.

docs/testing.md says what the runs prove and how to run them long.
"""
