"""Before and between trainings (Ray-free): the preflight, the cost plan and its measured
throughput, study-wide reuse, schedule forking and the successive-halving decision."""
