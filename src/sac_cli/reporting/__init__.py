"""Reports from run directories: one metrics.jsonl reader (metrics), runs and their groups
(runs), statistics from scipy.stats (stats), figures (figures), Markdown tables (tables).
None of it imports torch, Hydra or W&B; sac-plot (sac_cli.cli.plot) is the command over it."""
