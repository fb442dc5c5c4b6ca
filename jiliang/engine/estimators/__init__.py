"""Fleet error estimators (群体误差估计): per-instrument errors estimated from ordinary operation."""
