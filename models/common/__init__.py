"""Helpers shared by every task: artifact IO, devices, seeding, data paths."""
