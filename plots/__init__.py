"""Figures from a sweep's combined table (``collsim-plot SWEEP_DIR``; see plots/figures.py)."""
