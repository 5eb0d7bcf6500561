"""Generic utilities every room uses: the one error type, progress bars, the device, safe file I/O and hashes, terminal tables."""
