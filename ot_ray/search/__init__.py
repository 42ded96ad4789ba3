"""The search service: Ray Tune + Optuna over Ray Train trials, tracked in MLflow."""
