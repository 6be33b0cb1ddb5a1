"""Pure plotting functions: data in, ``matplotlib.figure.Figure`` (or a DataFrame) out; no global state."""
