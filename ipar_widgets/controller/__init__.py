"""The controller process: routing, load balancing, task records and engine monitoring."""
