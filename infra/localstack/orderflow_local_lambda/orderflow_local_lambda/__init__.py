"""Orderflow's LocalStack plugins: the Lambda executor running provided.* bootstraps as
host processes (executor.py) and the EventBridge SQS MessageGroupId path patch
(events_patch.py)."""
