"""Joint galaxy-dust model and its MAP fit."""
