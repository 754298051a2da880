"""Tests of the PACS link against a real Orthanc."""
