"""Tests of the `pollama` command line (app/)."""
