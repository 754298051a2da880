"""Tests of users, tokens and roles."""
