"""Loops that own the chain state: chunks, budgets, streamed draws, resume, devices, stopping rules."""
