"""Training: MLflow tracking, model registry and federated learning (Flower)."""
