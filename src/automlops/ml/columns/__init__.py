"""Columns and the transform: how each kind of column is planned, fitted and encoded."""
