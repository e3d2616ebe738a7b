"""Test support code shared by the test tiers (fake external services, helpers)."""
