"""The small shared base every layer may use: errors, the clock, files, glob patterns,
policy tables and client addresses. It imports nothing else of the service."""
