"""LocalStack Lambda runtime executor running provided.* bootstraps as host processes."""
