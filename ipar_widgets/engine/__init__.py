"""The engine process: an IPython kernel (ipykernel) that also runs apply requests."""
