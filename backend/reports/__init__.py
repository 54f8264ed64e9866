"""Offline reports built from the SQL history."""
