"""Tests of the test tooling (tools/)."""
