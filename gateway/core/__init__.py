"""The sans-I/O session core."""
