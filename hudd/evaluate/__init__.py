"""Scoring root-cause clusters against the causes a simulator injected (purity, coverage, RR)."""
