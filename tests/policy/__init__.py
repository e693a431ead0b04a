"""Tests of the pure policy core: economics, planner, policy config."""
