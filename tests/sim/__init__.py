"""The seeded cluster simulation, the linearizability checker and the core's mutants."""
