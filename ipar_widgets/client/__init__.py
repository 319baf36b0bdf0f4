"""The user-facing client: Client, views, AsyncResults, remote functions."""
