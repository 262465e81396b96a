"""cage-sf: train CAGE Challenge 4 blue agents with Sample Factory's asynchronous APPO + V-trace."""

__version__ = "0.1.0"
