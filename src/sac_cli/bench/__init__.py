"""sac-bench: throughput against peer implementations (runners: sac-cli's own loop; peers:
one adapter per peer; timing: interleaved repeats; report: the table and JSON)."""
