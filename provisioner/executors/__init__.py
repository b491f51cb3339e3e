"""Executors: one small interface (observe, apply), a local and a remote implementation."""
