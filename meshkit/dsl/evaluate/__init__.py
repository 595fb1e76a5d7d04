"""Evaluating a Meshfile (I/O): a fresh interpreter runs the user's Python; which frames and modules are the user's."""
