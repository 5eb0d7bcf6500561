"""The workspace (the original tool's folder "T"): its paths and manifest, its lock, and validated readers of its files."""
