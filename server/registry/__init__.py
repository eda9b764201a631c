"""OCI registry client: pull (parallel ranged parts, resume, digest check), push, auth.

The decision logic (part planning and resume state, retry policy, challenge
parsing, progress reporting) lives in plain classes without I/O; the modules
that touch sockets and files are thin.
"""
