"""Limits shared by the server and the clients this node opens to partners."""

#: Largest message sent or received (a 1,000-entry log batch is ~0.3 MiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
