"""Tests of one package each, mirroring the source tree (issue 18 item 8): tests/unit/<package path>."""
