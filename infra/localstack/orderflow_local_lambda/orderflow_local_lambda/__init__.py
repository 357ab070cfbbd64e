"""Orderflow's LocalStack plugins: the Lambda executor running provided.* bootstraps as
host processes (executor.py)."""
