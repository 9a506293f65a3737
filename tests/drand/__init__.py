"""Tests of the drand chain package."""
