"""sac-cli: Soft Actor-Critic (Haarnoja et al. 2018a, 2018b) as a Hydra command-line tool."""

__version__ = "0.1.0"
